"""Shared fixtures: the test session starts its own embedded emulator and stops it at the end.

Tests that touch AWS talk to that real server over HTTP on 127.0.0.1, through the same
boto3 code paths as production. Each test gets its own resource names, so tests never
see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.devtools.emulator import control

#: The slowest tests (a minute or more each on two cores: real services, KCL daemons, fault
#: injection), run first. `make test` hands tests to its two processes two at a time in
#: collection order (pytest-xdist's ``--dist load --maxschedchunk 2``; without the cap, each
#: process starts with a quarter of its share at once, and one of them got every long test), so
#: longest first keeps both busy to the end instead of leaving one running a long test alone.
#: A stale entry only changes the order.
LONGEST_FIRST = (
    "tests/faults/test_poison_transient.py",
    "tests/e2e/test_replay_e2e.py",
    "tests/faults/test_graceful_shutdown.py",
    "tests/e2e/test_kcl_pipeline.py",
    "tests/faults/test_kill9.py",
    "tests/e2e/test_iam_roles.py",
    "tests/e2e/test_operations.py",
    "tests/e2e/test_screen_e2e.py",
    "tests/e2e/test_desktop_e2e.py",
    "tests/e2e/test_desktop_hotdesk_e2e.py",
    "tests/e2e/test_archive_e2e.py",
    "tests/faults/test_fuzz.py",
    "tests/contract/test_localstack_hook.py",
    "tests/e2e/",
    "tests/faults/",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return next(
            (i for i, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)), len(LONGEST_FIRST)
        )

    items.sort(key=rank)  # stable: the rest keep their order


# Real public samples (see each folder's SOURCES.md), kept byte for byte.
SAMPLES = Path(__file__).resolve().parent / "samples"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh embedded emulator on a free port for this test session."""
    state = tmp_path_factory.mktemp("emulator")
    port = control.free_port()
    status = control.up(port, state, timeout=60)
    endpoint = status.endpoint
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ["AWS_REGION"] = "us-east-1"
    yield endpoint
    control.down(port, state)


@pytest.fixture(scope="session")
def iam_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An emulator of its own for the IAM enforcement tests: enforcement is one switch for the
    whole server (processor/devtools/emulator/iam_enforcement.py), which the other tests must not see."""
    state = tmp_path_factory.mktemp("iam-emulator")
    port = control.free_port()
    status = control.up(port, state, timeout=60)
    yield status.endpoint
    control.down(port, state)


def unique_names(prefix: str = "t") -> dict[str, str]:
    token = uuid.uuid4().hex[:8]
    base = f"{prefix}-{token}"
    return {
        "QM_CTR_STREAM": f"{base}-ctr",
        "QM_AGENT_EVENT_STREAM": f"{base}-agent",
        "QM_OUTPUT_STREAM": f"{base}-out",
        "QM_RECORDINGS_BUCKET": f"{base}-rec",
        "QM_RECORDINGS_QUEUE": f"{base}-recq",
        "QM_QUARANTINE_BUCKET": f"{base}-quar",
        "QM_CONTACTS_TABLE": f"{base}-contacts",
        "QM_QUARANTINE_TABLE": f"{base}-quarantine",
        "QM_USERS_TABLE": f"{base}-users",
        "QM_JOIN_TABLE": f"{base}-join",
        "QM_CONFIG_TABLE": f"{base}-config",
        "QM_COMMANDS_TABLE": f"{base}-commands",
        "QM_AGENTS_TABLE": f"{base}-agents",
        "QM_SCREEN_BUCKET": f"{base}-screen",
        "QM_AGENT_APPLICATION_NAME": f"{base}-agentapp",
        "QM_AUDIT_TABLE": f"{base}-audit",
        "QM_SCREEN_RESULTS_QUEUE": f"{base}-results",
        "QM_APPLICATION_NAME": f"{base}-app",
        "QM_ARCHIVE_BUCKET": f"{base}-archive",
        "QM_ARCHIVE_QUEUE": f"{base}-archq",
        "QM_ARCHIVE_CURSOR_TABLE": f"{base}-cursor",
        "QM_RECORDINGS_COPY_BUCKET": f"{base}-copies",
    }


@pytest.fixture
def names(emulator: str) -> dict[str, str]:
    return unique_names()


@pytest.fixture
def settings(emulator: str, names: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from processor.platform.settings import Settings, get_settings

    for key, value in names.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("QM_STATE_DIR", str(tmp_path / "state"))
    # The tenant check, on purpose open: the tests feed CTRs of many instances (the public
    # samples'); the tests of the check itself name their instances.
    if "QM_INSTANCE_ARN" not in os.environ:
        monkeypatch.setenv("QM_INSTANCE_ARN", "any")
    get_settings.cache_clear()
    yield Settings()
    get_settings.cache_clear()


@pytest.fixture
def aws(settings):  # type: ignore[no-untyped-def]
    from processor.adapters.aws import AwsClients

    return AwsClients(settings)


@pytest.fixture
def bootstrapped(settings, aws):  # type: ignore[no-untyped-def]
    from processor.ops.bootstrap import bootstrap

    bootstrap(settings, aws)
    return settings
