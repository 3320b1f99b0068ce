"""One recorder per PC: the desktop follows whoever holds the PC's console session.

Each round the PC recorder asks the OS who is logged on at the PC (``SessionUser``), maps
that login to an agent (``LoginDirectory``: the users table's keys-only OS-login index),
and serves that agent's queue only, with a :class:`DesktopAgent` on her own folder
(journal, desktop key, segments): one agent's segments are never in another's folder, and
an extraction command for agent A is carried out from A's journal alone.

When the session user changes (or the login stops mapping to her), the current agent is
let go before anyone else is served: her recording stops (the time is ``logged_out`` in
her journal), her folder is closed and her "recording wanted" flag is cleared, so that
coming back to this PC does not record her before her next ``start_recording``. Commands
sent to her queue in the meantime wait there for the PC she is at next.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from processor.desktop.agent import DesktopAgent
from processor.desktop.clock import Clock
from processor.desktop.session import LoginDirectory, SessionUser
from processor.platform.logs import get_logger

log = get_logger("processor.desktop.pc")

#: A login keeps its agent this long before the mapping is read again (an administrator's
#: change on the Users page reaches a PC within it).
RESOLVE_EVERY = timedelta(seconds=60)
#: How long after a failed start an agent's desktop is tried again.
RETRY_AFTER = timedelta(seconds=30)


def login_ref(login: str) -> str:
    """What the logs say of an OS login: a short digest, never the account name."""
    return hashlib.sha256(login.encode()).hexdigest()[:12]


@dataclass
class _Resolved:
    login: str | None
    agent: str | None
    at: datetime


class PcDesktop:
    def __init__(
        self,
        *,
        session: SessionUser,
        logins: LoginDirectory,
        build: Callable[[str], DesktopAgent],
        clock: Clock,
        poll_seconds: int = 5,
    ) -> None:
        self.session = session
        self.logins = logins
        self.build = build
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.current: DesktopAgent | None = None
        self._resolved: _Resolved | None = None
        self._lookup_failing = False
        self._failed: tuple[str, datetime] | None = None

    @property
    def agent(self) -> str | None:
        return self.current.config.agent if self.current is not None else None

    def who_is_here(self) -> str | None:
        """The agent at the PC now (None: nobody, an unmapped login, or unknown)."""
        try:
            login = self.session.current_login()
        except Exception as exc:
            if not self._lookup_failing:
                log.error("session user unknown: no agent is served", error=str(exc))
            self._lookup_failing = True
            self._resolved = None
            return None
        if self._lookup_failing:
            log.info("session user known again")
        self._lookup_failing = False
        now = self.clock.now()
        cached = self._resolved
        if cached is not None and cached.login == login and now - cached.at < RESOLVE_EVERY:
            return cached.agent
        agent: str | None = None
        if login is not None:
            try:
                agent = self.logins.agent_for(login)
            except Exception as exc:
                # Unknown is nobody: a desktop never serves a queue it cannot tie to the user
                # at the PC. The next round asks again.
                log.warning(
                    "OS login could not be mapped; asking again", login_ref=login_ref(login), error=str(exc)
                )
                return None
            if agent is None and (cached is None or cached.login != login):
                log.warning(
                    "the OS login at this PC maps to no agent (Users page: OS login)",
                    login_ref=login_ref(login),
                )
        self._resolved = _Resolved(login, agent, now)
        return agent

    def check(self) -> None:
        """Serve the agent at the PC now; let the previous one go first."""
        agent = self.who_is_here()
        if agent == self.agent:
            return
        self.leave()
        if agent is None:
            return
        now = self.clock.now()
        failed = self._failed
        if failed is not None and failed[0] == agent and now < failed[1]:
            return
        desktop: DesktopAgent | None = None
        try:
            desktop = self.build(agent)
            log.info("agent at this PC", agent=agent)
            desktop.start()
        except Exception as exc:
            # Her folder or queue cannot be served now: nobody is, and it is tried again later
            # (the recorder keeps following the session meanwhile).
            log.error(
                "cannot serve the agent at this PC; trying again later",
                agent=agent,
                error=str(exc),
                error_type=type(exc).__name__,
            )
            self._failed = (agent, now + RETRY_AFTER)
            if desktop is not None:
                try:
                    desktop.shutdown()
                except Exception as close_exc:
                    log.warning("desktop not closed cleanly", error=str(close_exc))
            return
        self._failed = None
        self.current = desktop

    def leave(self) -> None:
        if self.current is None:
            return
        desktop, self.current = self.current, None
        log.info("agent left this PC", agent=desktop.config.agent)
        desktop.leave()

    def round(self, stop: threading.Event | None = None) -> None:
        self.check()
        if self.current is not None:
            self.current.poll(self.poll_seconds)
        else:
            self.clock.sleep(max(1, self.poll_seconds), stop)

    def run(self, stop: threading.Event) -> None:
        log.info("PC recorder started: following the console session")
        try:
            while not stop.is_set():
                self.round(stop)
        finally:
            if self.current is not None:
                self.current.shutdown()  # the PC shuts down: she may still be logged on
                self.current = None
            log.info("PC recorder stopped")
