"""The splitter finds every value whatever the layout and wherever the chunks are cut."""

from __future__ import annotations

import gzip

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.jsonstream import SplitError, split_values

json_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | json_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(json_text, children, max_size=3),
    max_leaves=8,
)
objects = st.dictionaries(json_text, values, min_size=1, max_size=4)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


@settings(max_examples=300, deadline=None)
@given(
    docs=st.lists(objects, min_size=1, max_size=6),
    layout=st.sampled_from(["concat", "lines", "array", "spaced"]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_any_layout_any_chunking(docs: list[dict], layout: str, cuts: list[int]) -> None:
    encoded = [orjson.dumps(d) for d in docs]
    data = {
        "concat": b"".join(encoded),
        "lines": b"\n".join(encoded) + b"\n",
        "array": b"[" + b",\n ".join(encoded) + b"]",
        "spaced": b"  \r\n".join(encoded),
    }[layout]
    out = list(split_values(chunked(data, cuts)))
    assert [orjson.loads(v.data) for v in out] == docs
    assert [v.position for v in out] == list(range(1, len(docs) + 1))
    for v in out:
        assert data[v.offset : v.offset + len(v.data)] == v.data


def test_every_single_byte_boundary_with_escapes_and_multibyte() -> None:
    docs = [{"a": 'x}{"\\', "b": ["]", "é€😀"]}, {"c": {"d": "\u2028"}}, {"e": 1}]
    data = b"".join(orjson.dumps(d) for d in docs)
    for cut in range(len(data) + 1):
        assert [orjson.loads(v.data) for v in split_values([data[:cut], data[cut:]])] == docs


def test_truncated_last_value_is_an_error_with_its_position() -> None:
    with pytest.raises(SplitError) as err:
        list(split_values([b'{"a":1}{"b":']))
    assert err.value.position == 2
    assert err.value.offset == 7


def test_value_size_bound() -> None:
    with pytest.raises(SplitError, match="larger than"):
        list(split_values([b'{"a":"' + b"x" * 5000 + b'"}'], max_value_bytes=1000))


def test_gzip_stream_decompressed_in_chunks() -> None:
    docs = [{"n": i, "s": "y" * (i % 50)} for i in range(200)]
    packed = gzip.compress(b"".join(orjson.dumps(d) for d in docs))
    import zlib

    decomp = zlib.decompressobj(wbits=31)
    chunks = (decomp.decompress(packed[i : i + 97]) for i in range(0, len(packed), 97))
    assert [orjson.loads(v.data) for v in split_values(chunks)] == docs
