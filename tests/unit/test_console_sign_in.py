"""Sign-in back-off: a stranger slows down only themselves, never locks the account out."""

from __future__ import annotations

import pytest

from processor.console import auth
from processor.console.auth import Authenticator, ConsoleAccount, SignInThrottled, hash_password
from processor.platform.settings import ConsoleRole

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def admin() -> ConsoleAccount:
    return ConsoleAccount("admin", frozenset({ConsoleRole.ADMINISTRATOR}), hash_password(PASSWORD))


def test_a_stranger_cannot_lock_admin_out(admin: ConsoleAccount) -> None:
    authenticator = Authenticator([admin])
    for _ in range(auth.FREE_FAILURES):
        assert authenticator.verify("admin", "guess", "203.0.113.9") is None
    with pytest.raises(SignInThrottled):
        authenticator.verify("admin", "guess", "203.0.113.9")
    # The administrator, from her own PC, signs in at once.
    assert authenticator.verify("admin", PASSWORD, "198.51.100.4") == admin


def test_back_off_grows_and_is_forgotten(admin: ConsoleAccount) -> None:
    authenticator = Authenticator([admin])
    for _ in range(auth.FREE_FAILURES):
        authenticator.verify("admin", "guess", "c")
    first = authenticator.retry_after("admin", "c")
    authenticator._failed("admin", "c")  # one more failure (as after waiting)
    assert authenticator.retry_after("admin", "c") > first > 0
    import time

    later = time.monotonic() + auth.FORGET_SECONDS + 1
    assert authenticator.retry_after("admin", "c", now=later) == 0


def test_the_failure_table_is_bounded(admin: ConsoleAccount, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "MAX_TRACKED", 50)
    authenticator = Authenticator([admin])
    for i in range(200):
        authenticator._failed(f"user{i}", f"client{i}")
    assert len(authenticator._failures) <= 50


def test_hash_checks_are_bounded(admin: ConsoleAccount, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "HASH_WAIT_SECONDS", 0.1)
    authenticator = Authenticator([admin])
    held = [authenticator._hashing.acquire() for _ in range(auth.MAX_CONCURRENT_HASHES)]
    assert all(held)
    with pytest.raises(SignInThrottled):
        authenticator.verify("admin", PASSWORD, "c")
    for _ in held:
        authenticator._hashing.release()
    assert authenticator.verify("admin", PASSWORD, "c") == admin
