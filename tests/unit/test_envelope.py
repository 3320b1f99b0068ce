"""The encrypted recording format: round trip, wrong key, flipped bits, truncation."""

from __future__ import annotations

import io
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from processor.core.envelope import (
    MAGIC,
    EnvelopeReader,
    KeyWrap,
    Purpose,
    decrypt_recording,
    encrypt_bytes,
    encrypt_for_server,
    key_id_of,
    new_data_key,
    read_header,
    seal_truncated,
)
from processor.platform.exceptions import EnvelopeError, KeyMismatch, TamperedEnvelope, TruncatedEnvelope


@pytest.fixture(scope="module")
def server_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _segment(data: bytes, key: bytes, chunk: int = 1000) -> bytes:
    out = io.BytesIO()
    encrypt_bytes(
        data,
        out,
        data_key=key,
        purpose=Purpose.SEGMENT,
        key_id="segment:x",
        key_wrap=KeyWrap.LOCAL,
        metadata={"segment_id": "x"},
        chunk_size=chunk,
    )
    return out.getvalue()


def _open(blob: bytes, key: bytes) -> bytes:
    return EnvelopeReader(io.BytesIO(blob), key).read_all()


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 5000, 12345])
def test_round_trip_segment(size: int) -> None:
    data, key = os.urandom(size), new_data_key()
    blob = _segment(data, key)
    assert blob.startswith(MAGIC)
    assert size < 16 or data not in blob  # no plaintext in the file
    assert _open(blob, key) == data


def test_round_trip_for_server(server_key: rsa.RSAPrivateKey) -> None:
    data = os.urandom(300_000)
    out = io.BytesIO()
    key_id = key_id_of(_pem(server_key))
    encrypt_for_server(
        data, out, server_key_id=key_id, server_public_key_pem=_pem(server_key), metadata={"c": 1}
    )
    out.seek(0)
    header = read_header(out)
    assert header.key_id == key_id and header.purpose is Purpose.RECORDING and len(header.wrapped_key) == 256
    out.seek(0)
    assert b"".join(decrypt_recording(out, server_key, expected_key_id=key_id)) == data


def test_wrong_server_key_is_refused(server_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    out = io.BytesIO()
    encrypt_for_server(b"x" * 100, out, server_key_id="k1", server_public_key_pem=_pem(server_key))
    out.seek(0)
    with pytest.raises(KeyMismatch):
        list(decrypt_recording(out, other, expected_key_id=None))  # right id claimed, wrong key
    out.seek(0)
    with pytest.raises(KeyMismatch, match="encrypted for key k1"):
        list(decrypt_recording(out, server_key, expected_key_id="k2"))


def test_wrong_data_key_fails_authentication() -> None:
    blob = _segment(b"secret screen" * 100, new_data_key())
    with pytest.raises(TamperedEnvelope):
        _open(blob, new_data_key())


def test_every_flipped_bit_is_detected() -> None:
    key = new_data_key()
    blob = _segment(os.urandom(2500), key)
    # Every byte of the file (header included), one bit each: never accepted. A flipped
    # version byte reads as an unsupported version, which is refused as well.
    for position in range(len(blob)):
        damaged = bytearray(blob)
        damaged[position] ^= 1 << (position % 8)
        with pytest.raises(EnvelopeError):
            _open(bytes(damaged), key)


def test_truncated_file_is_detected_at_every_length() -> None:
    key = new_data_key()
    blob = _segment(os.urandom(3500), key)
    for length in range(len(blob)):
        with pytest.raises((TruncatedEnvelope, TamperedEnvelope)):
            _open(blob[:length], key)


def test_truncation_at_a_chunk_boundary_is_truncation() -> None:
    key = new_data_key()
    blob = _segment(os.urandom(3000), key)  # chunks of 1000 + final
    reader = EnvelopeReader(io.BytesIO(blob), key)
    reader.read_all()
    header = reader.header.size
    first_chunk_end = header + 4 + 1000 + 16
    with pytest.raises(TruncatedEnvelope, match="no final chunk"):
        _open(blob[:first_chunk_end], key)


def test_reordered_or_appended_chunks_are_detected() -> None:
    key = new_data_key()
    blob = _segment(os.urandom(3000), key)
    header = EnvelopeReader(io.BytesIO(blob), key).header.size
    size = 4 + 1000 + 16
    c1, c2 = blob[header : header + size], blob[header + size : header + 2 * size]
    swapped = blob[:header] + c2 + c1 + blob[header + 2 * size :]
    with pytest.raises(TamperedEnvelope):
        _open(swapped, key)
    with pytest.raises(TamperedEnvelope, match="after the final chunk"):
        _open(blob + b"\0", key)


def test_crash_recovery_keeps_whole_chunks_only(tmp_path) -> None:
    key = new_data_key()
    out = io.BytesIO()
    from processor.core.envelope import EnvelopeWriter

    writer = EnvelopeWriter(out, key, purpose=Purpose.SEGMENT, key_id="segment:y")
    writer.write(b"a" * 700)
    writer.seal_chunk()
    writer.write(b"b" * 300)
    writer.seal_chunk()
    writer.write(b"c" * 50)  # never sealed: lost in the crash
    whole = out.getvalue()
    torn = whole + b"\x00\x00\x01"  # a chunk that was being written
    with pytest.raises(TruncatedEnvelope):
        _open(torn, key)

    path = tmp_path / "segment"
    path.write_bytes(torn)
    with open(path, "r+b") as handle:
        scan, plaintext = seal_truncated(handle, key)
    assert plaintext == b"a" * 700 + b"b" * 300
    assert scan.final and scan.chunks == 3
    assert _open(path.read_bytes(), key) == plaintext
    with open(path, "r+b") as handle:  # a sealed file is left as it is
        assert seal_truncated(handle, key)[1] == plaintext
    assert _open(path.read_bytes(), key) == plaintext
