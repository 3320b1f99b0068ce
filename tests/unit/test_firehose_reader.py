"""The Firehose object reader: every record back, wherever the chunks are cut, plain or gzip,
and a corrupt record costs only itself (located by byte offset), never the records after it."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from processor.core.firehose import (
    PROBLEM_OBJECT,
    PROBLEM_RECORD,
    ArchiveItem,
    read_archive_object,
)
from processor.devtools.simulated_centre import build_scenario
from tests.unit.test_jsonstream import chunked

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "ctr"
MAX = 1_048_576


def looks_like_ctr(value: object) -> bool:
    return isinstance(value, dict) and "ContactId" in value


def sample_ctrs() -> list[bytes]:
    """The real sample CTRs, compact, plus one as its file has it (pretty-printed)."""
    out = []
    for name in (
        "voicebase-quickstart-1.json",
        "kyopark-call-center-analytics-1.json",
        "smg-agenttrack-quickstart-1.json",
        "freewine-callrecording-2.json",
    ):
        out.append(orjson.dumps(orjson.loads((SAMPLES / name).read_bytes())))
    out.append((SAMPLES / "freewine-callrecording-2.json").read_bytes().strip())
    return out


def simulated_ctrs(n: int) -> list[bytes]:
    from datetime import UTC, datetime

    scenario = build_scenario(seed=5, contacts=n, start=datetime(2026, 1, 1, tzinfo=UTC), duplicate_rate=0)
    return scenario.deliveries[:n]


def read(pieces: list[bytes], *, max_bytes: int = MAX) -> list[ArchiveItem]:
    return list(read_archive_object(pieces, max_record_bytes=max_bytes, looks_like_record=looks_like_ctr))


def records(items: list[ArchiveItem]) -> list[bytes]:
    return [i.data for i in items if i.problem is None]


def problems(items: list[ArchiveItem]) -> list[tuple[int, int, str]]:
    return [(i.offset, i.length, i.problem) for i in items if i.problem is not None]


def offsets(parts: list[bytes], separator: bytes = b"") -> list[int]:
    out, at = [], 0
    for part in parts:
        out.append(at)
        at += len(part) + len(separator)
    return out


# --- layouts and chunking -----------------------------------------------------------------------
def test_concatenated_split_at_every_byte_boundary_plain() -> None:
    ctrs = sample_ctrs()[:3]
    data = b"".join(ctrs)
    for cut in range(len(data) + 1):
        items = read([data[:cut], data[cut:]])
        assert records(items) == ctrs, cut
        assert [i.offset for i in items] == offsets(ctrs), cut
        assert not problems(items)


def test_concatenated_split_at_every_byte_boundary_gzip() -> None:
    ctrs = sample_ctrs()[:3]
    stored = gzip.compress(b"".join(ctrs))
    for cut in range(len(stored) + 1):
        items = read([stored[:cut], stored[cut:]])
        assert records(items) == ctrs, cut
        assert not problems(items)


def test_gzip_one_byte_at_a_time_and_several_members() -> None:
    ctrs = simulated_ctrs(6)
    # Firehose may append a member per batch to one object: each member is read in turn.
    stored = gzip.compress(b"".join(ctrs[:2])) + gzip.compress(b"".join(ctrs[2:]))
    items = read([stored[i : i + 1] for i in range(len(stored))])
    assert records(items) == ctrs
    assert [i.offset for i in items] == offsets(ctrs)


def test_inflating_is_bounded_per_step() -> None:
    """A highly compressible object comes out in bounded pieces (no gzip bomb in memory)."""
    from processor.core.firehose import ObjectDecoder

    stored = gzip.compress(b" " * (64 << 20))
    decoder = ObjectDecoder(step=1 << 20)
    sizes = [len(p) for chunk in chunked(stored, [1000, 5000]) for p in decoder.feed(chunk)]
    sizes += [len(p) for p in decoder.close()]
    assert sum(sizes) == 64 << 20
    assert max(sizes) <= 1 << 20


@pytest.mark.parametrize("separator", [b"\n", b"\r\n", b" \t\n  ", b"\n\n"])
def test_newline_delimited_and_whitespace_between_records(separator: bytes) -> None:
    ctrs = sample_ctrs()
    data = separator + separator.join(ctrs) + separator
    for cut in range(0, len(data) + 1, 7):
        items = read([data[:cut], data[cut:]])
        assert records(items) == ctrs
        assert [i.offset for i in items] == [o + len(separator) for o in offsets(ctrs, separator)]


# --- corruption ---------------------------------------------------------------------------------
def test_a_record_cut_anywhere_is_quarantined_alone() -> None:
    """The middle record truncated at every possible byte: exactly its bytes are reported
    (offset and length), the records before and after it all come out."""
    ctrs = simulated_ctrs(3)
    before, cut_one, after = ctrs
    for cut in range(1, len(cut_one)):
        data = before + cut_one[:cut] + after
        items = read([data])
        assert records(items) == [before, after], cut
        assert problems(items) == [(len(before), cut, PROBLEM_RECORD)], cut


def test_corrupt_record_in_the_middle_at_every_chunk_boundary_plain_and_gzip() -> None:
    ctrs = simulated_ctrs(4)
    damaged = ctrs[1][: len(ctrs[1]) // 2]  # cut inside a string
    data = ctrs[0] + damaged + ctrs[2] + ctrs[3]
    want_problem = [(len(ctrs[0]), len(damaged), PROBLEM_RECORD)]
    for cut in range(len(data) + 1):
        items = read([data[:cut], data[cut:]])
        assert records(items) == [ctrs[0], ctrs[2], ctrs[3]], cut
        assert problems(items) == want_problem, cut
    stored = gzip.compress(data)
    for cut in range(0, len(stored) + 1, 3):
        items = read([stored[:cut], stored[cut:]])
        assert records(items) == [ctrs[0], ctrs[2], ctrs[3]], cut
        assert problems(items) == want_problem, cut


@pytest.mark.parametrize(
    "garbage",
    [
        b"garbage",
        b'{"ContactId": "x",, "oops"}',  # balanced but not JSON
        b'{"ContactId": "x", "Name": "unterminated}',  # a quote that never closes
        b"\x00\xff\xfe binary \x00",
        b"}}}]]",
        b"{{{{{{{{",
    ],
)
def test_garbage_between_records_is_one_located_problem(garbage: bytes) -> None:
    ctrs = sample_ctrs()[:3]
    data = ctrs[0] + garbage + ctrs[1] + b"\n" + ctrs[2]
    items = read(chunked(data, [len(ctrs[0]) + 3, len(data) - 40]))
    assert records(items) == ctrs
    assert [(o, kind) for o, _, kind in problems(items)] == [(len(ctrs[0]), PROBLEM_RECORD)]
    bad = next(i for i in items if i.problem)
    assert bad.data == garbage and bad.length == len(garbage)
    assert "not a JSON record" in bad.detail


def test_a_huge_corrupt_stretch_is_one_problem_with_bounded_payload() -> None:
    ctrs = simulated_ctrs(2)
    # 500 kB of nesting that never closes, with no record start in it (a record right after
    # a ":" is recognised only within the size limit of the stretch's start: see the module).
    garbage = b'{"a":' * 100_000 + b"1}"
    data = ctrs[0] + garbage + ctrs[1]
    items = read(chunked(data, list(range(0, len(data), 65536))), max_bytes=20_000)
    assert records(items) == ctrs
    assert problems(items) == [(len(ctrs[0]), len(garbage), PROBLEM_RECORD)]
    assert len(next(i for i in items if i.problem).data) <= 20_000


def test_truncated_gzip_keeps_what_was_decoded_and_reports_the_object() -> None:
    ctrs = simulated_ctrs(5)
    stored = gzip.compress(b"".join(ctrs))
    items = read([stored[: len(stored) * 3 // 4]])
    got = records(items)
    assert got == ctrs[: len(got)] and 0 < len(got) < 5
    kinds = [kind for _, _, kind in problems(items)]
    assert kinds[-1] == PROBLEM_OBJECT
    assert "truncated" in items[-1].detail


def test_broken_gzip_and_bytes_after_the_stream_are_reported() -> None:
    ctrs = simulated_ctrs(3)
    stored = bytearray(gzip.compress(b"".join(ctrs)))
    stored[len(stored) // 2] ^= 0xFF
    items = read([bytes(stored)])
    assert items[-1].problem == PROBLEM_OBJECT
    assert "gzip" in items[-1].detail
    trailing = gzip.compress(b"".join(ctrs)) + b"not gzip"
    items = read([trailing])
    assert records(items) == ctrs
    assert items[-1].problem == PROBLEM_OBJECT and "after the end" in items[-1].detail


def test_plain_object_that_looks_nothing_like_gzip_is_read_as_plain() -> None:
    assert records(read([b"{", b"}"])) == [b"{}"]  # shorter than the gzip magic at first
    assert read([]) == []
    # Records of a CTR archive are objects: a bare value is a corrupt stretch.
    assert problems(read([b'1 "x" [2]'])) == [(0, 9, PROBLEM_RECORD)]


# --- property -----------------------------------------------------------------------------------
json_text = st.text(alphabet=st.sampled_from(list('ab{}[]":,\\ é')), max_size=8)
leaf = st.none() | st.booleans() | st.integers(-1000, 1000) | json_text
nested = st.recursive(
    leaf,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(json_text, children, max_size=3),
    max_leaves=6,
)
ctr_like = st.builds(
    lambda cid, extra: {"ContactId": cid, **extra},
    json_text,
    st.dictionaries(json_text.filter(lambda k: k != "ContactId"), nested, max_size=4),
)


@settings(max_examples=300, deadline=None)
@example(  # cut right after "[", the next record split across chunks (judged once it has arrived)
    docs=[{"ContactId": ""}, {"ContactId": '["', "::": None}, {"ContactId": "::}"}],
    damaged_index=1,
    cut_ratio=0.55,
    layout=b"",
    cuts=[36],
    compress=False,
)
@given(
    docs=st.lists(ctr_like, min_size=2, max_size=6),
    damaged_index=st.integers(0, 5),
    cut_ratio=st.floats(0.05, 0.95),
    layout=st.sampled_from([b"", b"\n"]),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
    compress=st.booleans(),
)
def test_any_records_any_cut_any_chunking(  # noqa: PLR0917 - hypothesis passes each strategy by name
    docs: list[dict], damaged_index: int, cut_ratio: float, layout: bytes, cuts: list[int], compress: bool
) -> None:
    encoded = [orjson.dumps(d) for d in docs]
    index = damaged_index % len(encoded)
    cut = max(1, min(len(encoded[index]) - 1, int(len(encoded[index]) * cut_ratio)))
    damaged = encoded[index][:cut]
    parts = [*encoded[:index], damaged, *encoded[index + 1 :]]
    data = layout.join(parts)
    stored = gzip.compress(data) if compress else data
    items = read(chunked(stored, cuts))
    start = offsets(parts, layout)[index]
    # Every good record comes out, in order. Anything else lies inside the damaged record:
    # a string of it may hold "{}" or a whole JSON object, which is then taken for a record
    # (and rejected by the CTR path); nothing outside the damaged bytes is ever lost.
    good = [e for i, e in enumerate(encoded) if i != index]
    kept = [i for i in items if i.problem is None and not start <= i.offset < start + cut]
    assert [i.data for i in kept] == good
    for item in items:
        if item not in kept:
            assert start <= item.offset and item.offset + item.length <= start + cut, item
    assert any(i.problem for i in items)


# --- hostile objects (security review: resynchronisation must stay linear) ----------------------
def _read_seconds(data: bytes, max_bytes: int = MAX) -> tuple[float, list[ArchiveItem]]:
    started = time.perf_counter()
    items = read(chunked(data, list(range(0, len(data), 65536))), max_bytes=max_bytes)
    return time.perf_counter() - started, items


@pytest.mark.parametrize(
    "unit",
    [
        b'{"',  # the review's flood: every "{" a restart point
        b'x{"a":0',  # a start that passes the start pattern every 8 bytes
        b'{"a":"b{"c":[1,{"d":',  # JSON fragments, nested and top-level starts mixed
        b"{",
    ],
)
def test_a_hostile_stretch_is_read_in_linear_time_and_loses_no_record(unit: bytes) -> None:
    """Between two good CTRs, a crafted stretch: both CTRs come out, the stretch is one
    problem at its offset, and four times the bytes cost about four times the time (a
    restart that re-scans the buffered bytes makes it sixteen). The old reader took about
    2 ms per crafted byte: 256 KiB of these would have taken minutes."""
    before, after = simulated_ctrs(2)
    timings = []
    for size in (64 * 1024, 256 * 1024):
        garbage = (unit * (size // len(unit) + 1))[:size]
        data = before + garbage + after
        seconds, items = _read_seconds(data)
        assert records(items) == [before, after]
        assert problems(items) == [(len(before), len(garbage), PROBLEM_RECORD)]
        timings.append(seconds)
    small, large = timings
    assert large < 10.0
    assert large < max(8 * small, 0.25), timings


def test_the_review_s_32_kb_stretch_with_a_16_kib_limit_is_immediate() -> None:
    before, after = simulated_ctrs(2)
    garbage = b'{"' * 16_384
    seconds, items = _read_seconds(before + garbage + after, max_bytes=16_384)
    assert records(items) == [before, after]
    assert problems(items) == [(len(before), len(garbage), PROBLEM_RECORD)]
    assert seconds < 2.0  # 29.6 s before


def test_one_malformed_record_of_a_mebibyte_costs_about_its_size() -> None:
    """A 1 MiB record Firehose archived verbatim, broken in the middle and full of escaped
    braces: reported whole, the next CTR read, in well under a second."""
    before, after = simulated_ctrs(2)
    body = b'{"ContactId":"z","Junk":"' + b'{\\"' * 180_000
    broken = body[: len(body) // 2] + b"\x00" + body[len(body) // 2 :] + b'"}'
    seconds, items = _read_seconds(before + broken + after)
    assert records(items) == [before, after]
    assert problems(items) == [(len(before), len(broken), PROBLEM_RECORD)]
    assert seconds < 5.0
