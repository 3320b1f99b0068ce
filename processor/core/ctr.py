"""Contact Trace Records: from untrusted bytes to a typed :class:`ContactRecord`.

Pure: no I/O, no clock. Every rejection is an :class:`InvalidInput` with a stable reason:

``bad_json``          not JSON, or not valid UTF-8
``not_an_object``     JSON, but not an object
``schema``            a field we read is missing or has the wrong type or shape
``bad_timestamp``     a timestamp that is not a real instant
``absurd_timestamp``  an instant outside 2017 (Connect's launch) .. 2100
``oversized``         larger than the configured maximum record size
``foreign_instance``  another Connect instance than the configured one
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from processor.core.frozen import builder
from processor.core.schemas import SchemaViolation, fast_check, validate
from processor.platform.exceptions import InvalidInput

EARLIEST = datetime(2017, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

# Real CTRs carry InstanceARNs whose "/" became a backslash ("instance\\2fee1c1f-..." in
# the smg-agenttrack sample: the UUID is 2fee1c1f-...) or is URL-encoded ("%2F"):
# normalise before comparing instances.
_ENCODED_SLASH = re.compile(r"(\\|%2f)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str | None
    type: str | None


@dataclass(frozen=True, slots=True)
class RecordingRef:
    """One entry of ``Recordings[]`` (or the legacy ``Recording`` object)."""

    location: str | None
    storage_type: str | None  # S3, KINESIS_VIDEO_STREAM, ...
    media_stream_type: str | None  # AUDIO, VIDEO, ...
    participant_type: str | None
    status: str | None
    deletion_reason: str | None
    start: datetime | None
    stop: datetime | None


@dataclass(frozen=True, slots=True)
class AgentInfo:
    arn: str | None
    username: str | None
    connected_at: datetime | None
    acw_end_at: datetime | None
    interaction_seconds: int | None
    customer_hold_seconds: int | None


@dataclass(frozen=True, slots=True)
class ContactRecord:
    """The fields of a CTR that qm-ingest uses, typed and checked, plus the raw CTR."""

    contact_id: str
    instance_arn: str
    last_update: datetime
    initiation_method: str
    channel: str | None
    initiation_at: datetime | None
    disconnect_at: datetime | None
    agent: AgentInfo | None
    system_endpoint: Endpoint | None
    customer_endpoint: Endpoint | None
    queue_name: str | None
    recordings: tuple[RecordingRef, ...]
    raw: dict[str, Any]

    @property
    def version(self) -> str:
        """The contact's version: its LastUpdateTimestamp as a sortable UTC string."""
        return format_instant(self.last_update)


_build_endpoint = builder(Endpoint)
_build_recording = builder(RecordingRef)
_build_agent = builder(AgentInfo)
_build_record = builder(ContactRecord)

#: "00".."99" and "000".."999": the fields of a formatted instant.
_TWO = tuple(f"{n:02d}" for n in range(100))
_THREE = tuple(f"{n:03d}" for n in range(1000))


def format_instant(value: datetime) -> str:
    """UTC ISO 8601 with millisecond precision, so that string order is time order."""
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    year, micro = utc.year, utc.microsecond
    if year >= 1000 and micro == value.microsecond:  # "%Y" writes 4 digits from year 1000
        return (
            f"{year}-{_TWO[utc.month]}-{_TWO[utc.day]}T{_TWO[utc.hour]}:{_TWO[utc.minute]}:"
            f"{_TWO[utc.second]}.{_THREE[micro // 1000]}Z"
        )
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def normalise_instance_arn(arn: str) -> str:
    if "\\" not in arn and "%" not in arn:  # nothing for the pattern to replace
        return arn.strip()
    return _ENCODED_SLASH.sub("/", arn.strip())


def parse_instant(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    text = value
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Python accepts at most 6 fractional digits; Connect sends 0 to 3, others up to 9.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput("bad_timestamp", f"{field} is not a valid timestamp") from None
    if instant.tzinfo is None:
        raise InvalidInput("bad_timestamp", f"{field} has no time zone")
    instant = instant.astimezone(UTC)
    if not EARLIEST <= instant < LATEST:
        raise InvalidInput("absurd_timestamp", f"{field} is outside {EARLIEST.year}..{LATEST.year}")
    return instant


def _checked_instant(value: str | None, field: str) -> datetime | None:
    """:func:`parse_instant` of a value that matched the schema's timestamp pattern.

    Connect's own spelling, ``2026-01-01T10:00:00.123Z`` (``Z``, at most 6 fractional
    digits), is what ``datetime.fromisoformat`` reads as it is, in UTC, and the pattern
    leaves no other text in it: read it directly. Any other spelling takes parse_instant.
    """
    if value is None or value[-1:] != "Z" or len(value) > _LONGEST_DIRECT:
        return parse_instant(value, field)
    try:
        instant = _fromisoformat(value)
    except ValueError:
        raise InvalidInput("bad_timestamp", f"{field} is not a valid timestamp") from None
    if not EARLIEST <= instant < LATEST:
        raise InvalidInput("absurd_timestamp", f"{field} is outside {EARLIEST.year}..{LATEST.year}")
    return instant


#: "YYYY-MM-DDTHH:MM:SS" (19) + "." and 6 digits + "Z".
_LONGEST_DIRECT = 27
_fromisoformat = datetime.fromisoformat


def decode_json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("bad_json", f"not valid JSON ({_short(str(exc))})", payload=payload) from None


def parse_ctr(payload: bytes, *, max_bytes: int | None = None) -> ContactRecord:
    """Parse and check one CTR. Raises :class:`InvalidInput` (with the payload) on bad input."""
    if max_bytes is not None and len(payload) > max_bytes:
        raise InvalidInput("oversized", f"{len(payload)} bytes > limit {max_bytes}", payload=payload)
    try:
        return ctr_from_object(decode_json(payload))
    except InvalidInput as exc:
        raise InvalidInput(exc.reason, exc.detail, payload=payload) from None


_UNSET: Any = object()
_fast_check: Any = _UNSET


def ctr_from_object(obj: Any) -> ContactRecord:
    if not isinstance(obj, dict):
        raise InvalidInput("not_an_object", f"a CTR must be a JSON object, got {type(obj).__name__}")
    # The specialised check answers yes for (almost) every record; the reference validator
    # decides the others and names the offending field.
    global _fast_check  # noqa: PLW0603 - looked up once, not on every record
    if _fast_check is _UNSET:
        _fast_check = fast_check("ctr")
    if _fast_check is None or not _fast_check(obj):
        try:
            validate("ctr", obj)
        except SchemaViolation as exc:
            raise InvalidInput("schema", str(exc)) from None

    agent_obj = obj.get("Agent")
    agent = None
    if agent_obj is not None:
        agent = _build_agent(  # the fields in order; the timestamps checked in this order
            agent_obj.get("ARN"),
            _clean(agent_obj.get("Username")),
            _checked_instant(agent_obj.get("ConnectedToAgentTimestamp"), "Agent.ConnectedToAgentTimestamp"),
            _checked_instant(
                agent_obj.get("AfterContactWorkEndTimestamp"), "Agent.AfterContactWorkEndTimestamp"
            ),
            agent_obj.get("AgentInteractionDuration"),
            agent_obj.get("CustomerHoldDuration"),
        )
    last_update = _checked_instant(obj["LastUpdateTimestamp"], "LastUpdateTimestamp")
    assert last_update is not None
    queue = obj.get("Queue")
    return _build_record(  # the fields in order (contact_id, instance_arn, last_update, ...)
        obj["ContactId"],
        normalise_instance_arn(obj["InstanceARN"]),
        last_update,
        obj["InitiationMethod"],
        obj.get("Channel"),
        _checked_instant(obj.get("InitiationTimestamp"), "InitiationTimestamp"),
        _checked_instant(obj.get("DisconnectTimestamp"), "DisconnectTimestamp"),
        agent,
        _endpoint(obj.get("SystemEndpoint")),
        _endpoint(obj.get("CustomerEndpoint")),
        queue.get("Name") if queue else None,
        _recordings(obj),
        obj,
    )


ANY_INSTANCE = "any"


@dataclass(frozen=True, slots=True)
class AcceptedInstances:
    """The Amazon Connect instances whose records are imported: the tenant check.

    Named by ``QM_INSTANCE_ARN`` (one ARN, a comma-separated list, or ``any`` to accept
    every instance on purpose) and by the instance saved on the console's ACD Configuration
    page. Nothing named at all is not "any": the service refuses to start.
    """

    arns: frozenset[str] = frozenset()
    any_instance: bool = False

    @classmethod
    def parse(cls, text: str | None) -> AcceptedInstances:
        return _parse_instances(text or "")

    def with_arn(self, arn: str | None) -> AcceptedInstances:
        if not arn or self.any_instance:
            return self
        return AcceptedInstances(self.arns | {normalise_instance_arn(arn)})

    @property
    def configured(self) -> bool:
        return self.any_instance or bool(self.arns)

    def accepts(self, arn: str) -> bool:
        return self.any_instance or arn in self.arns

    def describe(self) -> str:
        if self.any_instance:
            return "any instance"
        return ", ".join(sorted(self.arns)) or "none"


@lru_cache(maxsize=64)
def _parse_instances(text: str) -> AcceptedInstances:
    if text.strip().lower() == ANY_INSTANCE:
        return AcceptedInstances(any_instance=True)
    return AcceptedInstances(frozenset(normalise_instance_arn(p) for p in text.split(",") if p.strip()))


def check_instance(record: ContactRecord, expected: AcceptedInstances | str | None) -> None:
    """Refuse a CTR of another Connect instance (another tenant's data).

    ``None`` checks nothing: for tools that import nothing (``map-ctr``); every import path
    resolves its :class:`AcceptedInstances` first and refuses to run without one.
    """
    if expected is None:
        return
    accepted = expected if isinstance(expected, AcceptedInstances) else AcceptedInstances.parse(expected)
    if not accepted.accepts(record.instance_arn):
        raise InvalidInput(
            "foreign_instance", f"CTR of instance {record.instance_arn}, expected {accepted.describe()}"
        )


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _endpoint(obj: dict[str, Any] | None) -> Endpoint | None:
    if obj is None:
        return None
    return _build_endpoint(obj.get("Address"), obj.get("Type"))


def _recordings(obj: dict[str, Any]) -> tuple[RecordingRef, ...]:
    refs: list[RecordingRef] = []
    recordings = obj.get("Recordings")
    if recordings:
        for i, item in enumerate(recordings):
            start, stop = item.get("StartTimestamp"), item.get("StopTimestamp")
            where = item.get("Location")
            if where is not None:  # _clean(), inline
                where = where.strip() or None
            refs.append(
                _build_recording(  # location, storage_type, media_stream_type, ..., start, stop
                    where,
                    item.get("StorageType"),
                    item.get("MediaStreamType"),
                    item.get("ParticipantType"),
                    item.get("Status"),
                    item.get("DeletionReason"),
                    None if start is None else _checked_instant(start, f"Recordings.{i}.StartTimestamp"),
                    None if stop is None else _checked_instant(stop, f"Recordings.{i}.StopTimestamp"),
                )
            )
    legacy = obj.get("Recording")
    if legacy and legacy.get("Location"):
        location = _clean(legacy.get("Location"))
        # Older CTRs have only the legacy object; newer ones repeat it in Recordings[].
        if location and all(r.location != location for r in refs):
            refs.append(
                RecordingRef(
                    location=location,
                    storage_type="S3",
                    media_stream_type=legacy.get("Type"),
                    participant_type=None,
                    status=legacy.get("Status"),
                    deletion_reason=legacy.get("DeletionReason"),
                    start=None,
                    stop=None,
                )
            )
    return tuple(refs)


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
