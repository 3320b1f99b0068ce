"""``qm-ingest screen demo``: a contact with its screen recording, end to end, in ~40 s.

1. the embedded emulator (or whatever listens on the port), ``bootstrap``, the server key;
2. ``qm-ingest desktop --agent demo.agent`` as a child process (synthetic screen by
   default: every frame shows its capture time and counter), 10-second segments;
3. the server's part, played here: ``start_recording`` on the agent's queue, then a
   contact of that agent imported into the contacts table and its ``extract_screen``;
4. the desktop's ``screen_uploaded`` result, its location recorded on the contact;
5. the recording downloaded and decrypted with the server key, and checked: the frames
   shown first and last are the ones captured at the contact's start and end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import orjson
from rich.console import Console

from processor.adapters.aws import AwsClients
from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.dynamodb.users_table import DynamoUserDirectory
from processor.adapters.s3.screen_recordings import download_recording
from processor.adapters.screen_keys import generate_server_key, load_server_key, private_key_path
from processor.core.ctr import ctr_from_object
from processor.core.desktop_protocol import CommandType, build_command, extract_command_id, format_instant
from processor.core.envelope import key_fingerprint
from processor.core.user_directory import QmUser
from processor.desktop.capture import read_code
from processor.desktop.desktop_settings import DesktopSettings
from processor.desktop.transport import ensure_agent_queue
from processor.devtools.emulator import control
from processor.devtools.simulated_centre import build_scenario
from processor.ops.bootstrap import bootstrap, wait_for_endpoint
from processor.ops.report import print_contacts
from processor.platform.exceptions import QmIngestError
from processor.platform.settings import Settings, env_name

AGENT = "demo.agent"
SEGMENT_SECONDS = 10


def run_screen_demo(*, port: int, source: str = "synthetic") -> int:  # noqa: PLR0915 - a script
    console = Console(stderr=True)
    state = Path(os.environ.get("QM_STATE_DIR", ".qm-local"))
    started_emulator = not control.port_open(port)
    status = control.up(port, state)
    console.print(f"[bold]emulator[/]: {status.describe()}")
    os.environ["AWS_ENDPOINT_URL"] = status.endpoint
    for name, value in (
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ):
        os.environ.setdefault(name, value)
    settings = Settings()  # the server's part; the desktop child reads its DesktopSettings
    aws = AwsClients(settings)
    desktop: subprocess.Popen[bytes] | None = None
    try:
        wait_for_endpoint(aws)
        bootstrap(settings, aws)
        if not private_key_path(settings).exists():
            generate_server_key(private_key_path(settings))
        key = load_server_key(settings)
        console.print(f"[bold]server key[/]: {key.key_id} ({private_key_path(settings)})")
        demo_user(settings, aws)
        bucket = settings.screen_bucket  # the one bucket the desktop uploads to
        queue = ensure_agent_queue(aws.sqs, AGENT)
        results = aws.sqs.get_queue_url(QueueName=settings.screen_results_queue)["QueueUrl"]
        aws.sqs.purge_queue(QueueUrl=results)

        folder = state / "demo-desktop" / uuid.uuid4().hex[:8]
        env = {**os.environ, **desktop_environment(source, key_fingerprint(key.public_key_pem))}
        log = open(state / "demo-desktop.log", "ab")  # noqa: SIM115 - the child owns it
        desktop = subprocess.Popen(
            [sys.executable, "-m", "processor", "desktop", "--agent", AGENT, "--folder", str(folder)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        console.print(f"[bold]qm-desktop[/]: agent {AGENT}, {source} screen, segments of {SEGMENT_SECONDS} s")

        def publish(doc: dict[str, Any]) -> None:
            aws.sqs.send_message(
                QueueUrl=queue,
                MessageBody=orjson.dumps(doc).decode(),
                MessageGroupId=AGENT,
                MessageDeduplicationId=uuid.uuid4().hex,
            )

        now = datetime.now(UTC)
        publish(
            build_command(
                CommandType.START_RECORDING,
                agent=AGENT,
                command_id=f"start:{uuid.uuid4().hex}",
                issued_at=now,
            )
        )
        console.print("agent logged on: recording ... (25 s)")
        time.sleep(25)
        start = now + timedelta(seconds=6.4)
        end = start + timedelta(seconds=14.3)  # across two segments
        contact_id = _import_contact(settings, aws, start, end)
        publish(
            build_command(
                CommandType.EXTRACT_SCREEN,
                agent=AGENT,
                command_id=extract_command_id(contact_id),
                issued_at=datetime.now(UTC),
                contact_id=contact_id,
                start=start,
                end=end,
                upload={"bucket": bucket, "key": f"screen/{contact_id}.qmrec"},
                server_key_id=key.key_id,
                server_public_key_pem=key.public_key_pem,
            )
        )
        console.print(f"contact {contact_id} imported; extract_screen sent")
        result = _wait_result(aws, results, contact_id, timeout=60)
        if result is None or result["type"] != "screen_uploaded":
            console.print(f"[red]no recording[/]: {result}")
            return 1
        location = f"{result['location']['bucket']}/{result['location']['key']}"
        _set_location(settings, aws, contact_id, location)
        out = state / f"screen-{contact_id}.mp4"
        download_recording(aws.s3, location, key, out)
        stored = DynamoContactStore(aws.dynamodb, settings.contacts_table).get(contact_id)
        assert stored is not None
        print_contacts([stored.doc])
        console.print(f"[bold]screen recording[/] of {contact_id}: {location}")
        summary = f"duration {result['duration_seconds']} s, coverage {result['coverage']}"
        console.print(f"  result: {summary}, gaps {result['gaps']}")
        console.print(f"  decrypted with key {key.key_id} -> {out} ({out.stat().st_size} bytes)")
        for text in recording_report(out, source=source, start=start, end=end):
            console.print(text)
        return 0
    except QmIngestError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    finally:
        if desktop is not None and desktop.poll() is None:
            desktop.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                desktop.wait(timeout=30)
        if started_emulator:
            control.down(port, state)


def recording_report(path: Path, *, source: str, start: datetime, end: datetime) -> list[str]:
    """What the decrypted recording shows. Frame capture times are read from the time code
    the synthetic source draws into each frame; a real display's frames carry none, so for
    them the check is the frame count and the length played against the contact's."""
    with av.open(str(path)) as container:
        duration = float(container.duration or 0) / 1e6
        frames = list(container.decode(container.streams.video[0]))
        lines = [
            f"  plays {duration:.2f} s, {len(frames)} frames (contact: {(end - start).total_seconds():.2f} s)"
        ]
        if source != "synthetic":
            rate = container.streams.video[0].average_rate
            lines.append(
                f"  frames of a real display carry no time code: {len(frames)} frames at "
                f"{float(rate or 0):.1f} fps over {duration:.2f} s (capture times are checked with "
                "--source synthetic)"
            )
            return lines
    first, last = read_code(frames[0]).captured_at(start), read_code(frames[-1]).captured_at(start)
    lines.append(f"  first frame captured {format_instant(first)}  (contact start {format_instant(start)})")
    lines.append(f"  last frame captured  {format_instant(last)}  (contact end   {format_instant(end)})")
    return lines


def desktop_environment(source: str, server_key_sha256: str) -> dict[str, str]:
    """The desktop child's settings (``DesktopSettings``) as its environment variables."""
    values: dict[str, object] = {
        "desktop_source": source,
        "desktop_segment_seconds": SEGMENT_SECONDS,
        "desktop_poll_seconds": 1,
        # The desktop encrypts only to the server key it is configured with.
        "desktop_server_key_sha256": server_key_sha256,
        "log_level": "WARNING",
    }
    return {env_name(name, DesktopSettings): str(value) for name, value in values.items()}


def demo_user(settings: Settings, aws: AwsClients) -> QmUser:
    """The demo's agent as a QM user configured for screen recording (names on the contact)."""
    user = QmUser(AGENT, "Demo", "Agent", True)
    DynamoUserDirectory(aws.dynamodb, settings.users_table).put(user)
    return user


def _import_contact(settings: Settings, aws: AwsClients, start: datetime, end: datetime) -> str:
    """A CTR of the demo agent, mapped and stored as the importer stores it."""
    ctr = orjson.loads(build_scenario(seed=11, contacts=1, start=start).deliveries[0])
    contact_id = str(uuid.uuid4())
    ctr["ContactId"] = contact_id
    ctr["Agent"]["Username"] = AGENT
    ctr["Agent"]["ConnectedToAgentTimestamp"] = format_instant(start)
    ctr["Agent"]["AfterContactWorkEndTimestamp"] = format_instant(end)
    ctr["LastUpdateTimestamp"] = format_instant(end)
    ctr["Recording"] = ctr["Recordings"] = None  # the audio side is not the point here
    from processor.app.wiring import build_joiner

    build_joiner(settings, aws).on_ctr(ctr_from_object(ctr), orjson.dumps(ctr))
    return contact_id


def _wait_result(aws: AwsClients, url: str, contact_id: str, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in got.get("Messages", []):
            aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            doc: dict[str, Any] = orjson.loads(message["Body"])
            if doc.get("contact_id") == contact_id:
                return doc
    return None


def _set_location(settings: Settings, aws: AwsClients, contact_id: str, location: str) -> None:
    """What the server does with the result: the recording's location on the contact."""
    item = aws.dynamodb.get_item(TableName=settings.contacts_table, Key={"contact_id": {"S": contact_id}})[
        "Item"
    ]
    doc = orjson.loads(item["doc"]["S"])
    doc["screen_recording_location"] = location
    aws.dynamodb.update_item(
        TableName=settings.contacts_table,
        Key={"contact_id": {"S": contact_id}},
        UpdateExpression="SET doc = :d",
        ExpressionAttributeValues={":d": {"S": orjson.dumps(doc).decode()}},
    )
