"""qm-desktop end to end: ``qm-ingest desktop`` as a child process (as on the agent PC),
the emulator as the server's AWS, ``qm-ingest screen get`` to play the result back.

The server side (agent events -> commands, imported contact -> extract_screen) is played
by the test: it publishes the commands the server would, on the agent's FIFO queue.
Segments are 5 s long here so that contacts span several of them in a few seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import av
import orjson
import pytest

from processor.adapters.screen_keys import server_public_key
from processor.core.ctr import ctr_from_object
from processor.core.desktop_protocol import CommandType, build_command, extract_command_id, format_instant
from processor.desktop.capture import read_code
from processor.desktop.recovery_faults import FAULT_ENV
from processor.desktop.transport import ensure_agent_queue
from processor.devtools.simulated_centre import build_scenario
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

DESKTOP_ENV = {
    "QM_DESKTOP_SOURCE": "synthetic",
    "QM_DESKTOP_SYNTHETIC_SIZE": "320x180",
    "QM_DESKTOP_SEGMENT_SECONDS": "5",
    "QM_DESKTOP_POLL_SECONDS": "1",
    "QM_LOG_LEVEL": "INFO",
}


class Desktop:
    """``qm-ingest desktop --agent`` in a child process."""

    #: Every desktop a test started: killed at its end, whatever the test's outcome, so that
    #: none is left to read the next test's commands from the agent's queue.
    started: ClassVar[list[Desktop]] = []

    def __init__(self, agent: str, folder: Path, log: Path, **env: str) -> None:
        self.agent, self.folder, self.log = agent, folder, log
        self.env = {**os.environ, **DESKTOP_ENV, **env}
        self.proc: subprocess.Popen[bytes] | None = None
        Desktop.started.append(self)

    def start(self) -> Desktop:
        handle = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "processor",
                "desktop",
                "--agent",
                self.agent,
                "--folder",
                str(self.folder),
            ],
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        handle.close()
        return self

    def recording_since(self) -> datetime:
        """Wait for the first segment; the moment it started."""
        wait_until(lambda: "segment started" in self.log.read_text(), 60, "the first segment")
        return datetime.now(UTC)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=30)
        return self.proc.returncode

    def wait_dead(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)


@pytest.fixture(autouse=True)
def _no_desktop_left_behind() -> Iterator[None]:
    yield
    while Desktop.started:
        desktop = Desktop.started.pop()
        if desktop.proc is not None and desktop.proc.poll() is None:
            desktop.proc.kill()
            desktop.proc.wait(timeout=30)


@pytest.fixture
def server(bootstrapped, aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QM_SCREEN_PRIVATE_KEY_FILE", str(tmp_path / "server-key.pem"))
    cli([sys.executable, "-m", "processor", "keys", "generate"])
    bucket = bootstrapped.screen_bucket  # the one bucket desktops upload to
    from processor.core.envelope import key_fingerprint
    from processor.platform.settings import Settings

    s = Settings()
    key_id, pem = server_public_key(s)
    # The desktop's own configuration pins the server key (the child inherits it).
    monkeypatch.setenv("QM_DESKTOP_SERVER_KEY_SHA256", key_fingerprint(pem))
    # An agent's queue outlives a test (its name comes from the username alone): each test
    # has its own agent.
    agent = f"farah.rossi.{uuid.uuid4().hex[:8]}"
    queue = ensure_agent_queue(aws.sqs, agent)
    return {
        "settings": s,
        "aws": aws,
        "bucket": bucket,
        "key_id": key_id,
        "pem": pem,
        "agent": agent,
        "queue": queue,
        "results": aws.sqs.get_queue_url(QueueName=s.screen_results_queue)["QueueUrl"],
        "seen": [],
    }


def cli(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def publish(server, type_: CommandType, command_id: str, **fields) -> None:  # type: ignore[no-untyped-def]
    doc = build_command(
        type_, agent=server["agent"], command_id=command_id, issued_at=datetime.now(UTC), **fields
    )
    server["aws"].sqs.send_message(
        QueueUrl=server["queue"],
        MessageBody=orjson.dumps(doc).decode(),
        MessageGroupId=server["agent"],
        MessageDeduplicationId=uuid.uuid4().hex,
    )


def import_contact(server, start: datetime, end: datetime) -> str:  # type: ignore[no-untyped-def]
    """A CTR of this agent mapped and stored as the importer does; then its extraction."""
    ctr = orjson.loads(build_scenario(seed=7, contacts=1, start=start).deliveries[0])
    contact_id = str(uuid.uuid4())
    ctr["ContactId"] = contact_id
    ctr["Agent"]["Username"] = server["agent"]
    ctr["Agent"]["ConnectedToAgentTimestamp"] = format_instant(start)
    ctr["Agent"]["AfterContactWorkEndTimestamp"] = format_instant(end)
    ctr["LastUpdateTimestamp"] = format_instant(end)
    ctr["Recording"] = ctr["Recordings"] = None  # the audio side is not the point here
    from processor.app.wiring import build_joiner

    build_joiner(server["settings"], server["aws"]).on_ctr(ctr_from_object(ctr), orjson.dumps(ctr))
    publish(
        server,
        CommandType.EXTRACT_SCREEN,
        extract_command_id(contact_id),
        contact_id=contact_id,
        start=start,
        end=end,
        upload={"bucket": server["bucket"], "key": f"screen/{contact_id}.qmrec"},
        server_key_id=server["key_id"],
        server_public_key_pem=server["pem"],
    )
    return contact_id


def read_results(server) -> list[dict]:  # type: ignore[type-arg]
    sqs = server["aws"].sqs
    while True:
        got = sqs.receive_message(QueueUrl=server["results"], MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not got.get("Messages"):
            return server["seen"]
        for message in got["Messages"]:
            server["seen"].append(orjson.loads(message["Body"]))
            sqs.delete_message(QueueUrl=server["results"], ReceiptHandle=message["ReceiptHandle"])


def uploaded(server, contact_id: str) -> list[dict]:  # type: ignore[type-arg]
    return [
        r
        for r in read_results(server)
        if r.get("contact_id") == contact_id and r["type"] == "screen_uploaded"
    ]


def record_result_in_contact(server, contact_id: str, result: dict) -> None:  # type: ignore[type-arg]
    """What the server does with a screen_uploaded result: the location on the contact."""
    ddb = server["aws"].dynamodb
    table = server["settings"].contacts_table
    item = ddb.get_item(TableName=table, Key={"contact_id": {"S": contact_id}})["Item"]
    doc = orjson.loads(item["doc"]["S"])
    doc["screen_recording_location"] = f"{result['location']['bucket']}/{result['location']['key']}"
    ddb.update_item(
        TableName=table,
        Key={"contact_id": {"S": contact_id}},
        UpdateExpression="SET doc = :d",
        ExpressionAttributeValues={":d": {"S": orjson.dumps(doc).decode()}},
    )


def play(contact_id: str, out: Path, near: datetime) -> tuple[float, list[datetime]]:
    printed = cli([sys.executable, "-m", "processor", "screen", "get", contact_id, "-o", str(out)])
    assert contact_id in printed
    with av.open(str(out)) as container:
        duration = float(container.duration or 0) / 1e6
        frames = [read_code(f).captured_at(near) for f in container.decode(container.streams.video[0])]
    return duration, frames


def test_login_record_crash_power_off_recover_upload_play(server, tmp_path: Path) -> None:
    folder = tmp_path / "agent"
    desktop = Desktop(server["agent"], folder, tmp_path / "desktop-1.log").start()
    publish(server, CommandType.START_RECORDING, f"start:{uuid.uuid4().hex}")
    login = desktop.recording_since()
    time.sleep(13)
    desktop.kill()  # kill -9 while recording, 3 s into the third segment
    crashed_at = datetime.now(UTC)
    # Contacts imported while the PC is off: one inside the recording (two segments),
    # one that runs past the crash.
    first = import_contact(server, login + timedelta(seconds=2.5), login + timedelta(seconds=8.5))
    second = import_contact(server, crashed_at - timedelta(seconds=4), crashed_at + timedelta(seconds=3))
    time.sleep(3)
    desktop = Desktop(server["agent"], folder, tmp_path / "desktop-2.log").start()
    (a,) = wait_until(lambda: uploaded(server, first), 60, "the first contact's upload")
    (b,) = wait_until(lambda: uploaded(server, second), 30, "the second contact's upload")
    assert any(r["type"] == "sync_request" for r in read_results(server))
    assert a["coverage"] == 1.0 and a["gaps"] == [] and a["duration_seconds"] == pytest.approx(6.0, abs=0.5)
    # The second one misses the time the PC was off (and the torn last fragment).
    assert [g["reason"] for g in b["gaps"]] == ["pc_off"]
    assert 0.2 < b["coverage"] < 0.9
    assert desktop.stop() == 0

    record_result_in_contact(server, first, a)
    duration, frames = play(first, tmp_path / "first.mp4", login)
    assert duration == pytest.approx(6.0, abs=0.5)
    start = login + timedelta(seconds=2.5)
    assert timedelta(0) <= start - frames[0] <= timedelta(seconds=0.25)
    assert timedelta(0) < start + timedelta(seconds=6) - frames[-1] <= timedelta(seconds=0.25)
    logs = (tmp_path / "desktop-2.log").read_text()
    assert "segment recovered after a crash" in logs


@pytest.mark.parametrize("fault", ["extract:before_upload", "extract:after_upload"])
def test_killed_during_extraction_uploads_exactly_once(server, tmp_path: Path, fault: str) -> None:
    folder = tmp_path / "agent"
    desktop = Desktop(server["agent"], folder, tmp_path / "desktop-1.log", **{FAULT_ENV: fault}).start()
    publish(server, CommandType.START_RECORDING, f"start:{uuid.uuid4().hex}")
    login = desktop.recording_since()
    time.sleep(7)
    contact = import_contact(server, login + timedelta(seconds=1), login + timedelta(seconds=6))
    assert desktop.wait_dead(60) == -signal.SIGKILL  # killed at the fault point
    s3 = server["aws"].s3
    listed = s3.list_objects_v2(Bucket=server["bucket"]).get("KeyCount", 0)
    assert listed == (1 if fault == "extract:after_upload" else 0)
    assert uploaded(server, contact) == []
    desktop = Desktop(server["agent"], folder, tmp_path / "desktop-2.log").start()
    wait_until(lambda: uploaded(server, contact), 60, "the upload after restart")
    time.sleep(2)  # anything more would arrive now
    assert desktop.stop() == 0
    assert len(uploaded(server, contact)) == 1
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=server["bucket"])["Contents"]]
    assert keys == [f"screen/{contact}.qmrec"]
    duration, _ = play_location(server, contact, tmp_path)
    assert duration == pytest.approx(5.0, abs=0.5)


def play_location(server, contact_id: str, tmp_path: Path) -> tuple[float, Path]:  # type: ignore[no-untyped-def]
    out = tmp_path / "out.mp4"
    cli(
        [
            sys.executable,
            "-m",
            "processor",
            "screen",
            "get",
            contact_id,
            "-o",
            str(out),
            "--location",
            f"{server['bucket']}/screen/{contact_id}.qmrec",
        ]
    )
    with av.open(str(out)) as container:
        return float(container.duration or 0) / 1e6, out
