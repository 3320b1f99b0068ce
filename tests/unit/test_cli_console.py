from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner

from processor.entrypoints.cli import app
from processor.platform.settings import get_settings


def test_hash_password_prints_an_argon2id_hash() -> None:
    result = CliRunner().invoke(app, ["console", "hash-password"], input="a long secret\na long secret\n")
    assert result.exit_code == 0, result.output
    hashed = result.output.strip().splitlines()[-1]
    assert hashed.startswith("$argon2id$")
    assert PasswordHasher().verify(hashed, "a long secret")


def test_console_without_users_says_how_to_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QM_CONSOLE_USERS", raising=False)
    monkeypatch.delenv("QM_CONSOLE_PASSWORD", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["console"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "QM_CONSOLE_USERS" in result.output and "QM_CONSOLE_PASSWORD" in result.output
