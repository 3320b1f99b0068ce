"""qm-desktop against the embedded emulator: its real SQS queues and S3, a synthetic screen,
real encoding and encryption, on a clock running 20x faster than the wall clock."""

from __future__ import annotations

import contextlib
import io
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import orjson
import pytest

from processor.adapters.aws import AwsClients
from processor.adapters.s3.screen_recordings import download_recording
from processor.adapters.screen_keys import generate_server_key
from processor.core.agent_queue import agent_queue_name
from processor.core.desktop_protocol import CommandType, build_command, extract_command_id
from processor.core.desktop_trust import CommandTrust
from processor.core.envelope import key_fingerprint
from processor.core.schemas import validate
from processor.desktop.agent import DesktopAgent, DesktopConfig
from processor.desktop.capture import SyntheticSource, read_code
from processor.desktop.clock import ScaledClock
from processor.desktop.desktop_settings import load_desktop_settings
from processor.desktop.segments import EncoderSettings
from processor.desktop.transport import S3Uploader, SqsCommandQueue, SqsResultSink, ensure_agent_queue
from processor.platform.exceptions import TamperedEnvelope

SPEED = 20.0
AGENT = "jane.doe@example.com"
BUCKET_SUFFIX = "-screen"


class LoggedSource(SyntheticSource):
    """The synthetic screen, noting when each frame it drew was captured (a frame the writer
    refused is drawn again under the same counter: the last time wins)."""

    def __init__(self) -> None:
        super().__init__(320, 180)
        self.captured: dict[int, datetime] = {}

    def grab(self, at: datetime, index: int):  # type: ignore[no-untyped-def]
        self.captured[index] = at
        return super().grab(at, index)

    def on_screen(self, start: datetime, end: datetime) -> list[int]:
        """The frames a recording of [start, end) must hold, whatever the capture dropped under
        load: the one on screen at ``start`` (the latest captured at or before it), then every
        frame captured before ``end``."""
        times = sorted(self.captured.items(), key=lambda item: item[1])
        before = [counter for counter, at in times if at <= start]
        return before[-1:] + [counter for counter, at in times if start < at < end]


def assert_cropped(
    frames: list[tuple[float, int, datetime]], source: LoggedSource, start: datetime, end: datetime
) -> None:
    """The uploaded video is exactly the captured frames of the contact's interval, each at its
    capture time (the code drawn in the frame carries it, to the millisecond)."""
    assert [counter for _, counter, _ in frames] == source.on_screen(start, end)
    for _, counter, at in frames:
        assert abs(at - source.captured[counter]) < timedelta(milliseconds=1)
    assert frames[0][0] == 0.0  # the frame on screen at the start is shown from time 0


class CountingUploader(S3Uploader):
    """The real uploader, counting its uploads."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.uploads: list[str] = []

    def put(self, target, data: bytes) -> None:  # type: ignore[no-untyped-def]
        super().put(target, data)
        self.uploads.append(target.location)


@pytest.fixture
def env(bootstrapped, aws, tmp_path: Path):  # type: ignore[no-untyped-def]
    s = bootstrapped
    bucket = s.recordings_bucket + BUCKET_SUFFIX
    aws.s3.create_bucket(Bucket=bucket)
    queue_url = ensure_agent_queue(aws.sqs, AGENT)
    results_url = aws.sqs.get_queue_url(QueueName=s.screen_results_queue)["QueueUrl"]
    key = generate_server_key(tmp_path / "server-key.pem")
    # The desktop's side reads its own settings from the same environment.
    desktop = load_desktop_settings()
    assert (desktop.screen_results_queue, desktop.aws_endpoint_url) == (
        s.screen_results_queue,
        s.aws_endpoint_url,
    )
    return {
        "settings": s,
        "aws": aws,
        "desktop": desktop,
        "desktop_aws": AwsClients(desktop),
        "bucket": bucket,
        "queue": queue_url,
        "results": results_url,
        "key": key,
    }


def trust_of(env, **changes) -> CommandTrust:  # type: ignore[no-untyped-def]
    """The desktop's configuration: the env's server key pinned, its bucket, the emulator."""
    values = {
        "server_key_sha256": key_fingerprint(env["key"].public_key_pem),
        "screen_bucket": env["bucket"],
        "region": env["desktop"].aws_region,
        "emulator_endpoint": env["desktop"].aws_endpoint_url,
        **changes,
    }
    return CommandTrust(**values)


#: Every agent a test made, shut down after it even when it fails: a recorder left running logs
#: its segments into the rest of the test process's output.
_MADE: list[DesktopAgent] = []


@pytest.fixture(autouse=True)
def _shut_down_agents() -> Iterator[None]:
    yield
    while _MADE:
        with contextlib.suppress(Exception):
            _MADE.pop().shutdown()


def make_agent(  # type: ignore[no-untyped-def]
    env,
    tmp_path: Path,
    clock: ScaledClock,
    uploader: S3Uploader | None = None,
    source: SyntheticSource | None = None,
) -> DesktopAgent:
    aws = env["desktop_aws"]
    agent = DesktopAgent(
        DesktopConfig(
            agent=AGENT,
            folder=tmp_path / "agent",
            encoder=EncoderSettings(fps=5, fsync=False),
            segment_seconds=20,
            poll_seconds=0,
            trust=trust_of(env),
        ),
        queue=SqsCommandQueue(aws.sqs, agent_queue_name(AGENT)),
        results=SqsResultSink(aws.sqs, env["desktop"].screen_results_queue),
        uploader=uploader or CountingUploader(aws.s3),
        source=source or SyntheticSource(320, 180),
        clock=clock,
    )
    _MADE.append(agent)
    return agent


def send(env, type_: CommandType, command_id: str, issued_at: datetime, **fields) -> None:  # type: ignore[no-untyped-def]
    doc = build_command(type_, agent=AGENT, command_id=command_id, issued_at=issued_at, **fields)
    env["aws"].sqs.send_message(
        QueueUrl=env["queue"],
        MessageBody=orjson.dumps(doc).decode(),
        MessageGroupId=AGENT,
        # A fresh deduplication id per send: a command republished after a sync is a new message.
        MessageDeduplicationId=uuid.uuid4().hex,
    )


def extract(env, contact_id: str, start: datetime, end: datetime, issued_at: datetime, **upload) -> None:  # type: ignore[no-untyped-def]
    send(
        env,
        CommandType.EXTRACT_SCREEN,
        extract_command_id(contact_id),
        issued_at,
        contact_id=contact_id,
        start=start,
        end=end,
        upload={"bucket": env["bucket"], "key": f"screen/{contact_id}.qmrec", **upload},
        server_key_id=env["key"].key_id,
        server_public_key_pem=env["key"].public_key_pem,
    )


def results(env) -> list[dict]:  # type: ignore[type-arg]
    out = []
    while True:
        got = env["aws"].sqs.receive_message(
            QueueUrl=env["results"], MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        if not got.get("Messages"):
            return out
        for message in got["Messages"]:
            doc = orjson.loads(message["Body"])
            validate("desktop-result", doc)
            out.append(doc)
            env["aws"].sqs.delete_message(QueueUrl=env["results"], ReceiptHandle=message["ReceiptHandle"])


def poll_until(agent: DesktopAgent, predicate, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agent.poll(0)
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def play(env, contact_id: str, tmp_path: Path) -> list[tuple[float, int, datetime]]:  # type: ignore[no-untyped-def]
    """(presentation time, frame counter, capture time) of every frame of the uploaded video."""
    out = tmp_path / f"{contact_id}.mp4"
    download_recording(env["aws"].s3, f"{env['bucket']}/screen/{contact_id}.qmrec", env["key"], out)
    with av.open(str(out)) as container:
        codes = [
            (float(f.pts * f.time_base), read_code(f)) for f in container.decode(container.streams.video[0])
        ]
    now = datetime.now(UTC)
    return [(pts, code.counter, code.captured_at(now)) for pts, code in codes]


def test_login_record_extract_upload_play(env, tmp_path: Path) -> None:
    clock = ScaledClock(datetime.now(UTC).replace(microsecond=0), SPEED)
    uploader = CountingUploader(env["desktop_aws"].s3)
    source = LoggedSource()
    agent = make_agent(env, tmp_path, clock, uploader, source)
    agent.start()
    (sync,) = results(env)
    assert sync["type"] == "sync_request" and sync["agent"] == AGENT
    login = clock.now()
    send(env, CommandType.START_RECORDING, "start:0001:jane.doe", login)
    poll_until(agent, lambda: agent.recorder.recording)
    poll_until(agent, lambda: clock.now() > login + timedelta(seconds=55), timeout=10)
    start, end = login + timedelta(seconds=6.3), login + timedelta(seconds=47.7)  # three segments
    extract(env, "contact-0001", start, end, clock.now())
    (result,) = poll_until(agent, lambda: results(env))
    assert result["type"] == "screen_uploaded" and result["contact_id"] == "contact-0001"
    assert result["coverage"] == 1.0 and result["gaps"] == []
    assert result["duration_seconds"] == pytest.approx(41.4, abs=0.5)
    assert result["server_key_id"] == env["key"].key_id
    assert_cropped(play(env, "contact-0001", tmp_path), source, start, end)

    # The same command again: no second upload, the stored result is sent again.
    extract(env, "contact-0001", start, end, clock.now())
    (again,) = poll_until(agent, lambda: results(env))
    assert again == result
    assert uploader.uploads == [f"{env['bucket']}/screen/contact-0001.qmrec"]
    agent.shutdown()


def test_presigned_url_upload_needs_no_credentials(env, tmp_path: Path) -> None:
    clock = ScaledClock(datetime.now(UTC).replace(microsecond=0), SPEED)
    source = LoggedSource()
    agent = make_agent(env, tmp_path, clock, CountingUploader(None), source)  # no S3 client at all
    agent.start()
    results(env)
    login = clock.now()
    send(env, CommandType.START_RECORDING, "start:0002:jane.doe", login)
    poll_until(agent, lambda: clock.now() > login + timedelta(seconds=12), timeout=10)
    url = env["aws"].s3.generate_presigned_url(
        "put_object", Params={"Bucket": env["bucket"], "Key": "screen/contact-0002.qmrec"}, ExpiresIn=600
    )
    start, end = login + timedelta(seconds=2), login + timedelta(seconds=9)
    extract(env, "contact-0002", start, end, clock.now(), url=url)
    (result,) = poll_until(agent, lambda: results(env))
    assert result["type"] == "screen_uploaded", result
    assert result["duration_seconds"] == pytest.approx(7.0, abs=0.05)
    assert_cropped(play(env, "contact-0002", tmp_path), source, start, end)
    agent.shutdown()


def test_gaps_unavailable_release_and_purge(env, tmp_path: Path) -> None:
    clock = ScaledClock(datetime.now(UTC).replace(microsecond=0), SPEED)
    agent = make_agent(env, tmp_path, clock)
    agent.start()
    results(env)
    t0 = clock.now()
    # Before the desktop ever ran: nothing to upload, and the reason says why.
    extract(env, "contact-0010", t0 - timedelta(hours=2), t0 - timedelta(hours=1), t0)
    (unavailable,) = poll_until(agent, lambda: results(env))
    assert unavailable["type"] == "screen_unavailable" and "pc_off" in unavailable["reason"]

    send(env, CommandType.START_RECORDING, "start:0010:jane.doe", t0)
    # From when the recorder runs: on the 20x clock a loaded machine's second of delay in
    # picking the command up is 20 s of contact time, which would open a gap of its own.
    poll_until(agent, lambda: agent.recorder.recording)
    started = clock.now()
    poll_until(agent, lambda: clock.now() > started + timedelta(seconds=25), timeout=10)
    send(env, CommandType.STOP_RECORDING, "stop:0010:jane.doe", clock.now())
    poll_until(agent, lambda: not agent.recorder.recording)
    logout = clock.now()
    time.sleep(10 / SPEED)
    send(env, CommandType.START_RECORDING, "start:0011:jane.doe", clock.now())
    poll_until(agent, lambda: clock.now() > logout + timedelta(seconds=25), timeout=10)
    # A contact across the logout: uploaded with the logged-out part as a gap.
    extract(env, "contact-0011", started + timedelta(seconds=5), logout + timedelta(seconds=20), clock.now())
    (partial,) = poll_until(agent, lambda: results(env))
    assert partial["type"] == "screen_uploaded"
    (gap,) = partial["gaps"]
    assert gap["reason"] == "logged_out"
    assert 0.2 < partial["coverage"] < 0.9
    segments_before = agent.journal.segments()
    assert len(segments_before) >= 3

    # Release everything before the logout: the first session's segments go, keys too.
    send(env, CommandType.RELEASE_SEGMENTS_BEFORE, "release:0001:jane.doe", clock.now(), before=logout)
    poll_until(agent, lambda: agent.journal.counters().get("segments_deleted_released", 0) >= 1)
    for row in segments_before:
        if row.end is not None and row.end <= logout:
            assert agent.journal.segment_key(row.segment_id) is None
            assert not (agent.store.folder / row.file).exists()
        else:
            assert (agent.store.folder / row.file).exists()
    agent.shutdown()


def test_tampered_upload_is_never_played(env, tmp_path: Path) -> None:
    clock = ScaledClock(datetime.now(UTC).replace(microsecond=0), SPEED)
    agent = make_agent(env, tmp_path, clock)
    agent.start()
    results(env)
    t0 = clock.now()
    send(env, CommandType.START_RECORDING, "start:0020:jane.doe", t0)
    poll_until(agent, lambda: clock.now() > t0 + timedelta(seconds=8), timeout=10)
    extract(env, "contact-0020", t0 + timedelta(seconds=1), t0 + timedelta(seconds=6), clock.now())
    poll_until(agent, lambda: results(env))
    agent.shutdown()
    s3 = env["aws"].s3
    blob = bytearray(s3.get_object(Bucket=env["bucket"], Key="screen/contact-0020.qmrec")["Body"].read())
    blob[len(blob) // 2] ^= 0x10
    s3.put_object(Bucket=env["bucket"], Key="screen/contact-0020.qmrec", Body=bytes(blob))
    out = tmp_path / "tampered.mp4"
    with pytest.raises(TamperedEnvelope):
        download_recording(s3, f"{env['bucket']}/screen/contact-0020.qmrec", env["key"], out)
    assert not out.exists() and not list(tmp_path.glob(".qm-screen-*"))
    assert io  # keep the import for readers of play()


def test_commands_outside_the_desktop_s_rules_are_refused(env, tmp_path: Path) -> None:
    """What anyone who can send to the agent's queue might ask: her screen encrypted to their
    key, uploaded to their host or bucket, over plain http, or a day of her screen history."""
    from processor.adapters.screen_keys import generate_server_key

    clock = ScaledClock(datetime.now(UTC).replace(microsecond=0), SPEED)
    uploader = CountingUploader(env["desktop_aws"].s3)
    agent = make_agent(env, tmp_path, clock, uploader)
    agent.start()
    results(env)
    login = clock.now()
    send(env, CommandType.START_RECORDING, "start:0099:jane.doe", login)
    poll_until(agent, lambda: clock.now() > login + timedelta(seconds=12), timeout=10)
    start, end = login + timedelta(seconds=2), login + timedelta(seconds=9)
    theirs = generate_server_key(tmp_path / "attacker.pem")
    other = env["settings"].recordings_bucket  # a bucket the desktop can write, not the screen bucket
    attacks = {
        "c-their-key": {"server_key_id": theirs.key_id, "server_public_key_pem": theirs.public_key_pem},
        "c-their-host": {"upload": {"url": "http://198.51.100.7/drop?x=1"}},
        "c-plain-http": {
            "upload": {"url": "http://screens.s3.us-east-1.amazonaws.com/screen/c-plain-http.qmrec"}
        },
        "c-their-bucket": {"upload": {"bucket": other}},
        "c-a-day": {"start": login - timedelta(days=1)},
    }
    for contact_id, change in attacks.items():
        upload = {"bucket": env["bucket"], "key": f"screen/{contact_id}.qmrec", **change.pop("upload", {})}
        fields = {
            "contact_id": contact_id,
            "start": start,
            "end": end,
            "upload": upload,
            "server_key_id": env["key"].key_id,
            "server_public_key_pem": env["key"].public_key_pem,
            **change,
        }
        send(env, CommandType.EXTRACT_SCREEN, extract_command_id(contact_id), clock.now(), **fields)
    got: list[dict] = []  # type: ignore[type-arg]
    poll_until(agent, lambda: got.extend(results(env)) or len(got) >= len(attacks), timeout=30)
    assert {r["contact_id"] for r in got} == set(attacks)
    for result in got:
        assert result["type"] == "screen_failed", result
        assert result["reason"].startswith("refused: "), result
    assert uploader.uploads == []
    # The desktop's own rules let the server's command through.
    extract(env, "c-legit", start, end, clock.now())
    (ok,) = poll_until(agent, lambda: results(env))
    assert ok["type"] == "screen_uploaded"
    agent.shutdown()


def test_without_a_pinned_key_nothing_is_extracted(env, tmp_path: Path) -> None:
    from dataclasses import replace

    clock = ScaledClock(datetime.now(UTC).replace(microsecond=0), SPEED)
    agent = make_agent(env, tmp_path, clock)
    agent.config = replace(agent.config, trust=trust_of(env, server_key_sha256=None))
    agent.start()
    results(env)
    now = clock.now()
    extract(env, "c-unpinned", now - timedelta(seconds=5), now, now)
    (refused,) = poll_until(agent, lambda: results(env))
    assert refused["type"] == "screen_failed" and "QM_DESKTOP_SERVER_KEY_SHA256" in refused["reason"]
    agent.shutdown()


def test_an_agent_s_folder_never_opens_for_another_agent(env, tmp_path: Path) -> None:
    """Hot-desking keeps each agent's segments apart: her folder is tagged with her name."""
    from dataclasses import replace

    from processor.platform.exceptions import ConfigurationError

    clock = ScaledClock(datetime.now(UTC).replace(microsecond=0), SPEED)
    agent = make_agent(env, tmp_path, clock)
    agent.journal.close()
    again = make_agent(env, tmp_path, clock)  # the same agent: opens
    assert again.journal.get_meta("agent") == AGENT
    again.journal.close()
    other = make_agent(env, tmp_path, clock)
    other.journal.close()
    with pytest.raises(ConfigurationError, match="another agent"):
        DesktopAgent(
            replace(other.config, agent="someone.else"),
            queue=other.queue,
            results=other.results,
            uploader=other.uploader,
            source=SyntheticSource(320, 180),
            clock=clock,
        )
