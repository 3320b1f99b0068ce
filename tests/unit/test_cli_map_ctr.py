"""``qm-ingest map-ctr`` as users run it: a real subprocess, real files, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest


def map_ctr(
    *args: str, stdin: bytes | None = None, env: dict | None = None
) -> subprocess.CompletedProcess[bytes]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "processor", "map-ctr", *args],
        input=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def lines(out: bytes) -> list[dict]:
    return [orjson.loads(line) for line in out.splitlines()]


def test_layouts_and_order(samples_dir: Path, tmp_path: Path) -> None:
    docs = orjson.loads(
        (samples_dir / "ctr/kyopark-call-center-analytics-duplicates-array.json").read_bytes()
    )
    expected = [d["LastUpdateTimestamp"].replace("Z", ".000Z") for d in docs]
    layouts = {
        "array.json": orjson.dumps(docs),
        "lines.jsonl": b"\n".join(orjson.dumps(d) for d in docs),
        "concat.json": b"".join(orjson.dumps(d) for d in docs),
    }
    for name, data in layouts.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = map_ctr(str(path))
        assert result.returncode == 0, result.stderr
        assert [c["last_update"] for c in lines(result.stdout)] == expected, name
    result = map_ctr("-", stdin=layouts["concat.json"])
    assert [c["last_update"] for c in lines(result.stdout)] == expected


def test_users_json_and_csv(samples_dir: Path, tmp_path: Path) -> None:
    users_csv = tmp_path / "users.csv"
    users_csv.write_text("username,first_name,last_name,screen_recording\nagent007,James,Bond,true\n")
    users_json = tmp_path / "users.json"
    users_json.write_text('[{"username":"agent007","first_name":"James","last_name":"Bond"}]')
    for users in (users_csv, users_json):
        result = map_ctr(str(samples_dir / "ctr/voicebase-quickstart-1.json"), "--users", str(users))
        [contact] = lines(result.stdout)
        assert (contact["first_name"], contact["last_name"]) == ("James", "Bond")


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (b'{"ContactId": "a"}', "record 1 (byte 0): schema"),
        (b'[{"x":1}', "record 1"),
        (b"{bad json}", "record 1 (byte 0): bad_json"),
    ],
)
def test_invalid_input_one_line_exit_2(tmp_path: Path, content: bytes, where: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    result = map_ctr(str(path))
    assert result.returncode == 2
    err = result.stderr.decode()
    assert where in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_record_in_the_middle_names_its_position(samples_dir: Path, tmp_path: Path) -> None:
    good = (samples_dir / "ctr/voicebase-quickstart-1.json").read_bytes()
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(good.replace(b"\n", b"") + b"\n" + b'{"ContactId": 7}\n' + good.replace(b"\n", b""))
    result = map_ctr(str(path))
    assert result.returncode == 2
    assert "record 2" in result.stderr.decode()
    assert len(lines(result.stdout)) == 1  # the record before it was printed


def test_missing_file_and_bad_users_file(tmp_path: Path, samples_dir: Path) -> None:
    result = map_ctr(str(tmp_path / "nope.json"))
    assert result.returncode == 2 and "cannot read" in result.stderr.decode()
    users = tmp_path / "u.csv"
    users.write_text("name\nx\n")
    result = map_ctr(str(samples_dir / "ctr/voicebase-quickstart-1.json"), "--users", str(users))
    assert result.returncode == 2 and "username" in result.stderr.decode()


def test_foreign_instance_is_refused_when_configured(samples_dir: Path) -> None:
    result = map_ctr(
        str(samples_dir / "ctr/voicebase-quickstart-1.json"),
        env={"QM_INSTANCE_ARN": "arn:aws:connect:us-east-1:111111111111:instance/other"},
    )
    assert result.returncode == 2 and "foreign_instance" in result.stderr.decode()


def test_invalid_setting_is_one_line(samples_dir: Path) -> None:
    result = map_ctr(
        str(samples_dir / "ctr/voicebase-quickstart-1.json"), env={"QM_INSTANCE_ARN": "nonsense"}
    )
    assert result.returncode == 2
    assert "QM_INSTANCE_ARN" in result.stderr.decode()


def test_recordings_outside_the_recordings_buckets_are_flagged_as_the_service_does(
    samples_dir: Path,
) -> None:
    sample = str(samples_dir / "ctr/voicebase-quickstart-1.json")
    own = map_ctr(
        sample, env={"QM_RECORDINGS_BUCKET": "awsconnect-bucket", "QM_RECORDINGS_EXTRA_BUCKETS": ""}
    )
    assert own.returncode == 0, own.stderr
    [kept] = lines(own.stdout)
    assert "recording_location_rejected" not in kept["flags"]
    assert kept["recording_location"].startswith("awsconnect-bucket/") and kept["recordings"], kept
    other = map_ctr(sample, env={"QM_RECORDINGS_BUCKET": "qm-recordings", "QM_RECORDINGS_EXTRA_BUCKETS": ""})
    assert other.returncode == 0, other.stderr
    [refused] = lines(other.stdout)
    assert "recording_location_rejected" in refused["flags"]
    assert refused["recording_location"] is None and refused["recordings"] == [], refused
    extra = map_ctr(
        sample,
        env={"QM_RECORDINGS_BUCKET": "qm-recordings", "QM_RECORDINGS_EXTRA_BUCKETS": "awsconnect-bucket"},
    )
    [accepted] = lines(extra.stdout)
    assert "recording_location_rejected" not in accepted["flags"]
