"""qm-desktop's settings: what the agent PC's recorder reads from the environment.

The AWS, shared resource and log settings come from ``CommonSettings`` (the same variables as
the server's); the desktop's own all start with ``QM_DESKTOP_`` (``DESKTOP_PREFIX``: the
server's ``doctor`` leaves them alone). The desktop's table in docs/settings.md is generated
from this class (``qm-ingest settings --desktop --markdown``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from processor.platform.settings import CommonSettings, load_settings


class DesktopSource(StrEnum):
    SCREEN = "screen"
    SYNTHETIC = "synthetic"


class DesktopSettings(CommonSettings):
    """Typed, validated settings of qm-desktop (``qm-desktop``, ``qm-ingest desktop``)."""

    desktop_dir: Annotated[
        str | None,
        Field(
            description="Base folder of qm-desktop's per-user folders; unset = platform default "
            "(Windows: C:\\Program Files (x86)\\Common Files\\Calabrio ONE\\Desktop)"
        ),
    ] = None
    desktop_source: Annotated[
        DesktopSource, Field(description="screen (the real display, via mss) or synthetic (test pattern)")
    ] = DesktopSource.SCREEN
    desktop_monitor: Annotated[
        int, Field(ge=0, description="mss monitor to record: 0 = all, 1 = primary")
    ] = 1
    desktop_synthetic_size: Annotated[
        str, Field(pattern=r"^[0-9]{2,5}x[0-9]{2,5}$", description="Frame size of the synthetic source")
    ] = "1280x720"
    desktop_server_key_sha256: Annotated[
        str | None,
        Field(
            description="qm-desktop: the server key recordings may be encrypted to (its SHA-256, from"
            " `qm-ingest keys show`); extraction commands naming another key are refused"
        ),
    ] = None
    desktop_fps: Annotated[float, Field(gt=0, le=30, description="Screen frames per second")] = 5.0
    desktop_segment_seconds: Annotated[
        int, Field(ge=5, le=3600, description="Length of one screen segment on the agent PC")
    ] = 600
    desktop_crf: Annotated[
        int, Field(ge=0, le=51, description="H.264 quality (x264 CRF; lower = better)")
    ] = 28
    desktop_preset: Annotated[str, Field(description="x264 preset (CPU against size)")] = "veryfast"
    desktop_quota_mb: Annotated[
        int, Field(ge=1, description="Disk quota of the segments on the agent PC (MiB)")
    ] = 4096
    desktop_quota_warn_percent: Annotated[
        int, Field(ge=1, le=100, description="Warn when segments use this share of the quota")
    ] = 80
    desktop_poll_seconds: Annotated[
        int, Field(ge=0, le=20, description="SQS long-poll wait of the desktop's command queue")
    ] = 5
    desktop_session: Annotated[
        str,
        Field(
            pattern=r"^(loginctl|file:.+)$",
            description="qm-desktop without --agent: how it learns who holds the PC's console session"
            " (loginctl = systemd-logind's seat0; file:PATH = the login written in a file)",
        ),
    ] = "loginctl"
    desktop_fsync: Annotated[
        bool, Field(description="fsync every sealed fragment (survives a power-off; off only for tests)")
    ] = True


def load_desktop_settings() -> DesktopSettings:
    """The desktop's settings from the environment (and ``QM_SETTINGS_FILE``); raises
    ConfigurationError naming every offending variable."""
    return load_settings(DesktopSettings)
