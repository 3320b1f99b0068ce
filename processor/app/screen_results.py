"""The results queue: what desktops report, recorded on the QM contacts.

``screen_uploaded`` / ``screen_unavailable`` / ``screen_failed`` become the contact's
``screen_recording_status`` (with location and coverage) through the join's versioned
write, so the change is emitted once like any other; the command's record notes the
result (a repeated result changes nothing). ``sync_request`` republishes the agent's
extractions since the given time that have no result yet. Every message (heartbeats
included) updates the desktop's last contact for the console's Users page.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from processor.adapters.dynamodb.quarantine import Quarantine
from processor.adapters.sqs.commands import CommandRecord
from processor.adapters.sqs.consumer import ConsumerStats, SqsConsumer
from processor.app.joiner import Joiner
from processor.app.ports import CommandLog
from processor.app.screen_control import ScreenControl
from processor.core.desktop_protocol import RESULT_SCHEMA, CommandType, ResultType, parse_instant
from processor.core.schemas import SchemaViolation, validate
from processor.platform.exceptions import InvalidInput
from processor.platform.logs import get_logger

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from processor.adapters.dynamodb.users_table import DynamoUserAdmin

log = get_logger("processor.screen.results")

STATUS = {
    ResultType.SCREEN_UPLOADED: "uploaded",
    ResultType.SCREEN_UNAVAILABLE: "unavailable",
    ResultType.SCREEN_FAILED: "failed",
}


def parse_result(body: str | bytes) -> dict[str, Any]:
    raw = body.encode() if isinstance(body, str) else body
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput("bad_json", "desktop result is not JSON", payload=raw) from None
    try:
        validate(RESULT_SCHEMA, doc)
    except SchemaViolation as exc:
        raise InvalidInput("schema", str(exc), payload=raw) from None
    return doc  # type: ignore[no-any-return]


@dataclass
class ScreenResultConsumer(SqsConsumer[dict[str, Any]]):
    sqs: SQSClient
    queue_url: str
    queue_name: str
    joiner: Joiner
    control: ScreenControl
    commands: CommandLog
    users: DynamoUserAdmin
    quarantine: Quarantine
    wait_seconds: int = 5
    dlq_url: str | None = None  # set aside into the quarantine only
    handled: dict[str, int] = field(default_factory=dict)
    stats: ConsumerStats = field(default_factory=ConsumerStats)
    label: ClassVar[str] = "results"
    noun: ClassVar[str] = "desktop result"

    def clock(self) -> datetime:
        return self.joiner.clock()

    def parse(self, body: str) -> dict[str, Any]:
        return parse_result(body)

    def apply(self, parsed: dict[str, Any], message: dict[str, Any]) -> None:
        self._apply(parsed)

    def _check_answers_a_command(self, doc: dict[str, Any], agent: str) -> None:
        command_id = doc.get("command_id")
        command = self.commands.get(command_id) if isinstance(command_id, str) and command_id else None
        check_result_against_command(doc, agent, command)

    def _apply(self, doc: dict[str, Any]) -> None:
        kind = ResultType(doc["type"])
        self.handled[kind.value] = self.handled.get(kind.value, 0) + 1
        agent = doc["agent"]
        self.users.record_desktop_contact(
            agent,
            seen_at=doc["sent_at"],
            desktop_id=doc.get("desktop_id"),
            queue_depth=doc.get("queue_depth"),
        )
        if kind is ResultType.SYNC_REQUEST:
            count = self.control.resync(agent, parse_instant(doc["since"]))
            log.info("desktop asked to resync; extractions republished", agent=agent, republished=count)
            return
        if kind not in STATUS:
            return  # heartbeat
        status = STATUS[kind]
        self._check_answers_a_command(doc, agent)
        location = doc.get("location")
        where = f"{location['bucket']}/{location['key']}" if location else None
        outcome = self.joiner.record_screen(
            doc["contact_id"], status=status, location=where, coverage=doc.get("coverage")
        )
        if doc.get("command_id"):
            self.commands.mark_result(doc["command_id"], kind.value, parse_instant(doc["sent_at"]))
        log.info(
            "screen recording result",
            agent=agent,
            contact_id=doc["contact_id"],
            status=status,
            outcome=outcome.value,
            reason=doc.get("reason"),
        )


def untrusted(doc: dict[str, Any], why: str) -> InvalidInput:
    raw = orjson.dumps(doc)
    return InvalidInput("untrusted_result", why, payload=raw)


def check_result_against_command(doc: dict[str, Any], agent: str, command: CommandRecord | None) -> None:
    """A result is applied only if it answers an ``extract_screen`` that was sent, from the
    agent it was sent to, for that command's contact, and (uploaded) at the upload target the
    command named. Anything else is someone else's message: quarantined, never applied."""
    if command is None or command.type != CommandType.EXTRACT_SCREEN.value:
        raise untrusted(doc, "the result answers no extraction command that was sent")
    if command.agent != agent:
        raise untrusted(doc, "the result comes from another agent than the command was sent to")
    if command.contact_id != doc.get("contact_id"):
        raise untrusted(doc, "the result is for another contact than its command")
    location = doc.get("location")
    if location is not None:
        target = command.body.get("upload") or {}
        if (location.get("bucket"), location.get("key")) != (target.get("bucket"), target.get("key")):
            raise untrusted(doc, "the uploaded location is not the command's upload target")


def run_releaser(
    control: ScreenControl,
    *,
    consumed_until: Any,
    agents: Any,
    window: Any,
    slack: Any,
    interval: float,
    stop: threading.Event,
) -> None:
    """Every ``interval``: publish each configured agent's advanced release watermark."""
    while not stop.wait(interval):
        try:
            until: datetime | None = consumed_until()
            if until is None:
                continue
            for agent in agents():
                control.release(agent, until, window(), slack)
        except Exception as exc:
            log.warning("segment release round failed", error=type(exc).__name__)
