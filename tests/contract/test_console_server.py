"""The console as `qm-ingest run` starts it (QM_CONSOLE_ENABLED) and stops it."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from processor.console.server import maybe_start_console


def test_console_inside_the_service(bootstrapped, aws) -> None:  # type: ignore[no-untyped-def]
    assert maybe_start_console(bootstrapped, aws) is None  # off by default
    settings = bootstrapped.model_copy(
        update={"console_enabled": True, "console_port": 0, "console_password": SecretStr("service-pw-123")}
    )
    server = maybe_start_console(settings, aws)
    assert server is not None
    try:
        assert server.url.startswith("http://127.0.0.1:")
        response = httpx.get(f"{server.url}/login")
        assert response.status_code == 200 and "Sign in" in response.text
        assert httpx.get(f"{server.url}/contacts").status_code == 303
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/login", timeout=2)
