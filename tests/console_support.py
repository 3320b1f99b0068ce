"""The console on the test emulator: accounts, seeded contacts with real WAV/MP4 media, a live server."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest

from processor.adapters.dynamodb.users_table import DynamoUserAdmin, DynamoUserDirectory
from processor.console.auth import ConsoleAccount, hash_password
from processor.console.samples import contact_doc, put_contacts, stereo_wav
from processor.core.agent_queue import agent_queue_name
from processor.core.user_directory import QmUser
from processor.platform.settings import ConsoleRole, Settings

NOW = datetime(2024, 6, 30, 12, 0, tzinfo=UTC)
DAY = "2024-06-28"
PASSWORD = "console-test-pw"
ADMIN_ROLES = frozenset({ConsoleRole.ADMINISTRATOR})
EVAL_ROLES = frozenset({ConsoleRole.EVALUATOR})


def make_mp4(seconds: int = 4, fps: int = 5, size: tuple[int, int] = (320, 240)) -> bytes:
    """A small H.264 MP4 (moov first, so players start at once) with moving bars."""
    import av

    # faststart rewrites the file to move the index first: it needs a real file.
    path = Path(tempfile.mkdtemp(prefix="qm-mp4-")) / "screen.mp4"
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(fps)}
        stream.codec_context.time_base = Fraction(1, fps)
        width, height = size
        for n in range(seconds * fps):
            frame = av.VideoFrame(width, height, "yuv420p")
            luma = bytes(((x + n * 8) % 256) for x in range(width)) * height
            frame.planes[0].update(luma)
            frame.planes[1].update(bytes([128]) * (width // 2 * height // 2))
            frame.planes[2].update(bytes([128]) * (width // 2 * height // 2))
            frame.pts = n
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()
    shutil.rmtree(path.parent, ignore_errors=True)
    return data


@dataclass
class ConsoleEnv:
    settings: Settings
    aws: Any
    url: str
    docs: dict[str, dict[str, Any]]
    wavs: dict[str, bytes]
    mp4: bytes
    server: Any = None
    deps: Any = None
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self) -> httpx.Client:
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)
        self.clients.append(client)
        return client

    def signed_in(self, username: str) -> httpx.Client:
        client = self.client()
        csrf = csrf_of(client.get("/login").text)
        response = client.post(
            "/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf}
        )
        assert response.status_code == 303, response.text
        return client


def csrf_of(html: str) -> str:
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def accounts() -> list[ConsoleAccount]:
    hashed = hash_password(PASSWORD)
    return [
        ConsoleAccount("admin", ADMIN_ROLES, hashed),
        ConsoleAccount("eva", EVAL_ROLES, hashed, reveal_numbers=True),
        ConsoleAccount("viewer", EVAL_ROLES, hashed, reveal_numbers=False),
        ConsoleAccount("boss", ADMIN_ROLES | EVAL_ROLES, hashed, reveal_numbers=True),
    ]


def seed(settings: Settings, aws: Any) -> tuple[dict[str, dict[str, Any]], dict[str, bytes], bytes]:
    users = DynamoUserDirectory(aws.dynamodb, settings.users_table)
    users.put(QmUser("ana.silva", "Ana", "Silva"))
    users.put(QmUser("ben.okafor", "Ben", "Okafor", screen_recording=True, desktop_id="PC-0042"))
    DynamoUserAdmin(aws.dynamodb, settings.users_table).record_desktop_contact(
        "ben.okafor", seen_at="2024-06-30T11:58:02.000Z", desktop_id="PC-0042", queue_depth=2
    )
    # An agent's queue is named by the username alone (one per agent in an account), so a test
    # earlier in this session may have left Ana's or Ben's behind: start from none.
    for agent in ("ana.silva", "ben.okafor"):
        try:
            url = aws.sqs.get_queue_url(QueueName=agent_queue_name(agent))["QueueUrl"]
        except aws.sqs.exceptions.QueueDoesNotExist:
            continue
        aws.sqs.delete_queue(QueueUrl=url)
    # Two commands wait on Ben's own queue (the desktop is off).
    queue = aws.sqs.create_queue(
        QueueName=agent_queue_name("ben.okafor"),
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    for n in range(2):
        aws.sqs.send_message(QueueUrl=queue, MessageBody=f'{{"n": {n}}}', MessageGroupId="ben.okafor")
    bucket = settings.recordings_bucket
    wavs = {
        "c-both": stereo_wav(24, customer=True, agent=True),
        "c-agent-only": stereo_wav(24, customer=False, agent=True),
        "c-customer-only": stereo_wav(24, customer=True, agent=False),
    }
    docs: dict[str, dict[str, Any]] = {}
    for i, (contact_id, wav) in enumerate(wavs.items()):
        key = f"connect/demo/CallRecordings/2024/06/28/{contact_id}_20240628T1{i}:00_UTC.wav"
        aws.s3.put_object(Bucket=bucket, Key=key, Body=wav)
        docs[contact_id] = contact_doc(
            contact_id,
            agent="ben.okafor" if i == 0 else "ana.silva",
            first_name="Ben" if i == 0 else "Ana",
            last_name="Okafor" if i == 0 else "Silva",
            connected_at=datetime(2024, 6, 28, 10 + i, 0, tzinfo=UTC),
            duration_seconds=24.0,
            calling=f"+1425555012{i}",
            recording_location=f"{bucket}/{key}",
        )
    mp4 = make_mp4()
    screen_key = "screen/ben.okafor/c-both.mp4"
    aws.s3.put_object(Bucket=bucket, Key=screen_key, Body=mp4)
    docs["c-both"].update(
        screen_recording_status="uploaded",
        screen_recording_location=f"{bucket}/{screen_key}",
        screen_coverage=0.98,
    )
    docs["c-missing"] = contact_doc(
        "c-missing",
        agent="ana.silva",
        first_name="Ana",
        last_name="Silva",
        connected_at=datetime(2024, 6, 27, 9, 30, tzinfo=UTC),
        duration_seconds=61.0,
        direction="outbound",
        calling="+14255550999",
        recording_location=None,
        flags=["recording_missing"],
        join_state="recording_missing",
    )
    put_contacts(aws.dynamodb, settings.contacts_table, list(docs.values()))
    return docs, wavs, mp4


@pytest.fixture
def console_env(bootstrapped: Settings, aws: Any) -> Iterator[ConsoleEnv]:
    from processor.console.app import create_app
    from processor.console.server import ConsoleServer, build_deps

    settings = bootstrapped.model_copy(update={"console_port": 0})
    docs, wavs, mp4 = seed(settings, aws)
    deps = build_deps(settings, aws, accounts=accounts(), now=lambda: NOW)
    server = ConsoleServer(create_app(deps), "127.0.0.1", 0).start()
    env = ConsoleEnv(settings, aws, server.url, docs, wavs, mp4, server, deps)
    try:
        yield env
    finally:
        for client in env.clients:
            client.close()
        server.stop()
