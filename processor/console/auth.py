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
from collections.abc import Iterable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from processor.settings import ConsoleRole, Settings

DEFAULT_ADMIN = "admin"
MAX_FAILURES = 5
LOCKOUT_SECONDS = 300.0

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


class Authenticator:
    def __init__(self, accounts: Iterable[ConsoleAccount]) -> None:
        self._accounts = {a.username: a for a in accounts}
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        # Verifying against this for unknown users keeps their sign-in as slow as a known one.
        self._decoy = _hasher.hash(secrets.token_hex(16))

    @property
    def configured(self) -> bool:
        return bool(self._accounts)

    def account(self, username: str) -> ConsoleAccount | None:
        return self._accounts.get(username)

    def locked(self, username: str) -> bool:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(username, []) if now - t < LOCKOUT_SECONDS]
            self._failures[username] = recent
            return len(recent) >= MAX_FAILURES

    def verify(self, username: str, password: str) -> ConsoleAccount | None:
        if self.locked(username):
            return None
        account = self._accounts.get(username)
        try:
            _hasher.verify(account.password_hash if account else self._decoy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            with self._lock:
                self._failures.setdefault(username, []).append(time.monotonic())
            return None
        if account is None:
            return None
        with self._lock:
            self._failures.pop(username, None)
        return account


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
