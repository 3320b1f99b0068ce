"""Console sign-in: accounts from the settings, argon2id password hashes, roles, CSRF tokens.

Passwords are only ever held as argon2id hashes (``argon2-cffi``, RFC 9106 parameters).
``QM_CONSOLE_PASSWORD`` alone gives one ``admin`` account with both roles, hashed when
the console starts. A failed sign-in costs the same time whether or not the user exists,
and repeated failures lock the username for a while.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from processor.platform.settings import ConsoleRole, Settings

DEFAULT_ADMIN = "admin"
#: Failed sign-ins per client and user name before back-off starts (4x as many per client).
FREE_FAILURES = 3
MAX_BACKOFF_SECONDS = 300.0
#: A client's failures are forgotten this long after its last one.
FORGET_SECONDS = 3600.0
#: (client, user name) pairs remembered at most (the oldest forgotten first).
MAX_TRACKED = 10_000
#: argon2id checks at once (64 MiB of memory each), and how long a sign-in waits for one.
MAX_CONCURRENT_HASHES = 2
HASH_WAIT_SECONDS = 5.0

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash for ``QM_CONSOLE_USERS`` (``qm-ingest console hash-password``)."""
    if len(password) < 8:
        raise ValueError("a console password needs at least 8 characters")
    return _hasher.hash(password)


@dataclass(frozen=True)
class ConsoleAccount:
    username: str
    roles: frozenset[ConsoleRole]
    password_hash: str
    reveal_numbers: bool = False

    def has(self, role: ConsoleRole) -> bool:
        return role in self.roles

    @property
    def fingerprint(self) -> str:
        """Changes with the password, the roles and number revealing: sessions opened before
        such a change end (see ``adapters.console_sessions``)."""
        text = "\n".join([self.username, self.password_hash, *sorted(self.roles), str(self.reveal_numbers)])
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def accounts_from_settings(settings: Settings) -> list[ConsoleAccount]:
    accounts = [
        ConsoleAccount(a.username, frozenset(a.roles), a.password_hash.get_secret_value(), a.reveal_numbers)
        for a in settings.console_users
    ]
    if not accounts and settings.console_password is not None:
        accounts.append(
            ConsoleAccount(
                DEFAULT_ADMIN,
                frozenset({ConsoleRole.ADMINISTRATOR, ConsoleRole.EVALUATOR}),
                hash_password(settings.console_password.get_secret_value()),
                reveal_numbers=True,
            )
        )
    return accounts


class SignInThrottled(Exception):
    """Too many failed sign-ins from this client: try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"try again in {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


class Authenticator:
    """Password checks, with back-off per client and user name instead of a lock-out.

    A hard lock after N failures lets anyone lock ``admin`` out, forever, by failing N times.
    Here each (client, user name) pair and each client on its own wait ``2^(failures - free)``
    seconds (capped) before their next try is even checked, so a stranger slows down only
    themselves. At most ``MAX_CONCURRENT_HASHES`` argon2id checks (64 MiB each) run at once; the
    failure table is bounded and forgets after ``FORGET_SECONDS``.
    """

    def __init__(self, accounts: Iterable[ConsoleAccount]) -> None:
        self._accounts = {a.username: a for a in accounts}
        self._failures: OrderedDict[tuple[str, str], _Failures] = OrderedDict()
        self._lock = threading.Lock()
        self._hashing = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)
        # Verifying against this for unknown users keeps their sign-in as slow as a known one.
        self._decoy = _hasher.hash(secrets.token_hex(16))

    @property
    def configured(self) -> bool:
        return bool(self._accounts)

    def account(self, username: str) -> ConsoleAccount | None:
        return self._accounts.get(username)

    def retry_after(self, username: str, client: str = "", now: float | None = None) -> float:
        """Seconds this client must still wait before trying this user name; 0 when it may."""
        now = time.monotonic() if now is None else now
        wait = 0.0
        with self._lock:
            for key, free in (((client, username), FREE_FAILURES), ((client, ""), FREE_FAILURES * 4)):
                entry = self._failures.get(key)
                if entry is None or now - entry.last > FORGET_SECONDS or entry.count < free:
                    continue
                backoff = min(MAX_BACKOFF_SECONDS, 2.0 ** (entry.count - free))
                wait = max(wait, entry.last + backoff - now)
        return max(0.0, wait)

    def _failed(self, username: str, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in ((client, username), (client, "")):
                entry = self._failures.pop(key, None) or _Failures()
                if now - entry.last > FORGET_SECONDS:
                    entry = _Failures()
                entry.count, entry.last = entry.count + 1, now
                self._failures[key] = entry  # most recent last
            while len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)

    def verify(self, username: str, password: str, client: str = "") -> ConsoleAccount | None:
        """The account when the password is right; raises :class:`SignInThrottled` while this
        client must wait, and when the hash checks are all busy."""
        wait = self.retry_after(username, client)
        if wait > 0:
            raise SignInThrottled(wait)
        if not self._hashing.acquire(timeout=HASH_WAIT_SECONDS):
            raise SignInThrottled(1.0)
        try:
            account = self._accounts.get(username)
            try:
                _hasher.verify(account.password_hash if account else self._decoy, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                self._failed(username, client)
                return None
        finally:
            self._hashing.release()
        if account is None:
            self._failed(username, client)
            return None
        with self._lock:
            self._failures.pop((client, username), None)
        return account


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
