"""What a desktop accepts from a command on its queue. Pure.

Anyone who can send to an agent's queue could otherwise have any stretch of her screen history
encrypted to a key of their choosing and uploaded to a host of their choosing. So an
``extract_screen`` command is carried out only when:

* the key it names is the server key pinned in the desktop's own configuration
  (``QM_DESKTOP_SERVER_KEY_SHA256``, the SHA-256 of the key that ``qm-ingest keys show``
  prints), and its key id is that key's;
* it uploads to the configured screen bucket, over https to that bucket's S3 host (virtual-host
  or path style); plain http only to the embedded emulator the desktop itself is configured
  with (a loopback endpoint);
* its interval is a contact's: it ends after it starts, lasts at most ``MAX_INTERVAL`` and does
  not start in the future.

Anything else is refused with its reason (logged, and reported as ``screen_failed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from processor.core.desktop_protocol import DesktopCommand
from processor.core.envelope import key_fingerprint, key_id_of

MAX_INTERVAL = timedelta(hours=12)
FUTURE_SLACK = timedelta(minutes=10)
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class CommandTrust:
    server_key_sha256: str | None
    screen_bucket: str
    region: str
    #: The embedded emulator's endpoint when the desktop is configured with one (loopback only).
    emulator_endpoint: str | None = None

    def refusal(self, command: DesktopCommand, now: datetime) -> str | None:
        """Why an ``extract_screen`` command is refused; None when it may be carried out."""
        return self._key(command) or self._upload(command) or self._interval(command, now)

    def _key(self, command: DesktopCommand) -> str | None:
        if not self.server_key_sha256:
            return "no server key is pinned (set QM_DESKTOP_SERVER_KEY_SHA256 from `qm-ingest keys show`)"
        pem = command.server_public_key_pem or ""
        try:
            fingerprint = key_fingerprint(pem)
        except ValueError:
            return "the command's server key is not a public key"
        if fingerprint != self.server_key_sha256.strip().lower():
            return f"the command's server key {fingerprint[:16]}... is not the pinned one"
        if command.server_key_id != key_id_of(pem):
            return "the command's key id does not match its key"
        return None

    def _upload(self, command: DesktopCommand) -> str | None:
        target = command.upload
        if target is None:
            return "no upload target"
        if target.bucket != self.screen_bucket:
            return f"upload bucket {target.bucket[:64]!r} is not the screen bucket"
        if target.url is None:
            return None  # uploaded with the desktop's own S3 client, to the checked bucket
        return self._url(target.url, target.key)

    def _url(self, text: str, key: str) -> str | None:
        url = urlsplit(text)
        if self.emulator_endpoint:
            own = urlsplit(self.emulator_endpoint)
            if (url.scheme, url.netloc) == (own.scheme, own.netloc) and own.hostname in LOOPBACK:
                return self._path_ok(url.path, self.screen_bucket, key, path_style=True)
        if url.scheme != "https":
            return f"upload URL scheme {url.scheme!r} is not https"
        host = (url.hostname or "").lower()
        bucket = self.screen_bucket
        virtual = {f"{bucket}.s3.amazonaws.com", f"{bucket}.s3.{self.region}.amazonaws.com"}
        path_hosts = {"s3.amazonaws.com", f"s3.{self.region}.amazonaws.com"}
        if host in virtual and url.port in (None, 443):
            return self._path_ok(url.path, bucket, key, path_style=False)
        if host in path_hosts and url.port in (None, 443):
            return self._path_ok(url.path, bucket, key, path_style=True)
        return f"upload host {host[:80]!r} is not the screen bucket's"

    @staticmethod
    def _path_ok(path: str, bucket: str, key: str, *, path_style: bool) -> str | None:
        from urllib.parse import unquote

        expected = f"/{bucket}/{key}" if path_style else f"/{key}"
        return None if unquote(path) == expected else "the upload URL is not the target's bucket and key"

    @staticmethod
    def _interval(command: DesktopCommand, now: datetime) -> str | None:
        start, end = command.start, command.end
        if start is None or end is None or end <= start:
            return "the interval is empty"
        if end - start > MAX_INTERVAL:
            return f"the interval is longer than {MAX_INTERVAL}"
        if start > now + FUTURE_SLACK:
            return "the interval starts in the future"
        return None
