"""qm-desktop's own settings: the desktop's variables reach ``DesktopSettings`` (and the
recorder's configuration), the server's ``Settings`` has none of them, the shared ones keep
their names, and the server's typo check leaves the desktop's variables alone."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.desktop.capture import SyntheticSource
from processor.desktop.desktop_settings import DesktopSettings, DesktopSource, load_desktop_settings
from processor.desktop.main import desktop_config, frame_source
from processor.desktop.screen_demo import desktop_environment
from processor.platform.exceptions import ConfigurationError
from processor.platform.settings import (
    DESKTOP_PREFIX,
    CommonSettings,
    Settings,
    env_name,
    env_names,
    get_settings,
    unknown_variables,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    for key in list(os.environ):
        if key.startswith("QM_") or key.startswith("AWS_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    yield monkeypatch
    get_settings.cache_clear()  # the command line's settings were read from this environment


def test_desktop_variables_reach_the_desktop_settings_and_its_configuration(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("QM_DESKTOP_SEGMENT_SECONDS", "42")
    clean_env.setenv("QM_DESKTOP_SOURCE", "synthetic")
    clean_env.setenv("QM_DESKTOP_SYNTHETIC_SIZE", "320x180")
    clean_env.setenv("QM_DESKTOP_QUOTA_MB", "7")
    clean_env.setenv("QM_DESKTOP_DIR", str(tmp_path / "base"))
    clean_env.setenv("QM_SCREEN_BUCKET", "site-screens")
    clean_env.setenv("AWS_REGION", "eu-west-1")
    settings = load_desktop_settings()
    assert settings.desktop_segment_seconds == 42
    assert settings.desktop_source is DesktopSource.SYNTHETIC
    config = desktop_config(settings, "ana.silva")
    assert config.segment_seconds == 42 and config.quota_bytes == 7 * 1024 * 1024
    assert config.folder.parent == tmp_path / "base"
    assert config.trust is not None
    assert (config.trust.screen_bucket, config.trust.region) == ("site-screens", "eu-west-1")
    assert isinstance(frame_source(settings), SyntheticSource)


def test_the_server_settings_have_no_desktop_fields(clean_env: pytest.MonkeyPatch) -> None:
    assert [name for name in Settings.model_fields if name.startswith("desktop_")] == []
    assert not any(name.startswith(DESKTOP_PREFIX) for name in env_names(Settings))
    clean_env.setenv("QM_DESKTOP_SEGMENT_SECONDS", "42")
    assert not hasattr(Settings(), "desktop_segment_seconds")


def test_the_desktop_reads_the_shared_settings_and_only_its_own_prefix_besides() -> None:
    common = set(CommonSettings.model_fields)
    assert common <= set(Settings.model_fields) and common <= set(DesktopSettings.model_fields)
    own = [name for name in DesktopSettings.model_fields if name not in common]
    assert own and all(env_name(name, DesktopSettings).startswith(DESKTOP_PREFIX) for name in own)


def test_the_server_s_typo_check_leaves_the_desktop_s_variables_alone() -> None:
    desktop_only = sorted(env_names(DesktopSettings) - env_names(Settings))
    environ = dict.fromkeys([*desktop_only, "QM_DESKTOP_FAULT", "QM_SCREEN_BUKET"], "1")
    assert dict(unknown_variables(environ)) == {"QM_SCREEN_BUKET": "QM_SCREEN_BUCKET"}


def test_an_invalid_desktop_value_names_its_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("QM_DESKTOP_FPS", "0")
    clean_env.setenv("QM_DESKTOP_SESSION", "who")
    with pytest.raises(ConfigurationError) as caught:
        load_desktop_settings()
    assert "QM_DESKTOP_FPS: Input should be greater than 0" in str(caught.value)
    assert "QM_DESKTOP_SESSION" in str(caught.value)


def test_the_settings_file_is_read_by_the_desktop_too(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    file = tmp_path / "desktop.env"
    file.write_text("QM_DESKTOP_FPS=2\nQM_LOG_LEVEL=debug\n")
    clean_env.setenv("QM_SETTINGS_FILE", str(file))
    settings = load_desktop_settings()
    assert (settings.desktop_fps, settings.log_level) == (2.0, "DEBUG")


def test_the_screen_demo_configures_its_desktop_child_with_desktop_settings(
    clean_env: pytest.MonkeyPatch,
) -> None:
    for key, value in desktop_environment("synthetic", "ab" * 32).items():
        clean_env.setenv(key, value)
    settings = load_desktop_settings()
    assert settings.desktop_source is DesktopSource.SYNTHETIC
    assert settings.desktop_server_key_sha256 == "ab" * 32
    assert (settings.desktop_segment_seconds, settings.desktop_poll_seconds) == (10, 1)
    assert settings.log_level == "WARNING"


def test_docs_desktop_settings_table_is_current() -> None:
    from processor.ops.report import settings_table

    text = DOCS.read_text()
    start = text.index("<!-- desktop-settings-table:start -->") + len("<!-- desktop-settings-table:start -->")
    table = text[start : text.index("<!-- desktop-settings-table:end -->")].strip()
    assert table == settings_table(DesktopSettings(), markdown=True), (
        "regenerate: qm-ingest settings --desktop --markdown"
    )


def test_the_settings_command_prints_the_desktop_s_table(clean_env: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from processor.entrypoints.cli import app

    clean_env.setenv("QM_DESKTOP_FPS", "3")
    done = CliRunner().invoke(app, ["settings", "--desktop"])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert any(line.split() == ["QM_DESKTOP_FPS", "3.0"] for line in lines)
    assert not any(line.startswith("QM_CTR_STREAM") for line in lines)
    server = CliRunner().invoke(app, ["settings"]).output
    assert "QM_DESKTOP_" not in server and "QM_CTR_STREAM" in server
