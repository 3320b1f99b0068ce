"""Screen-recording control, server side (the seed's "Capturing Screen Recordings").

* Agent events -> ``start_recording`` / ``stop_recording`` on the agent's own queue, for
  users configured for screen recording, while "RTE messaging for screen recording" is on.
* A contact of such an agent, once imported -> ``extract_screen`` (the contact's interval,
  where to upload, the server's key).
* Results from desktops -> the QM contact (status, location, coverage), versioned and
  emitted like every other change; ``sync_request`` -> republish what has no result yet.
* Segment release: ``release_segments_before`` once nothing can still need a segment
  (see :func:`processor.core.agent_events.release_before` and the timeline in
  docs/screen-recording.md).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from processor.adapters.dynamodb.quarantine import Quarantine
from processor.adapters.dynamodb.runtime_config import RuntimeConfigReader
from processor.app.intake import Intake, each
from processor.app.ports import AgentStateStore, CommandLog, CommandSender
from processor.core.agent_events import AgentEvent, Intent, apply, parse_agent_event, release_before
from processor.core.batch import BatchResult, StreamRecord
from processor.core.ctr import AcceptedInstances, format_instant
from processor.core.desktop_protocol import CommandType, build_command, extract_command_id
from processor.core.mapping import QmContact
from processor.core.user_directory import QmUser
from processor.platform.exceptions import InvalidInput
from processor.platform.logs import get_logger
from processor.platform.retry import retry_transient

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = get_logger("processor.screen")

Clock = Callable[[], datetime]


class UserLookup(Protocol):
    def get_many(self, usernames: Sequence[str], *, fresh: bool = False) -> dict[str, QmUser]: ...

    def by_agent_arn(self, agent_arn: str) -> QmUser | None: ...


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass
class ScreenControl:
    users: UserLookup
    config: RuntimeConfigReader
    publisher: CommandSender
    commands: CommandLog
    states: AgentStateStore
    s3: S3Client
    bucket: str
    server_key: Callable[[], tuple[str, str] | None]
    clock: Clock
    url_days: int = 7
    #: The tenant check (None: every instance, for tests that build a control by hand).
    instances: Callable[[], AcceptedInstances] | None = None
    ignored: dict[str, int] = field(default_factory=dict)
    published: dict[str, int] = field(default_factory=dict)

    # --- agent events ------------------------------------------------------------------------
    def _user_of(self, event: AgentEvent) -> QmUser | None:
        if event.username:
            return retry_transient(lambda: self.users.get_many([event.username or ""]), "users.get_many").get(
                event.username
            )
        return retry_transient(lambda: self.users.by_agent_arn(event.agent_arn), "users.by_agent_arn")

    def _ignore(self, reason: str) -> str:
        self.ignored[reason] = self.ignored.get(reason, 0) + 1
        return f"ignored:{reason}"

    def on_agent_event(self, event: AgentEvent) -> str:
        """Apply one agent event; returns the command sent or why nothing was sent.

        Starting needs RTE messaging on and a QM user configured for screen recording;
        stopping never does: an agent who is recording is stopped by her logout (or
        ``Offline``) whatever the settings say now, so switching a setting off never leaves
        a desktop recording until the PC is switched off.
        """
        rte_enabled = self.config.get().rte_enabled
        user = self._user_of(event)
        agent = user.username if user is not None else event.username
        if not agent:
            return self._ignore("unknown_user")
        if not rte_enabled:
            held_back = "rte_disabled"
        elif user is None:
            held_back = "unknown_user"
        elif not user.screen_recording:
            held_back = "not_configured"
        else:
            held_back = ""
        for _ in range(10):
            state, stored_last, _released = retry_transient(lambda: self.states.load(agent), "agents.load")
            if held_back and stored_last is None:
                return self._ignore(held_back)  # never recorded: nothing to stop, nothing to keep
            new, intent = apply(state, event, may_start=not held_back)
            if new == state:
                return self._ignore("already_applied")
            if intent is not Intent.NONE:
                command_type = (
                    CommandType.START_RECORDING if intent is Intent.START else CommandType.STOP_RECORDING
                )
                body = build_command(
                    command_type,
                    agent=agent,
                    command_id=_command_id(f"{intent.value}:{agent}:{event.dedup_key}"),
                    issued_at=self.clock(),
                    event_at=event.at,
                )
                self._publish(body)
            # Publish, then save: a crash in between replays the event, and its command id
            # (deterministic per event) makes the second publish a no-op.
            saved = retry_transient(
                lambda n=new, last=stored_last: self.states.save(agent, n, last),  # type: ignore[misc]
                "agents.save",
            )
            if saved:
                if intent is not Intent.NONE:
                    return intent.value
                return self._ignore(held_back or "no_change")
        raise RuntimeError(f"agent {agent}: too many concurrent updates")

    def may_record(self, usernames: Sequence[str]) -> set[str]:
        """Which of these agents the settings let record now."""
        if not self.config.get().rte_enabled or not usernames:
            return set()
        users = retry_transient(lambda: self.users.get_many(list(usernames), fresh=True), "users.get_many")
        return {name for name, user in users.items() if user.screen_recording}

    def stop_switched_off(self) -> int:
        """Send ``stop_recording`` to every recording agent whom the settings no longer let record.

        Switching RTE messaging off, or a user's screen recording (or deleting the user),
        must stop what records at that moment, through whichever path the switch was made
        (console, CLI, a sync): the service runs this every few seconds.
        """
        recording = self.states.recording_agents()
        allowed = self.may_record(recording)
        stopped = 0
        for agent in recording:
            if agent in allowed:
                continue
            for _ in range(10):
                state, last, _released = self.states.load(agent)
                if not state.recording:
                    break
                body = build_command(
                    CommandType.STOP_RECORDING,
                    agent=agent,
                    command_id=_command_id(f"stop_recording:{agent}:switched_off:{last}"),
                    issued_at=self.clock(),
                    event_at=state.last_event_at,
                )
                self._publish(body)
                if self.states.save(agent, replace(state, recording=False), last):
                    stopped += 1
                    log.info("recording stopped: the settings no longer let this agent record", agent=agent)
                    break
        return stopped

    # --- extractions ----------------------------------------------------------------------------
    def expects_extraction(self, contact: QmContact, user: QmUser | None) -> bool:
        if not (
            user is not None
            and user.screen_recording
            and contact.connected_at
            and self.config.get().rte_enabled
        ):
            return False
        if self.server_key() is None:
            self._ignore("no_server_key")
            if self.ignored["no_server_key"] == 1:
                log.error(
                    "no screen-recording server key: extractions are not published (qm-ingest keys generate)"
                )
            return False
        return True

    def extraction(self, contact: QmContact) -> dict[str, Any] | None:
        """The ``extract_screen`` command of a contact (None without an agent connection)."""
        start = _instant(contact.connected_at)
        if start is None or not contact.acd_id:
            return None
        include_acw = self.config.get().include_acw
        end = (
            _instant(contact.acw_end_at)
            if include_acw and contact.acw_end_at
            else _instant(contact.disconnect_at)
        )
        if end is None or end < start:
            end = start
        server_key = self.server_key()
        if server_key is None:
            return None
        key_id, public_pem = server_key
        key = f"screen/{start:%Y/%m/%d}/{contact.contact_id}.qmrec"
        # The desktop gets exactly one right: PUT this one object, for a few days.
        url = self.s3.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.url_days * 24 * 3600
        )
        return build_command(
            CommandType.EXTRACT_SCREEN,
            agent=contact.acd_id,
            command_id=extract_command_id(contact.contact_id),
            issued_at=self.clock(),
            contact_id=contact.contact_id,
            start=start,
            end=end,
            upload={"bucket": self.bucket, "key": key, "url": url},
            server_key_id=key_id,
            server_public_key_pem=public_pem,
        )

    def ensure_extraction(self, contact: QmContact, user: QmUser | None) -> bool:
        """Publish the contact's extraction unless done already; True when sent now."""
        if not self.expects_extraction(contact, user):
            return False
        existing = retry_transient(
            lambda: self.commands.get(extract_command_id(contact.contact_id)), "commands.get"
        )
        if existing is not None and existing.state == "sent":
            return False
        body = self.extraction(contact)
        if body is None:
            return False
        return self._publish(body)

    def _publish(self, body: dict[str, Any], *, resend: bool = False, tag: str | None = None) -> bool:
        sent = retry_transient(
            lambda: self.publisher.publish(body, resend=resend, resend_tag=tag), "commands.publish"
        )
        if sent:
            self.published[body["type"]] = self.published.get(body["type"], 0) + 1
            try:
                from processor.platform import metrics

                metrics.commands_published.labels(type=body["type"]).inc()
            except Exception:  # noqa: S110 - metrics never stop a command
                pass
            log.info(
                "command published", agent=body["agent"], type=body["type"], command_id=body["command_id"]
            )
        return sent

    # --- recovery and release -------------------------------------------------------------------
    def resync(self, agent: str, since: datetime) -> int:
        """Republish the agent's extractions since ``since`` that have no result yet."""
        count = 0
        tag = format_instant(self.clock())
        for record in self.commands.of_agent(agent, since, CommandType.EXTRACT_SCREEN.value):
            if record.result is None:
                count += self._publish(record.body, resend=True, tag=tag)
        return count

    def release(
        self, agent: str, consumed_until: datetime | None, window: timedelta, slack: timedelta
    ) -> bool:
        state, _, released = self.states.load(agent)
        before = release_before(
            consumed_until=consumed_until, window=window, slack=slack, contacts=state.recent_contacts
        )
        if before is None:
            return False
        previous = _instant(released)
        if previous is not None and before <= previous + timedelta(minutes=1):
            return False
        body = build_command(
            CommandType.RELEASE_SEGMENTS_BEFORE,
            agent=agent,
            command_id=_command_id(f"release:{agent}:{format_instant(before)}"),
            issued_at=self.clock(),
            before=before,
        )
        self._publish(body)
        self.states.set_released(agent, before)
        return True


def run_recording_guard(control: ScreenControl, *, interval: float, stop: threading.Event) -> None:
    """Every ``interval``: stop the recordings the settings no longer allow."""
    while not stop.wait(interval):
        try:
            control.stop_switched_off()
        except Exception as exc:
            log.warning("recording guard round failed", error=type(exc).__name__)


def _command_id(text: str) -> str:
    """Deterministic, schema-safe command ids ([A-Za-z0-9_.:-], <= 128)."""
    safe = "".join(c if c.isalnum() or c in "_.:-" else "_" for c in text)
    if len(safe) <= 100 and safe == text:
        return safe
    return f"{text.split(':', 1)[0]}:{hashlib.sha256(text.encode()).hexdigest()[:40]}"


@dataclass
class AgentEventIngest:
    """The agent-event stream's batch handler (one per shard, driven by the KCL)."""

    control: ScreenControl
    quarantine: Quarantine
    clock: Clock

    def process(self, records: Sequence[StreamRecord]) -> BatchResult:
        result = BatchResult(read=len(records))
        accepted = self.control.instances() if self.control.instances is not None else None

        def parse(record: StreamRecord) -> AgentEvent:
            event = parse_agent_event(record.data)
            if accepted is not None and not accepted.accepts(event.instance_arn):
                raise InvalidInput("foreign_instance", f"agent event of instance {event.instance_arn}")
            return event

        intake = Intake(self.quarantine, self.clock, noun="agent event")
        events = intake.parse_all(records, parse, result)
        for _event, outcome in intake.settle(events, each(self.control.on_agent_event, events), result):
            if outcome.startswith("ignored"):
                result.unchanged += 1
            else:
                result.created += 1
        return result

    def close(self) -> None:
        return None
