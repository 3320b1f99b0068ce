"""The join, with its I/O: CTRs and recording objects meet here, in any order.

Every entry point (a CTR from the stream, an object from the S3 notification queue, the
sweeper when a window closes, a user whose name becomes known) ends in the same loop:
load the contact's view, decide with the pure state machine (:mod:`processor.core.join`),
write the next view conditionally (optimistic concurrency: a conflict re-reads and
decides again), then emit it if it is final. Each entry point returns only when its
effects are durable, so its caller may checkpoint or delete the message.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from processor.adapters.aws import OUTPUT_PUT_MAX_S, is_transient
from processor.adapters.contacts import ClaimResult, DynamoContactStore, StoredContact, view_doc
from processor.adapters.join_store import DynamoJoinStore
from processor.adapters.media import Duration, S3Media
from processor.adapters.output import OutputStream, emission_id
from processor.adapters.users import UserDirectory
from processor.core.ctr import ContactRecord, format_instant, parse_instant
from processor.core.join import (
    ContactView,
    JoinState,
    RecordingObject,
    Tolerance,
    expected_recordings,
    on_ctr,
    reevaluate,
)
from processor.core.mapping import QmContact, map_contact
from processor.core.s3_events import ObjectCreated
from processor.core.users import QmUser
from processor.faults import fault_point
from processor.logs import get_logger
from processor.retry import retry_transient

log = get_logger("processor.join")

Clock = Callable[[], datetime]
MAX_CONFLICTS = 20
#: An emission claim older than this may be taken over. Its holder stops starting puts
#: ``OUTPUT_PUT_MAX_S + CLOCK_SKEW_S`` before that, so when another worker takes over, any
#: put of the holder has landed or failed, and the read-back sees it: no duplicate even
#: when the holder is slow (an outage), not dead.
CLAIM_LEASE_S = 60.0
CLOCK_SKEW_S = 10.0


class ClaimExpiring(Exception):
    """The output stream did not take the put within the claim's safe time."""


class Outcome(StrEnum):
    CREATED = "created"  # a contact's first view
    UPDATED = "updated"  # a new version or revision
    UNCHANGED = "unchanged"  # stale or duplicate input: nothing written
    MISSING = "missing"  # nothing to do (no such contact)


class JoinObserver(Protocol):
    """Metrics hooks (no-ops by default)."""

    def emitted(self, state: str) -> None: ...

    def orphaned(self) -> None: ...

    def media_bytes(self, count: int) -> None: ...


class ScreenHook(Protocol):
    """Screen-recording control (:mod:`processor.screen_control`), seen from the join."""

    def expects_extraction(self, contact: QmContact, user: QmUser | None) -> bool: ...

    def ensure_extraction(self, contact: QmContact, user: QmUser | None) -> bool: ...


#: A result never goes back: a repeated or late "failed" does not undo an upload.
SCREEN_RANK = {None: 0, "pending": 1, "failed": 2, "unavailable": 3, "uploaded": 4}


class _NoObserver:
    def emitted(self, state: str) -> None:
        return None

    def orphaned(self) -> None:
        return None

    def media_bytes(self, count: int) -> None:
        return None


@dataclass
class SweepReport:
    missing: int = 0
    orphans: int = 0
    reconciled: int = 0


@dataclass
class Joiner:
    contacts: DynamoContactStore
    joins: DynamoJoinStore
    media: S3Media
    output: OutputStream
    users: UserDirectory
    window: Callable[[], timedelta]
    tolerance: Tolerance
    clock: Clock
    observer: JoinObserver = field(default_factory=_NoObserver)
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    claim_lease_s: float = CLAIM_LEASE_S
    screen: ScreenHook | None = None

    # --- entry points --------------------------------------------------------------------
    def on_ctr(self, record: ContactRecord, raw: bytes) -> Outcome:
        """A CTR version from the stream (or the archive)."""
        user = self._user(record.agent.username if record.agent else None)
        base = map_contact(record, user)
        if self.screen is not None and self.screen.expects_extraction(base, user):
            base = replace(base, screen_recording_status="pending")
        live = [e.location for e in expected_recordings(record) if not e.deleted]
        # Most CTRs are their contact's first version: try to create it without reading first.
        now = self.clock()
        first = on_ctr(
            None,
            record=record,
            base=base,
            objects=self._objects(record.contact_id, live),
            now=now,
            window=self.window(),
            tolerance=self.tolerance,
        )
        claimed = time.monotonic()
        if first is not None and self._write(first, None, raw, now, create_only=True):
            self._after_write(first, None, now, claimed)
            self._extraction(first.contact, user)
            return Outcome.CREATED
        for _ in range(MAX_CONFLICTS):
            now = self.clock()
            current = self._load(record.contact_id)
            if current is not None and current.last_update > base.last_update:
                return Outcome.UNCHANGED
            if current is not None and current.view.contact.screen_recording_status:
                base = base.with_screen_of(current.view.contact)  # a newer CTR keeps the screen recording
            objects = self._objects(
                record.contact_id, [e.location for e in expected_recordings(record) if not e.deleted]
            )
            view = on_ctr(
                current.view if current else None,
                record=record,
                base=base,
                objects=objects,
                now=now,
                window=self.window(),
                tolerance=self.tolerance,
            )
            if view is None:
                if current is not None:
                    self._finish(current)
                    self._schedule(current.view)
                    self._extraction(current.view.contact, user)  # a replay: publish if a crash prevented it
                return Outcome.UNCHANGED
            claimed = time.monotonic()
            if self._write(view, current, raw, now):
                self._after_write(view, current, now, claimed)
                self._extraction(view.contact, user)
                return Outcome.CREATED if current is None else Outcome.UPDATED
        raise RuntimeError(f"contact {record.contact_id}: too many concurrent updates")

    def on_object(self, obj: ObjectCreated) -> Outcome:
        """A recording object appeared in S3 (notification)."""
        now = self.clock()
        halves = retry_transient(
            lambda: self.joins.record_object(
                obj.location, obj.size or 0, obj.etag, now, orphan_due=now + self.window()
            ),
            "join.record_object",
        )
        if halves.contact_id is None:
            log.info("recording without its CTR yet", location=obj.location)
            return Outcome.UNCHANGED
        return self.reconcile(halves.contact_id)

    def reconcile(self, contact_id: str, *, refresh_user: bool = False) -> Outcome:
        """Decide again for a stored contact (object arrived, window closed, user known)."""
        for _ in range(MAX_CONFLICTS):
            now = self.clock()
            current = self._load(contact_id)
            if current is None:
                return Outcome.MISSING
            self._finish(current)
            live = [e.location for e in current.view.expected if not e.deleted]
            objects = self._objects(contact_id, live)
            base: QmContact = current.view.contact
            if refresh_user or "user_unknown" in base.flags:
                base = base.with_user(self._user(base.acd_id))
            view = reevaluate(
                current.view,
                objects=objects,
                now=now,
                window=self.window(),
                tolerance=self.tolerance,
                base=base,
            )
            if view is None:
                self._schedule(current.view)
                return Outcome.UNCHANGED
            claimed = time.monotonic()
            if self._write(view, current, None, now):
                self._after_write(view, current, now, claimed)
                return Outcome.UPDATED
        raise RuntimeError(f"contact {contact_id}: too many concurrent updates")

    def record_screen(
        self, contact_id: str, *, status: str, location: str | None, coverage: float | None
    ) -> Outcome:
        """A desktop's result on the QM contact: the next revision, emitted like any change."""
        for _ in range(MAX_CONFLICTS):
            now = self.clock()
            current = self._load(contact_id)
            if current is None:
                return Outcome.MISSING
            contact = current.view.contact
            if SCREEN_RANK.get(status, 0) < SCREEN_RANK.get(contact.screen_recording_status, 0):
                return Outcome.UNCHANGED
            new = replace(
                contact,
                screen_recording_status=status,
                screen_recording_location=location
                if location is not None
                else contact.screen_recording_location,
                screen_coverage=coverage if coverage is not None else contact.screen_coverage,
            )
            if new == contact:
                return Outcome.UNCHANGED
            view = replace(current.view, contact=new, revision=current.view.revision + 1)
            claimed = time.monotonic()
            if self._write(view, current, None, now):
                self._after_write(view, current, now, claimed)
                return Outcome.UPDATED
        raise RuntimeError(f"contact {contact_id}: too many concurrent updates")

    def _extraction(self, contact: QmContact, user: QmUser | None) -> None:
        """Publish the screen extraction. Transient failures are retried (the batch waits);
        anything else is logged and does not hold the contact's import back."""
        if self.screen is None:
            return
        screen = self.screen
        try:
            retry_transient(lambda: screen.ensure_extraction(contact, user), "screen.extraction")
        except Exception as exc:
            log.error(
                "screen extraction could not be published",
                contact_id=contact.contact_id,
                error=type(exc).__name__,
                detail=str(exc)[:300],
            )

    def refresh_agent(self, acd_id: str) -> int:
        """A QM user appeared or changed: give that agent's contacts their names."""
        count = 0
        for contact_id in self.contacts.contact_ids_of_agent(acd_id):
            if self.reconcile(contact_id, refresh_user=True) is Outcome.UPDATED:
                count += 1
        return count

    def sweep(self) -> SweepReport:
        """Close the windows that are due: contacts without their recordings are emitted
        ``recording_missing``; recordings no CTR claimed are reported as orphans."""
        report = SweepReport()
        now = self.clock()
        for item in list(self.joins.due(now)):
            if item.kind == "contact":
                outcome = self.reconcile(item.key)
                report.reconciled += 1
                if outcome is Outcome.MISSING:
                    self.joins.clear_waiting(item.key)
                elif outcome is Outcome.UPDATED:
                    stored = self._load(item.key)
                    if stored is not None and stored.view.state is JoinState.RECORDING_MISSING:
                        report.missing += 1
            elif self.joins.mark_orphan_reported(item.key, now):
                report.orphans += 1
                self.observer.orphaned()
                log.warning(
                    "orphaned recording: no CTR lists it after the join window",
                    location=item.key,
                    due_at=item.due_at.isoformat(),
                )
        return report

    # --- internals -------------------------------------------------------------------------
    def _user(self, username: str | None) -> QmUser | None:
        if not username:
            return None
        return retry_transient(lambda: self.users.get_many([username]), "users.get_many").get(username)

    def _load(self, contact_id: str) -> StoredContact | None:
        return retry_transient(lambda: self.contacts.load(contact_id), "contacts.load")

    def _write(
        self,
        view: ContactView,
        current: StoredContact | None,
        raw: bytes | None,
        now: datetime,
        *,
        create_only: bool = False,
    ) -> bool:
        return retry_transient(
            lambda: self.contacts.write(
                view, replaces=current, raw_ctr=raw, now=now, claim_owner=self.owner, create_only=create_only
            ),
            "contacts.write",
        )

    def _objects(self, contact_id: str, locations: Iterable[str]) -> dict[str, RecordingObject]:
        """Link the contact to each recording and return the objects that exist, with
        their durations read. Each step is idempotent, so a transient failure retries it."""
        found: dict[str, RecordingObject] = {}
        for location in dict.fromkeys(locations):
            obj = retry_transient(lambda loc=location: self._object(contact_id, loc), "join.object")  # type: ignore[misc]
            if obj is not None:
                found[location] = obj
        return found

    def _object(self, contact_id: str, location: str) -> RecordingObject | None:
        now = self.clock()
        obj = self.joins.link_contact(location, contact_id, now).obj
        probed_duration: Duration | None = None
        if obj is None:
            # One ranged GET covers a notification that was lost or arrived before this CTR:
            # whether the object exists, its size and its duration.
            probed = self.media.probe(location)
            if probed is None:
                return None
            info, probed_duration = probed
            self.observer.media_bytes(probed_duration.bytes_read)
            obj = self.joins.record_object(
                location,
                info.size,
                info.etag,
                now,
                orphan_due=now,
                duration=(probed_duration.seconds, probed_duration.source),
            ).obj
            if obj is None:
                return None
            if obj.size != info.size:
                probed_duration = None  # overwritten since: the stored object is another one
        if obj.duration_seconds is None:
            # The notification's half can win the write without a duration (read after it):
            # this contact is decided with the duration all the same, never without and then
            # again with it (two versions of one contact).
            duration = (
                probed_duration if probed_duration is not None else self.media.duration(location, obj.size)
            )
            if duration is not probed_duration:
                self.observer.media_bytes(duration.bytes_read)
            self.joins.set_duration(location, duration.seconds, duration.source)
            obj = RecordingObject(obj.location, obj.size, obj.seen_at, duration.seconds, duration.source)
        return obj

    def _after_write(
        self, view: ContactView, previous: StoredContact | None, now: datetime, claimed: float | None = None
    ) -> None:
        fault_point("after_view_write")  # the view (and its emission claim) is durable, not yet emitted
        if view.state.final:
            # This writer holds the claim (taken in the write): publish straight away.
            imported_at = previous.imported_at if previous and previous.imported_at else format_instant(now)
            try:
                self._publish(view.contact_id, view, imported_at, claimed=claimed)
            except ClaimExpiring:
                self._wait_until_stale(claimed if claimed is not None else time.monotonic())
                self._finish(self._load(view.contact_id))
        if (
            previous is None
            or previous.view.state is not view.state
            or previous.view.deadline != view.deadline
        ):
            self._schedule(view)

    def _schedule(self, view: ContactView) -> None:
        """A waiting view has its sweeper marker; a final one none (idempotent, so a crash
        between the view's write and this call is repaired by the next visit)."""
        if view.state is JoinState.WAITING and view.deadline is not None:
            now, deadline = self.clock(), view.deadline
            retry_transient(
                lambda: self.joins.mark_waiting(view.contact_id, deadline, now), "join.mark_waiting"
            )
        else:
            retry_transient(lambda: self.joins.clear_waiting(view.contact_id), "join.clear_waiting")

    def _finish(self, stored: StoredContact | None) -> None:
        """Complete a pending emission of the stored version (ours, or a crashed or stuck
        worker's): wait while another holder's claim is fresh, then take it over, read the
        stream back from the last attempt, and publish only if the record is not there."""
        waited_since = time.monotonic()
        while stored is not None and stored.emission_pending:
            version = stored.version
            contact_id = stored.contact_id
            claim = retry_transient(
                lambda c=contact_id, v=version: self.contacts.claim_emission(  # type: ignore[misc]
                    c, v, self.owner, self.clock(), self.claim_lease_s
                ),
                "contacts.claim_emission",
            )
            if claim is ClaimResult.DONE:
                return
            if claim is ClaimResult.BUSY:
                if time.monotonic() - waited_since > 10 * self.claim_lease_s:
                    raise RuntimeError(f"contact {contact_id}: emission claim never released")
                time.sleep(0.5)
                continue
            claimed = time.monotonic()
            now = self.clock()
            previous = retry_transient(
                lambda c=contact_id, v=version, n=now: self.contacts.note_attempt(c, v, self.owner, n),  # type: ignore[misc]
                "contacts.note_attempt",
            )
            try:
                if previous is not None and self._already_published(contact_id, version, previous):
                    retry_transient(
                        lambda c=contact_id, v=version: self.contacts.mark_emitted(c, v),  # type: ignore[misc]
                        "contacts.mark_emitted",
                    )
                    return
                self._publish(contact_id, stored.view, stored.imported_at, claimed=claimed)
                return
            except ClaimExpiring:
                self._wait_until_stale(claimed)
                stored = self._load(contact_id)

    def _already_published(self, contact_id: str, version: str, attempted_at: str) -> bool:
        since = parse_instant(attempted_at, "emit_attempted_at")
        assert since is not None
        eid = emission_id(contact_id, version)
        found = retry_transient(lambda: self.output.contains(contact_id, eid, since), "output.read_back")
        if found:
            log.info(
                "emission found on the output stream after a crash", contact_id=contact_id, version=version
            )
        return bool(found)

    def _wait_until_stale(self, claimed: float) -> None:
        """Our claim is about to lapse with the output stream unreachable: let it lapse, so
        that whoever takes over (possibly us) reads back after our last put could land."""
        time.sleep(max(0.0, claimed + self.claim_lease_s + 1.0 - time.monotonic()))

    def _publish(
        self, contact_id: str, view: ContactView, imported_at: str | None, *, claimed: float | None
    ) -> None:
        """Put the view on the output stream and mark it emitted. The caller holds the claim,
        taken at ``claimed`` (monotonic): puts are only started while the claim is safely
        ours (see ``CLAIM_LEASE_S``); past that :class:`ClaimExpiring` is raised and the
        claim is left to lapse before anyone (with a read-back) tries again."""
        version = view.version
        doc = view_doc(view, imported_at)
        doc["emission_id"] = emission_id(contact_id, version)
        started = claimed if claimed is not None else time.monotonic()
        deadline = started + self.claim_lease_s - OUTPUT_PUT_MAX_S - CLOCK_SKEW_S
        eid = doc["emission_id"]
        delay = 0.2
        while True:
            if time.monotonic() >= deadline:
                raise ClaimExpiring(contact_id)
            attempt_at = self.clock()
            try:
                self.output.publish(doc)
                break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("output put failed; checking whether it landed", contact_id=contact_id)
            # A put whose answer was lost may have landed: never put again before a read-back
            # says it is not there (a read-back that fails leaves it to the claim's expiry).
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 5.0)
            try:
                if self.output.contains(contact_id, eid, attempt_at, timeout_s=OUTPUT_PUT_MAX_S):
                    break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                raise ClaimExpiring(contact_id) from exc
        fault_point("after_output_put")
        retry_transient(lambda: self.contacts.mark_emitted(contact_id, version), "contacts.mark_emitted")
        self.observer.emitted(view.state.value)
        log.info("contact emitted", contact_id=contact_id, version=version, join_state=view.state.value)
