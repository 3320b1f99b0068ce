"""Screen playback on the emulator: decrypted as a stream into a bounded file cache, once for
requests that arrive together, and refused beyond the size the console plays."""

from __future__ import annotations

import io
import os
import threading
import tracemalloc
from pathlib import Path

import pytest

from processor.adapters.screen_keys import generate_server_key
from processor.console.media import RecordingTooLarge, S3Objects
from processor.console.server import screen_source
from processor.core.envelope import encrypt_for_server


@pytest.fixture
def uploaded(bootstrapped, aws, tmp_path: Path):  # type: ignore[no-untyped-def]
    key_file = tmp_path / "server.pem"
    key = generate_server_key(key_file)
    settings = bootstrapped.model_copy(
        update={"screen_private_key_file": str(key_file), "console_screen_max_mb": 32}
    )
    plain = os.urandom(24 << 20)  # 24 MiB "video"
    encrypted = io.BytesIO()
    encrypt_for_server(
        plain,
        encrypted,
        server_key_id=key.key_id,
        server_public_key_pem=key.public_key_pem,
        metadata={"contact_id": "c1", "agent": "ana.silva"},
    )
    aws.s3.put_object(Bucket=settings.screen_bucket, Key="screen/c1.qmrec", Body=encrypted.getvalue())
    return settings, plain


def test_requests_that_arrive_together_share_one_decryption(uploaded, aws) -> None:  # type: ignore[no-untyped-def]
    settings, plain = uploaded
    source = screen_source(settings, aws, S3Objects(aws.s3))
    contact = {
        "contact_id": "c1",
        "acd_id": "ana.silva",
        "screen_recording_location": f"{settings.screen_bucket}/screen/c1.qmrec",
    }
    sizes: list[int] = []
    threads = [threading.Thread(target=lambda: sizes.append(source.open(contact).size)) for _ in range(4)]  # type: ignore[union-attr]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sizes == [len(plain)] * 4
    assert source.decryptions == 1  # type: ignore[attr-defined]
    media = source.open(contact)
    assert media is not None
    assert b"".join(media.stream(1000, 1999)) == plain[1000:2000]
    assert b"".join(media.stream(len(plain) - 10, len(plain) - 1)) == plain[-10:]
    assert source.decryptions == 1  # type: ignore[attr-defined]


def test_decryption_does_not_hold_the_recording_in_memory(uploaded, aws) -> None:  # type: ignore[no-untyped-def]
    settings, plain = uploaded
    source = screen_source(settings, aws, S3Objects(aws.s3))
    contact = {
        "contact_id": "c1",
        "acd_id": "ana.silva",
        "screen_recording_location": f"{settings.screen_bucket}/screen/c1.qmrec",
    }
    tracemalloc.start()
    try:
        media = source.open(contact)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert media is not None and media.size == len(plain)
    assert peak < len(plain) // 4, peak  # a few chunks, not the 24 MiB


def test_a_recording_larger_than_the_cap_is_refused(uploaded, aws) -> None:  # type: ignore[no-untyped-def]
    settings, _ = uploaded
    small = settings.model_copy(update={"console_screen_max_mb": 4})
    source = screen_source(small, aws, S3Objects(aws.s3))
    contact = {
        "contact_id": "c1",
        "acd_id": "ana.silva",
        "screen_recording_location": f"{settings.screen_bucket}/screen/c1.qmrec",
    }
    with pytest.raises(RecordingTooLarge):
        source.open(contact)


def test_a_contact_pointing_at_another_contact_s_upload_plays_nothing(uploaded, aws) -> None:  # type: ignore[no-untyped-def]
    from processor.console.media import RecordingMismatch

    settings, _ = uploaded
    source = screen_source(settings, aws, S3Objects(aws.s3))
    location = f"{settings.screen_bucket}/screen/c1.qmrec"
    source.open({"contact_id": "c1", "acd_id": "ana.silva", "screen_recording_location": location})
    for other in (
        {"contact_id": "c2", "acd_id": "ana.silva", "screen_recording_location": location},
        {"contact_id": "c1", "acd_id": "ben.okafor", "screen_recording_location": location},
    ):
        with pytest.raises(RecordingMismatch):
            source.open(other)
