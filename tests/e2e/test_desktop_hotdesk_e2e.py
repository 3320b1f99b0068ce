"""One recorder per PC, following whoever logs on at it, end to end: ``qm-ingest desktop``
without ``--agent`` in a child process per PC (as started with the PC), the OS session
played by a file (``QM_DESKTOP_SESSION=file:PATH``; the Linux implementation reads logind),
the OS-login mapping in the users table, the emulator as the server's AWS and
``qm-ingest screen get`` to play each contact's recording back.

* Hot-desking: Ana, then Ben, on the same PC. Each contact's recording holds its agent's
  screen only; an extraction on Ana's queue for the time Ben was at the PC returns nothing
  of Ben's screen.
* Moving: Ana on PC 1, then on PC 2. Each contact's recording comes from the PC she was
  on (the two PCs' screens differ in size).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import orjson
import pytest

from processor.adapters.dynamodb.users_table import DynamoUserDirectory
from processor.adapters.screen_keys import server_public_key
from processor.core.ctr import ctr_from_object
from processor.core.desktop_protocol import CommandType, build_command, extract_command_id, format_instant
from processor.core.envelope import key_fingerprint
from processor.core.user_directory import QmUser
from processor.desktop.capture import read_code
from processor.desktop.transport import ensure_agent_queue
from processor.devtools.simulated_centre import build_scenario
from processor.platform.settings import Settings
from tests.e2e.test_desktop_e2e import DESKTOP_ENV, cli, record_result_in_contact
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


class Pc:
    """``qm-ingest desktop`` (no ``--agent``) of one PC, its screen size and its session."""

    def __init__(self, name: str, tmp_path: Path, size: str) -> None:
        self.session = tmp_path / f"{name}.session"
        self.session.write_text("")
        self.base = tmp_path / name
        self.log = tmp_path / f"{name}.log"
        self.size = tuple(int(v) for v in size.split("x"))
        env = {
            **os.environ,
            **DESKTOP_ENV,
            "QM_DESKTOP_SYNTHETIC_SIZE": size,
            "QM_DESKTOP_SESSION": f"file:{self.session}",
        }
        with open(self.log, "ab") as handle:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "processor", "desktop", "--folder", str(self.base)],
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
        return out

    def log_on(self, login: str | None) -> int:
        """The OS user at the PC changes; returns how far the log went before."""
        mark = len(self.logs())
        self.session.write_text(login or "")
        return mark

    def wait_recording(self, agent: str, since: int) -> datetime:
        """Wait until this PC serves ``agent`` and has started a segment for her."""

        def started() -> bool:
            events = self.logs()[since:]
            here = [
                i
                for i, e in enumerate(events)
                if e.get("event") == "agent at this PC" and e.get("agent") == agent
            ]
            return bool(here) and any(e.get("event") == "segment started" for e in events[here[-1] :])

        wait_until(started, 60, f"{agent}'s recording on {self.base.name}")
        return datetime.now(UTC)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            return self.proc.wait(timeout=30)
        return self.proc.returncode


@pytest.fixture
def hotdesk(bootstrapped, aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QM_SCREEN_PRIVATE_KEY_FILE", str(tmp_path / "server-key.pem"))
    cli([sys.executable, "-m", "processor", "keys", "generate"])
    s = Settings()
    key_id, pem = server_public_key(s)
    monkeypatch.setenv("QM_DESKTOP_SERVER_KEY_SHA256", key_fingerprint(pem))
    token = uuid.uuid4().hex[:8]
    agents = {"ana": f"ana.silva.{token}", "ben": f"ben.okafor.{token}"}
    users = DynamoUserDirectory(aws.dynamodb, s.users_table)
    queues = {}
    for short, agent in agents.items():
        # The Users page's OS login: what each of them logs on to a PC with.
        users.put(
            QmUser(agent, short.title(), "Agent", screen_recording=True, os_login=f"corp\\{short}{token}")
        )
        queues[agent] = ensure_agent_queue(aws.sqs, agent)
    pcs: list[Pc] = []
    env = {
        "settings": s,
        "aws": aws,
        "bucket": s.screen_bucket,
        "key_id": key_id,
        "pem": pem,
        "agents": agents,
        "logins": {short: f"CORP\\{short.upper()}{token}" for short in agents},  # as Windows reports it
        "queues": queues,
        "results": aws.sqs.get_queue_url(QueueName=s.screen_results_queue)["QueueUrl"],
        "seen": [],
        "pcs": pcs,
    }
    yield env
    for pc in pcs:
        if pc.proc.poll() is None:
            pc.proc.kill()
            pc.proc.wait(timeout=30)


def publish(env: dict[str, Any], agent: str, type_: CommandType, command_id: str, **fields: Any) -> None:
    doc = build_command(type_, agent=agent, command_id=command_id, issued_at=datetime.now(UTC), **fields)
    env["aws"].sqs.send_message(
        QueueUrl=env["queues"][agent],
        MessageBody=orjson.dumps(doc).decode(),
        MessageGroupId=agent,
        MessageDeduplicationId=uuid.uuid4().hex,
    )


def login(env: dict[str, Any], agent: str) -> None:
    """Her Connect LOGIN: the server's start_recording on her queue."""
    publish(env, agent, CommandType.START_RECORDING, f"start:{uuid.uuid4().hex}")


def import_contact(env: dict[str, Any], agent: str, start: datetime, end: datetime) -> str:
    """A CTR of ``agent`` stored as the importer does; then its extraction on her queue."""
    ctr = orjson.loads(build_scenario(seed=7, contacts=1, start=start).deliveries[0])
    contact_id = str(uuid.uuid4())
    ctr["ContactId"] = contact_id
    ctr["Agent"]["Username"] = agent
    ctr["Agent"]["ConnectedToAgentTimestamp"] = format_instant(start)
    ctr["Agent"]["AfterContactWorkEndTimestamp"] = format_instant(end)
    ctr["LastUpdateTimestamp"] = format_instant(end)
    ctr["Recording"] = ctr["Recordings"] = None
    from processor.app.wiring import build_joiner

    build_joiner(env["settings"], env["aws"]).on_ctr(ctr_from_object(ctr), orjson.dumps(ctr))
    publish(
        env,
        agent,
        CommandType.EXTRACT_SCREEN,
        extract_command_id(contact_id),
        contact_id=contact_id,
        start=start,
        end=end,
        upload={"bucket": env["bucket"], "key": f"screen/{contact_id}.qmrec"},
        server_key_id=env["key_id"],
        server_public_key_pem=env["pem"],
    )
    return contact_id


def results(env: dict[str, Any], contact_id: str) -> list[dict[str, Any]]:
    sqs = env["aws"].sqs
    while True:
        got = sqs.receive_message(QueueUrl=env["results"], MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not got.get("Messages"):
            break
        for message in got["Messages"]:
            env["seen"].append(orjson.loads(message["Body"]))
            sqs.delete_message(QueueUrl=env["results"], ReceiptHandle=message["ReceiptHandle"])
    return [r for r in env["seen"] if r.get("contact_id") == contact_id and r["type"] != "sync_request"]


def answered(env: dict[str, Any], contact_id: str) -> dict[str, Any]:
    (result,) = wait_until(lambda: results(env, contact_id), 60, f"the result of {contact_id}")
    return result


def play(
    env: dict[str, Any], contact_id: str, result: dict[str, Any], out: Path
) -> tuple[tuple[int, int], list[datetime]]:
    """The contact's recording as QM plays it: its frame size and each frame's capture time."""
    assert result["type"] == "screen_uploaded", result
    record_result_in_contact(env, contact_id, result)
    cli([sys.executable, "-m", "processor", "screen", "get", contact_id, "-o", str(out)])
    near = datetime.now(UTC)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        size = (stream.codec_context.width, stream.codec_context.height)
        frames = [read_code(f).captured_at(near) for f in container.decode(stream)]
    return size, frames


def within(frames: list[datetime], start: datetime, end: datetime) -> bool:
    """Every frame shown was captured in the interval (the first one at most one frame before)."""
    return bool(frames) and all(start - timedelta(seconds=0.3) <= f <= end for f in frames)


def test_two_agents_one_after_the_other_on_one_pc(hotdesk: dict[str, Any], tmp_path: Path) -> None:
    env = hotdesk
    ana, ben = env["agents"]["ana"], env["agents"]["ben"]
    pc = Pc("pc-1", tmp_path, "320x180")
    env["pcs"].append(pc)

    mark = pc.log_on(env["logins"]["ana"])
    login(env, ana)
    ana_since = pc.wait_recording(ana, mark)
    time.sleep(6)
    ana_contact = import_contact(env, ana, ana_since + timedelta(seconds=1), ana_since + timedelta(seconds=5))
    ana_result = answered(env, ana_contact)

    # Ana logs off Windows; Ben logs on at the same PC and on to Connect.
    mark = pc.log_on(env["logins"]["ben"])
    login(env, ben)
    ben_since = pc.wait_recording(ben, mark)
    time.sleep(6)
    ben_contact = import_contact(env, ben, ben_since + timedelta(seconds=1), ben_since + timedelta(seconds=5))
    ben_result = answered(env, ben_contact)
    # Something on Ana's queue while Ben is at the PC waits for her: not served now.
    probe = import_contact(env, ana, ben_since + timedelta(seconds=1), ben_since + timedelta(seconds=5))
    time.sleep(4)
    assert results(env, probe) == []

    # Ana comes back: the extraction for the time Ben was at the PC returns none of his screen.
    mark = pc.log_on(env["logins"]["ana"])
    probe_result = answered(env, probe)
    assert probe_result["type"] == "screen_unavailable", probe_result
    assert "logged_out" in probe_result["reason"]
    assert pc.stop() == 0

    size, frames = play(env, ana_contact, ana_result, tmp_path / "ana.mp4")
    assert size == pc.size
    assert within(frames, ana_since + timedelta(seconds=1), ana_since + timedelta(seconds=5))
    assert ana_result["agent"] == ana and ana_result["coverage"] == 1.0
    size, frames = play(env, ben_contact, ben_result, tmp_path / "ben.mp4")
    assert size == pc.size
    assert within(frames, ben_since + timedelta(seconds=1), ben_since + timedelta(seconds=5))
    assert ben_result["agent"] == ben and ben_result["coverage"] == 1.0
    # Each agent's segments in her own folder: none of Ben's time in Ana's.
    folders = sorted(p.name for p in pc.base.iterdir())
    assert len(folders) == 2 and all((pc.base / f / "journal.sqlite").exists() for f in folders)
    events = pc.logs()
    assert [e["agent"] for e in events if e.get("event") == "agent left this PC"] == [ana, ben]
    assert not any(
        env["logins"]["ana"].casefold() in line.casefold() for line in pc.log.read_text().splitlines()
    )


def test_one_agent_moving_between_two_pcs(hotdesk: dict[str, Any], tmp_path: Path) -> None:
    env = hotdesk
    ana = env["agents"]["ana"]
    pc1 = Pc("pc-1", tmp_path, "320x180")
    pc2 = Pc("pc-2", tmp_path, "384x216")
    env["pcs"].extend([pc1, pc2])

    mark = pc1.log_on(env["logins"]["ana"])
    login(env, ana)
    first_since = pc1.wait_recording(ana, mark)
    time.sleep(6)
    first = import_contact(env, ana, first_since + timedelta(seconds=1), first_since + timedelta(seconds=5))
    first_result = answered(env, first)

    # She logs off PC 1 and on to PC 2 (and on to Connect there).
    pc1.log_on(None)
    mark = pc2.log_on(env["logins"]["ana"])
    wait_until(
        lambda: any(e.get("event") == "agent left this PC" for e in pc1.logs()), 30, "PC 1 letting Ana go"
    )
    login(env, ana)
    second_since = pc2.wait_recording(ana, mark)
    time.sleep(6)
    second = import_contact(
        env, ana, second_since + timedelta(seconds=1), second_since + timedelta(seconds=5)
    )
    second_result = answered(env, second)
    assert pc1.stop() == 0 and pc2.stop() == 0

    size, frames = play(env, first, first_result, tmp_path / "first.mp4")
    assert size == pc1.size  # PC 1's screen
    assert within(frames, first_since + timedelta(seconds=1), first_since + timedelta(seconds=5))
    size, frames = play(env, second, second_result, tmp_path / "second.mp4")
    assert size == pc2.size  # PC 2's screen
    assert within(frames, second_since + timedelta(seconds=1), second_since + timedelta(seconds=5))
    assert first_result["coverage"] == second_result["coverage"] == 1.0
    # PC 1 recorded nothing once she had left it.
    events = pc1.logs()
    left = max(i for i, e in enumerate(events) if e.get("event") == "agent left this PC")
    assert not any(e.get("event") == "segment started" for e in events[left:])
