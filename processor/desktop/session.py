"""Who is at this PC: the operating-system user holding the PC's console session, and the
agent that login maps to.

``SessionUser`` is the small interface the PC recorder depends on; implementations:

* :class:`LoginctlSession` (Linux, systemd-logind): the active session of ``seat0``
  (``loginctl show-seat seat0 --property=ActiveSession``), then that session's
  properties (``loginctl show-session ID --property=...``, ``key=value`` lines): its
  ``Name`` when it is a local (``Remote=no``) ``user``-class session that is active.
  A greeter (``Class=greeter``), a remote SSH login or a locked-out seat is nobody.
* :class:`FileSession`: the login written in a file (tests, kiosks driven by a script).
* :class:`FixedSession`: always the same login (tests).

Windows and macOS need their own (see docs/screen-recording.md):
``WTSGetActiveConsoleSessionId`` + ``WTSQuerySessionInformation(WTSUserName /
WTSDomainName)`` on Windows; ``SCDynamicStoreCopyConsoleUser`` (or
``stat -f %Su /dev/console``) on macOS.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from processor.adapters.dynamodb.users_table import users_with_os_login
from processor.core.user_directory import normalise_os_login
from processor.platform.exceptions import InvalidInput, SessionLookupError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: The seat of the PC's own screen and keyboard (logind's name for it).
CONSOLE_SEAT = "seat0"
SESSION_PROPERTIES = ("Name", "Active", "State", "Class", "Remote", "Seat", "Type")


class SessionUser(Protocol):
    def current_login(self) -> str | None:
        """The OS login holding the PC's console session now (None: nobody is logged on).
        Raises :class:`SessionLookupError` when it cannot be told."""
        ...


class LoginDirectory(Protocol):
    def agent_for(self, os_login: str) -> str | None:
        """The ACD ID (Connect username) the OS login maps to, None when it maps to none."""
        ...


# --- Linux: systemd-logind through loginctl ---------------------------------------------------------
def parse_properties(text: str) -> dict[str, str]:
    """``loginctl show-*`` output: one ``Key=value`` a line (the value may hold ``=``)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def console_login(session: dict[str, str]) -> str | None:
    """The user of a ``show-session`` answer when it is a local user at the console."""
    if session.get("Active") != "yes" or session.get("State", "active") != "active":
        return None
    if session.get("Class", "user") != "user" or session.get("Remote", "no") != "no":
        return None
    seat = session.get("Seat")
    if seat is not None and seat not in ("", CONSOLE_SEAT):
        return None
    return session.get("Name") or None


class Runner(Protocol):
    def __call__(self, argv: Sequence[str]) -> str: ...


def run_command(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SessionLookupError(f"{argv[0]} could not be run: {exc}") from None
    if done.returncode != 0:
        raise SessionLookupError(
            f"{' '.join(argv[:2])} failed ({done.returncode}): {done.stderr.strip()[:200]}"
        )
    return done.stdout


class LoginctlSession:
    """The active local session on seat0, as systemd-logind knows it."""

    def __init__(self, runner: Runner = run_command, loginctl: str | None = None) -> None:
        self._run = runner
        self._loginctl = loginctl or shutil.which("loginctl") or "loginctl"

    def current_login(self) -> str | None:
        seat = parse_properties(
            self._run([self._loginctl, "show-seat", CONSOLE_SEAT, "--property=ActiveSession"])
        )
        session_id = seat.get("ActiveSession", "")
        if not session_id:
            return None
        props = [f"--property={p}" for p in SESSION_PROPERTIES]
        return console_login(
            parse_properties(self._run([self._loginctl, "show-session", session_id, *props]))
        )


# --- scripted (tests) -------------------------------------------------------------------------------
class FileSession:
    """The login written in a file (first line; a missing or empty file is nobody)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def current_login(self) -> str | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SessionLookupError(f"session file unreadable: {exc}") from None
        lines = text.strip().splitlines()
        return lines[0].strip() or None if lines else None


class FixedSession:
    def __init__(self, login: str | None) -> None:
        self.login = login

    def current_login(self) -> str | None:
        return self.login


def session_from_setting(value: str) -> SessionUser:
    """``QM_DESKTOP_SESSION``: ``loginctl`` or ``file:PATH``."""
    if value == "loginctl":
        return LoginctlSession()
    if value.startswith("file:") and len(value) > 5:
        return FileSession(Path(value[5:]))
    raise InvalidInput("schema", f"QM_DESKTOP_SESSION must be loginctl or file:PATH, not {value!r}")


# --- OS login -> agent ------------------------------------------------------------------------------
class DynamoLoginDirectory:
    """The users table's ``os_login-index`` (keys only: login and username, nothing else).

    A login mapped to two users (a race between two administrators) maps to nobody: the
    desktop never guesses whose queue to serve."""

    def __init__(self, ddb: DynamoDBClient, table: str) -> None:
        self._ddb = ddb
        self._table = table

    def agent_for(self, os_login: str) -> str | None:
        login = normalise_os_login(os_login)
        if login is None:
            return None
        found = users_with_os_login(self._ddb, self._table, login)
        if len(found) != 1:
            return None
        return found[0]


class FixedLogins:
    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = {normalise_os_login(k): v for k, v in mapping.items()}

    def agent_for(self, os_login: str) -> str | None:
        return self.mapping.get(normalise_os_login(os_login))
