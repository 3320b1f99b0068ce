from __future__ import annotations

import orjson
import pytest

from processor.console.auth import (
    FREE_FAILURES,
    Authenticator,
    ConsoleAccount,
    SignInThrottled,
    accounts_from_settings,
    csrf_matches,
    hash_password,
)
from processor.platform.settings import ConsoleRole, Settings


def test_hash_is_argon2id_and_verifies() -> None:
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed
    auth = Authenticator([ConsoleAccount("eva", frozenset({ConsoleRole.EVALUATOR}), hashed)])
    assert auth.verify("eva", "correct horse") is not None
    assert auth.verify("eva", "wrong horse") is None
    assert auth.verify("nobody", "correct horse") is None
    with pytest.raises(ValueError):
        hash_password("short")


def test_repeated_failures_make_that_client_wait() -> None:
    auth = Authenticator(
        [ConsoleAccount("eva", frozenset({ConsoleRole.EVALUATOR}), hash_password("pw-12345678"))]
    )
    for _ in range(FREE_FAILURES):
        assert auth.verify("eva", "guess", "10.0.0.9") is None
    with pytest.raises(SignInThrottled):  # even the right password waits its turn from there
        auth.verify("eva", "pw-12345678", "10.0.0.9")
    assert auth.retry_after("eva", "10.0.0.9") > 0
    assert auth.verify("eva", "pw-12345678", "10.0.0.10") is not None  # not a lock-out


def test_accounts_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QM_CONSOLE_USERS", raising=False)
    monkeypatch.setenv("QM_CONSOLE_PASSWORD", "admin-password-1")
    (admin,) = accounts_from_settings(Settings())
    assert admin.username == "admin" and admin.roles == {ConsoleRole.ADMINISTRATOR, ConsoleRole.EVALUATOR}
    assert admin.password_hash.startswith("$argon2id$")
    hashed = hash_password("evaluator-pw")
    entry = {"username": "eva", "roles": ["evaluator"], "password_hash": hashed, "reveal_numbers": True}
    monkeypatch.setenv("QM_CONSOLE_USERS", orjson.dumps([entry]).decode())
    (eva,) = accounts_from_settings(Settings())
    assert (eva.username, eva.roles, eva.reveal_numbers) == ("eva", {ConsoleRole.EVALUATOR}, True)


def test_plaintext_password_in_users_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv(
        "QM_CONSOLE_USERS", '[{"username": "eva", "roles": ["evaluator"], "password_hash": "hunter2"}]'
    )
    with pytest.raises(ValidationError):
        Settings()


def test_csrf_compare() -> None:
    assert csrf_matches("abc", "abc")
    assert not csrf_matches("abc", "abd")
    assert not csrf_matches(None, "abc")
    assert not csrf_matches("abc", None)
