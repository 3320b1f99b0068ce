"""Who is at the PC: loginctl's answers parsed, scripted sessions, and the PC recorder's
hand-over from one agent to the next (with stand-in desktops)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from processor.core.user_directory import normalise_os_login, parse_users
from processor.desktop.agent import DesktopAgent
from processor.desktop.clock import SimulatedClock
from processor.desktop.pc import PcDesktop, login_ref
from processor.desktop.session import (
    FileSession,
    FixedLogins,
    FixedSession,
    LoginctlSession,
    console_login,
    parse_properties,
    session_from_setting,
)
from processor.platform.exceptions import InvalidInput, SessionLookupError

# `loginctl show-seat seat0 --property=ActiveSession` (systemd 252, a GNOME desktop)
SEAT_WITH_SESSION = "ActiveSession=3\n"
# Nobody logged on: GDM's greeter is gone, or the seat has no session at all.
SEAT_EMPTY = "ActiveSession=\n"
# `loginctl show-session 3 --property=Name --property=Active ...` (systemd 252): the order is
# logind's, not the order asked for.
SESSION_ALICE_X11 = """Type=x11
Class=user
Active=yes
State=active
Remote=no
Seat=seat0
Name=alice
"""
SESSION_GREETER = """Type=wayland
Class=greeter
Active=yes
State=active
Remote=no
Seat=seat0
Name=gdm
"""
SESSION_SSH = """Type=tty
Class=user
Active=no
State=online
Remote=yes
Seat=
Name=bob
"""
SESSION_SWITCHED_AWAY = """Type=wayland
Class=user
Active=no
State=online
Remote=no
Seat=seat0
Name=carol
"""
# The whole `loginctl show-session` of a session, values holding `=` and spaces included.
SESSION_FULL = """Id=3
User=1000
Name=alice
Timestamp=Sun 2026-12-06 08:59:12 UTC
TimestampMonotonic=36126372
VTNr=2
Seat=seat0
TTY=tty2
Remote=no
Service=gdm-password
Scope=session-3.scope
Leader=1618
Audit=3
Type=wayland
Class=user
Active=yes
State=active
IdleHint=no
IdleSinceHint=0
IdleSinceHintMonotonic=0
LockedHint=no
Desktop=GNOME
Display=
RemoteHost=
RemoteUser=
"""


class Script:
    """loginctl's answers, by sub-command; records what was asked."""

    def __init__(self, seat: str, sessions: dict[str, str]) -> None:
        self.seat, self.sessions, self.calls = seat, sessions, []  # type: list[list[str]]

    def __call__(self, argv: Sequence[str]) -> str:
        self.calls.append(list(argv))
        if argv[1] == "show-seat":
            return self.seat
        return self.sessions[argv[2]]


def test_properties_are_parsed_whatever_their_order_and_content() -> None:
    props = parse_properties(SESSION_FULL)
    assert props["Name"] == "alice" and props["Timestamp"] == "Sun 2026-12-06 08:59:12 UTC"
    assert props["Display"] == "" and props["Active"] == "yes"
    assert parse_properties("Weird=a=b\n\nnot a property\n") == {"Weird": "a=b"}
    assert console_login(props) == "alice"


@pytest.mark.parametrize(
    ("session", "who"),
    [
        (SESSION_ALICE_X11, "alice"),
        (SESSION_FULL, "alice"),
        (SESSION_GREETER, None),  # the login screen is nobody
        (SESSION_SSH, None),  # a remote login never holds the PC's screen
        (SESSION_SWITCHED_AWAY, None),  # fast user switching: not the active one
    ],
)
def test_the_console_user_is_the_active_local_user_session_of_seat0(session: str, who: str | None) -> None:
    script = Script(SEAT_WITH_SESSION, {"3": session})
    assert LoginctlSession(script, loginctl="loginctl").current_login() == who
    assert script.calls[0] == ["loginctl", "show-seat", "seat0", "--property=ActiveSession"]
    assert script.calls[1][:3] == ["loginctl", "show-session", "3"]


def test_an_empty_seat_is_nobody_and_a_failing_loginctl_is_an_error() -> None:
    script = Script(SEAT_EMPTY, {})
    assert LoginctlSession(script).current_login() is None
    assert len(script.calls) == 1

    def broken(argv: Sequence[str]) -> str:
        raise SessionLookupError("loginctl show-seat failed (1): Failed to connect to bus")

    with pytest.raises(SessionLookupError):
        LoginctlSession(broken).current_login()


def test_file_and_fixed_sessions(tmp_path: Path) -> None:
    path = tmp_path / "session"
    session = FileSession(path)
    assert session.current_login() is None
    path.write_text("alice\n")
    assert session.current_login() == "alice"
    path.write_text("")
    assert session.current_login() is None
    assert FixedSession("bob").current_login() == "bob"
    assert isinstance(session_from_setting(f"file:{path}"), FileSession)
    assert isinstance(session_from_setting("loginctl"), LoginctlSession)
    with pytest.raises(InvalidInput):
        session_from_setting("who")


def test_os_logins_are_normalised_and_unique_in_an_import() -> None:
    assert normalise_os_login("  CORP\\Alice ") == "corp\\alice"
    assert normalise_os_login("  ") is None
    with pytest.raises(InvalidInput):
        normalise_os_login("two words")
    users = parse_users(
        b"username,first_name,last_name,screen_recording,os_login\nana,Ana,S,yes,CORP\\Ana\nben,,,no,\n"
    )
    assert [u.os_login for u in users] == ["corp\\ana", None]
    with pytest.raises(InvalidInput, match="another user"):
        parse_users(b'[{"username": "a", "os_login": "x"}, {"username": "b", "os_login": "X"}]')
    assert FixedLogins({"CORP\\Ana": "ana"}).agent_for("corp\\ANA") == "ana"


class StandIn:
    """What the PC recorder needs of a DesktopAgent: the events it receives."""

    def __init__(self, agent: str, events: list[tuple[str, str]]) -> None:
        self.config = type("Config", (), {"agent": agent})()
        self.events = events

    def start(self) -> None:
        self.events.append(("start", self.config.agent))

    def poll(self, _wait: int) -> int:
        self.events.append(("poll", self.config.agent))
        return 0

    def leave(self) -> None:
        self.events.append(("leave", self.config.agent))

    def shutdown(self) -> None:
        self.events.append(("shutdown", self.config.agent))


def _pc(session: Any, logins: Any) -> tuple[PcDesktop, list[tuple[str, str]]]:
    events: list[tuple[str, str]] = []
    pc = PcDesktop(
        session=session,
        logins=logins,
        build=lambda agent: cast(DesktopAgent, StandIn(agent, events)),
        clock=SimulatedClock(datetime(2026, 12, 6, 9, tzinfo=UTC)),
        poll_seconds=0,
    )
    return pc, events


def test_the_old_agent_is_let_go_before_the_new_one_is_served() -> None:
    session = FixedSession("ana.os")
    pc, events = _pc(session, FixedLogins({"ana.os": "ana", "ben.os": "ben"}))
    pc.round()
    pc.round()
    assert events == [("start", "ana"), ("poll", "ana"), ("poll", "ana")]
    session.login = "ben.os"
    pc.round()
    assert events[3:] == [("leave", "ana"), ("start", "ben"), ("poll", "ben")]
    session.login = None  # ben logs off: nobody's queue is served
    pc.round()
    assert events[6:] == [("leave", "ben")] and pc.agent is None
    session.login = "stranger"  # a login that maps to no agent: nobody either
    pc.round()
    assert pc.agent is None and len(events) == 7


def test_an_unknown_session_user_is_nobody() -> None:
    class Failing:
        fail = False

        def current_login(self) -> str | None:
            if self.fail:
                raise SessionLookupError("logind is not answering")
            return "ana.os"

    session = Failing()
    pc, events = _pc(session, FixedLogins({"ana.os": "ana"}))
    pc.round()
    session.fail = True
    pc.round()
    assert events == [("start", "ana"), ("poll", "ana"), ("leave", "ana")]
    session.fail = False
    pc.round()
    assert events[3:] == [("start", "ana"), ("poll", "ana")]


def test_logs_name_a_login_only_by_its_digest() -> None:
    assert login_ref("CORP\\ana") != "CORP\\ana" and len(login_ref("CORP\\ana")) == 12


def test_an_agent_whose_desktop_cannot_start_is_tried_again_later() -> None:
    from processor.platform.exceptions import ConfigurationError

    events: list[tuple[str, str]] = []
    attempts: list[str] = []

    def build(agent: str) -> DesktopAgent:
        attempts.append(agent)
        if len(attempts) == 1:
            raise ConfigurationError("the desktop folder holds another agent's recordings")
        return cast(DesktopAgent, StandIn(agent, events))

    clock = SimulatedClock(datetime(2026, 12, 6, 9, tzinfo=UTC))
    pc = PcDesktop(
        session=FixedSession("ana.os"),
        logins=FixedLogins({"ana.os": "ana"}),
        build=build,
        clock=clock,
        poll_seconds=0,
    )
    pc.round()
    pc.round()
    assert attempts == ["ana"] and pc.agent is None and events == []
    clock.advance(31)
    pc.round()
    assert attempts == ["ana", "ana"] and pc.agent == "ana" and events[0] == ("start", "ana")
