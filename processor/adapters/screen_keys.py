"""The server's screen-recording key pair (RSA-2048).

Desktops encrypt every uploaded recording with a fresh AES-256 data key wrapped by the
server's public key; only the holder of the private key (this file, never sent anywhere)
can play them. The key id, derived from the public key, tells which key a recording needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from processor.core.envelope import key_id_of
from processor.platform.exceptions import ConfigurationError
from processor.platform.settings import Settings, env_name

PUBLIC_SUFFIX = ".pub"


@dataclass(frozen=True)
class ServerKey:
    key_id: str
    public_key_pem: str
    private_key: rsa.RSAPrivateKey | None = None


def private_key_path(settings: Settings) -> Path:
    if settings.screen_private_key_file:
        return Path(settings.screen_private_key_file)
    return Path(settings.state_dir) / "screen-private-key.pem"


def public_key_path(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + PUBLIC_SUFFIX)


def generate_server_key(path: Path, *, overwrite: bool = False) -> ServerKey:
    """Write a new RSA-2048 private key (mode 0600) and its public key next to it."""
    if path.exists() and not overwrite:
        raise ConfigurationError(f"{path} exists; recordings encrypted for it would become unreadable")
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    public = _public_pem(private)
    public_key_path(path).write_text(public)
    return ServerKey(key_id_of(public), public, private)


def _public_pem(private: rsa.RSAPrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def load_server_key(settings: Settings) -> ServerKey:
    """The private key and its id (for playback)."""
    path = private_key_path(settings)
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigurationError(
            f"no screen-recording key at {path}: run `qm-ingest keys generate` "
            f"(or set {env_name('screen_private_key_file')})"
        ) from None
    except ValueError as exc:
        raise ConfigurationError(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(loaded, rsa.RSAPrivateKey) or loaded.key_size < 2048:
        raise ConfigurationError(f"{path} is not an RSA private key of at least 2048 bits")
    public = _public_pem(loaded)
    return ServerKey(key_id_of(public), public, loaded)


def server_public_key(settings: Settings) -> tuple[str, str]:
    """``(key_id, public_key_pem)`` for extract_screen commands (the private key stays here)."""
    path = public_key_path(private_key_path(settings))
    if path.exists():
        public = path.read_text()
        return key_id_of(public), public
    key = load_server_key(settings)
    return key.key_id, key.public_key_pem
