"""The encrypted file format of screen recordings: segments at rest and uploaded recordings.

One format for both (docs/envelope-format.md is its spec):

``header`` then ``chunk``\\* where the last chunk carries the *final* flag.

header::

    magic          8 bytes  b"QMSCREC" + format version (0x01)
    header_length  u32 BE   length of the fields below
    purpose        u8       1 = segment at rest on the agent PC, 2 = recording for the server
    cipher         u8       1 = AES-256-GCM, chunked (STREAM construction)
    key_wrap       u8       0 = data key held in the desktop's key store under key_id,
                            1 = RSA-2048 OAEP (MGF1-SHA256, SHA-256) wrapped key follows
    nonce_prefix   7 bytes  random per file
    key_id         u16 BE length + UTF-8
    wrapped_key    u16 BE length + bytes (empty when key_wrap = 0)
    metadata       u32 BE length + JSON object (authenticated, not secret)

chunk::

    length         u32 BE   plaintext length L (at most MAX_CHUNK)
    sealed         L + 16   AES-256-GCM ciphertext and tag
                            nonce = nonce_prefix | u32 BE chunk counter | u8 final flag
                            associated data = SHA-256(header bytes, magic included)

The header is authenticated by every chunk, chunks cannot be reordered, dropped or
duplicated (counter in the nonce), and truncation at a chunk boundary is detected because
the final flag is part of the nonce: a file without its final chunk is never accepted as
whole. Each file has its own random 256-bit data key, so nonces never repeat under a key.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, BinaryIO

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from processor.platform.exceptions import EnvelopeError, KeyMismatch, TamperedEnvelope, TruncatedEnvelope

MAGIC = b"QMSCREC\x01"
TAG_BYTES = 16
KEY_BYTES = 32
NONCE_PREFIX_BYTES = 7
#: Largest plaintext of one chunk: bounds what a reader allocates for untrusted input.
MAX_CHUNK = 16 * 1024 * 1024
MAX_HEADER = 64 * 1024
DEFAULT_CHUNK = 1024 * 1024
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


class Purpose(IntEnum):
    SEGMENT = 1
    RECORDING = 2


class KeyWrap(IntEnum):
    LOCAL = 0  # the data key lives in the desktop's key store, destroyed with the segment
    RSA_OAEP_SHA256 = 1


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap_key(data_key: bytes, public_key_pem: bytes | str) -> bytes:
    """RSA-OAEP-SHA256 of a data key under an RSA public key (2048 bits or more)."""
    pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
    public = serialization.load_pem_public_key(pem)
    if not isinstance(public, rsa.RSAPublicKey) or public.key_size < 2048:
        raise KeyMismatch("the server key must be an RSA public key of at least 2048 bits")
    return public.encrypt(data_key, _oaep())


def unwrap_key(wrapped: bytes, private_key: rsa.RSAPrivateKey) -> bytes:
    try:
        key = private_key.decrypt(wrapped, _oaep())
    except ValueError:
        raise KeyMismatch("the data key does not open with this private key") from None
    if len(key) != KEY_BYTES:
        raise TamperedEnvelope("wrapped data key has the wrong length")
    return key


def key_fingerprint(public_key_pem: bytes | str) -> str:
    """SHA-256 of an RSA public key's DER SubjectPublicKeyInfo, hex: what desktops pin."""
    pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
    der = serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def key_id_of(public_key_pem: bytes | str) -> str:
    """A stable id of an RSA public key: its fingerprint's first 16 hex digits."""
    return "rsa-" + key_fingerprint(public_key_pem)[:16]


@dataclass(frozen=True)
class Header:
    purpose: Purpose
    key_wrap: KeyWrap
    key_id: str
    wrapped_key: bytes = b""
    metadata: dict[str, Any] = field(default_factory=dict)
    nonce_prefix: bytes = b""
    raw: bytes = b""  # the exact header bytes (magic included), bound into every chunk

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    @property
    def size(self) -> int:
        return len(self.raw)


def _encode_header(
    purpose: Purpose,
    key_wrap: KeyWrap,
    key_id: str,
    *,
    wrapped_key: bytes,
    metadata: dict[str, Any],
    nonce_prefix: bytes,
) -> bytes:
    key_id_bytes = key_id.encode()
    meta = orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS)
    body = b"".join(
        [
            bytes([int(purpose), 1, int(key_wrap)]),
            nonce_prefix,
            _U16.pack(len(key_id_bytes)),
            key_id_bytes,
            _U16.pack(len(wrapped_key)),
            wrapped_key,
            _U32.pack(len(meta)),
            meta,
        ]
    )
    return MAGIC + _U32.pack(len(body)) + body


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    return data if data is not None else b""


def read_header(stream: BinaryIO) -> Header:
    """Parse the header (not yet authenticated: the first chunk authenticates it)."""
    start = _read_exact(stream, len(MAGIC) + 4)
    if len(start) < len(MAGIC) + 4:
        raise TruncatedEnvelope("file ends inside the header")
    if start[: len(MAGIC) - 1] != MAGIC[:-1]:
        raise TamperedEnvelope("not a qm screen recording (bad magic)")
    if start[len(MAGIC) - 1] != MAGIC[-1]:
        raise EnvelopeError(f"unsupported format version {start[len(MAGIC) - 1]}")
    (length,) = _U32.unpack(start[len(MAGIC) :])
    if length > MAX_HEADER:
        raise TamperedEnvelope(f"header length {length} exceeds {MAX_HEADER}")
    body = _read_exact(stream, length)
    if len(body) < length:
        raise TruncatedEnvelope("file ends inside the header")
    try:
        purpose, cipher, wrap = body[0], body[1], body[2]
        pos = 3
        nonce_prefix = body[pos : pos + NONCE_PREFIX_BYTES]
        pos += NONCE_PREFIX_BYTES
        (n,) = _U16.unpack_from(body, pos)
        key_id = body[pos + 2 : pos + 2 + n].decode()
        pos += 2 + n
        (n,) = _U16.unpack_from(body, pos)
        wrapped = body[pos + 2 : pos + 2 + n]
        pos += 2 + n
        (n,) = _U32.unpack_from(body, pos)
        metadata = orjson.loads(body[pos + 4 : pos + 4 + n])
        pos += 4 + n
        if pos != length or cipher != 1 or not isinstance(metadata, dict):
            raise ValueError("malformed")
        return Header(Purpose(purpose), KeyWrap(wrap), key_id, wrapped, metadata, nonce_prefix, start + body)
    except (ValueError, struct.error, UnicodeDecodeError, orjson.JSONDecodeError):
        raise TamperedEnvelope("malformed header") from None


def _nonce(prefix: bytes, counter: int, final: bool) -> bytes:
    return prefix + _U32.pack(counter) + (b"\x01" if final else b"\x00")


class EnvelopeWriter:
    """Encrypts a byte stream as it is written; plaintext only ever sits in memory.

    ``write`` buffers; a chunk is sealed when the buffer reaches ``chunk_size`` or when the
    caller calls :meth:`seal_chunk` (the recorder does so after every MP4 fragment, so a
    crash loses at most the fragment being written). :meth:`close` writes the final chunk.
    """

    def __init__(
        self,
        out: BinaryIO,
        data_key: bytes,
        *,
        purpose: Purpose,
        key_id: str,
        key_wrap: KeyWrap = KeyWrap.LOCAL,
        wrapped_key: bytes = b"",
        metadata: dict[str, Any] | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        fsync: bool = False,
    ) -> None:
        if len(data_key) != KEY_BYTES:
            raise ValueError("data key must be 32 bytes (AES-256)")
        if not 0 < chunk_size <= MAX_CHUNK:
            raise ValueError(f"chunk_size must be in 1..{MAX_CHUNK}")
        self._out = out
        self._aead = AESGCM(data_key)
        self._chunk_size = chunk_size
        self._fsync = fsync
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        raw = _encode_header(
            purpose,
            key_wrap,
            key_id,
            wrapped_key=wrapped_key,
            metadata=metadata or {},
            nonce_prefix=os.urandom(NONCE_PREFIX_BYTES),
        )
        self.header = read_header_bytes(raw)
        out.write(raw)
        self.bytes_written = len(raw)
        self.plaintext_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed envelope")
        view = memoryview(data)
        size = len(view)
        if self._buffer:
            room = self._chunk_size - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) == self._chunk_size:
                piece = bytes(self._buffer)
                self._buffer.clear()
                self._emit(piece, final=False)
        # Whole chunks straight from the caller's memory: no extra copies.
        while len(view) >= self._chunk_size:
            self._emit(view[: self._chunk_size], final=False)
            view = view[self._chunk_size :]
        self._buffer += view
        return size

    def seal_chunk(self) -> None:
        """Encrypt and write what is buffered now (durable on return when fsync is on)."""
        if self._buffer:
            piece = bytes(self._buffer)
            self._buffer.clear()
            self._emit(piece, final=False)
        self._sync()

    def close(self) -> None:
        if self._closed:
            return
        piece = bytes(self._buffer)
        self._buffer.clear()
        self._emit(piece, final=True)
        self._closed = True
        self._sync()

    @property
    def chunks(self) -> int:
        return self._counter

    def _emit(self, piece: bytes | memoryview, *, final: bool) -> None:
        sealed = self._aead.encrypt(
            _nonce(self.header.nonce_prefix, self._counter, final), piece, self.header.digest
        )
        self._out.write(_U32.pack(len(piece)))
        self._out.write(sealed)
        self._counter += 1
        self.bytes_written += 4 + len(sealed)
        self.plaintext_bytes += len(piece)

    def _sync(self) -> None:
        self._out.flush()
        if self._fsync:
            os.fsync(self._out.fileno())


def read_header_bytes(raw: bytes) -> Header:
    import io

    return read_header(io.BytesIO(raw))


@dataclass
class ChunkScan:
    """What a tolerant read found: authenticated chunks and where the valid part ends."""

    chunks: int = 0
    plaintext_bytes: int = 0
    valid_end: int = 0  # file offset just after the last authenticated chunk
    final: bool = False
    trailing_bytes: int = 0  # bytes after valid_end that do not form a whole chunk


class EnvelopeReader:
    """Decrypts and authenticates an envelope chunk by chunk."""

    def __init__(self, stream: BinaryIO, data_key: bytes) -> None:
        self._stream = stream
        self.header = read_header(stream)
        if len(data_key) != KEY_BYTES:
            raise KeyMismatch("data key must be 32 bytes")
        self._aead = AESGCM(data_key)
        self.scan = ChunkScan(valid_end=self.header.size)

    def chunks(self, *, allow_truncated: bool = False) -> Iterator[bytes]:
        """Yield plaintext chunks in order. Raises on tampering; on a missing final chunk
        raises :class:`TruncatedEnvelope` unless ``allow_truncated`` (crash recovery, for
        the desktop's own segments only)."""
        counter = 0
        prefix, aad = self.header.nonce_prefix, self.header.digest
        while True:
            head = _read_exact(self._stream, 4)
            if not head:
                if allow_truncated:
                    return
                raise TruncatedEnvelope(f"no final chunk after {counter} chunks")
            if len(head) < 4:
                self.scan.trailing_bytes = len(head)
                if allow_truncated:
                    return
                raise TruncatedEnvelope("file ends inside a chunk length")
            (length,) = _U32.unpack(head)
            if length > MAX_CHUNK:
                raise TamperedEnvelope(f"chunk {counter} claims {length} bytes (max {MAX_CHUNK})")
            sealed = _read_exact(self._stream, length + TAG_BYTES)
            if len(sealed) < length + TAG_BYTES:
                self.scan.trailing_bytes = 4 + len(sealed)
                if allow_truncated:
                    return
                raise TruncatedEnvelope(f"file ends inside chunk {counter}")
            plain, final = self._open(prefix, counter, sealed, aad)
            self.scan.chunks += 1
            self.scan.plaintext_bytes += len(plain)
            self.scan.valid_end += 4 + len(sealed)
            yield plain
            counter += 1
            if final:
                self.scan.final = True
                if _read_exact(self._stream, 1):
                    raise TamperedEnvelope("data after the final chunk")
                return

    def _open(self, prefix: bytes, counter: int, sealed: bytes, aad: bytes) -> tuple[bytes, bool]:
        # Most chunks are not final; try that first.
        for final in (False, True):
            try:
                return self._aead.decrypt(_nonce(prefix, counter, final), sealed, aad), final
            except InvalidTag:
                continue
        raise TamperedEnvelope(f"chunk {counter} failed authentication (tampered, or the wrong key)")

    def read_all(self, *, allow_truncated: bool = False) -> bytes:
        return b"".join(self.chunks(allow_truncated=allow_truncated))


def encrypt_bytes(
    data: bytes,
    out: BinaryIO,
    *,
    data_key: bytes,
    purpose: Purpose,
    key_id: str,
    key_wrap: KeyWrap,
    wrapped_key: bytes = b"",
    metadata: dict[str, Any] | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> EnvelopeWriter:
    writer = EnvelopeWriter(
        out,
        data_key,
        purpose=purpose,
        key_id=key_id,
        key_wrap=key_wrap,
        wrapped_key=wrapped_key,
        metadata=metadata,
        chunk_size=chunk_size,
    )
    view = memoryview(data)
    for start in range(0, len(data), chunk_size):
        writer.write(view[start : start + chunk_size])
    writer.close()
    return writer


def encrypt_for_server(
    data: bytes,
    out: BinaryIO,
    *,
    server_key_id: str,
    server_public_key_pem: str | bytes,
    metadata: dict[str, Any] | None = None,
) -> EnvelopeWriter:
    """A recording for the server: a fresh data key wrapped by the server's RSA key."""
    data_key = new_data_key()
    return encrypt_bytes(
        data,
        out,
        data_key=data_key,
        purpose=Purpose.RECORDING,
        key_id=server_key_id,
        key_wrap=KeyWrap.RSA_OAEP_SHA256,
        wrapped_key=wrap_key(data_key, server_public_key_pem),
        metadata=metadata,
    )


def decrypt_recording(
    stream: BinaryIO, private_key: rsa.RSAPrivateKey, *, expected_key_id: str | None
) -> Iterator[bytes]:
    """Plaintext chunks of a server recording, authenticated (raises before yielding a
    tampered chunk; a truncated file raises at its end, so write to a temporary file)."""
    header = read_header(stream)
    if header.key_wrap is not KeyWrap.RSA_OAEP_SHA256 or header.purpose is not Purpose.RECORDING:
        raise TamperedEnvelope("not a recording encrypted for the server")
    if expected_key_id is not None and header.key_id != expected_key_id:
        raise KeyMismatch(f"recording was encrypted for key {header.key_id}, this key is {expected_key_id}")
    data_key = unwrap_key(header.wrapped_key, private_key)
    stream.seek(0)
    return EnvelopeReader(stream, data_key).chunks()


def seal_truncated(stream: BinaryIO, data_key: bytes) -> tuple[ChunkScan, bytes]:
    """Crash recovery of one's own file: keep every authenticated chunk, cut a partial
    chunk off, and append the final chunk. ``stream`` is opened read/write at offset 0.
    Returns what was kept and its plaintext. A file that already has its final chunk is
    left as it is; a tampered chunk raises (recovery never papers over tampering)."""
    reader = EnvelopeReader(stream, data_key)
    plaintext = reader.read_all(allow_truncated=True)
    scan = reader.scan
    if scan.final:
        return scan, plaintext
    stream.seek(scan.valid_end)
    stream.truncate()
    aead = AESGCM(data_key)
    sealed = aead.encrypt(_nonce(reader.header.nonce_prefix, scan.chunks, True), b"", reader.header.digest)
    stream.write(_U32.pack(0) + sealed)
    stream.flush()
    os.fsync(stream.fileno())
    scan.valid_end += 4 + len(sealed)
    scan.chunks += 1
    scan.final = True
    return scan, plaintext
