"""The join, with its I/O: CTRs and recording objects meet here, in any order, a batch at a time.

Every entry point (a batch of CTRs from the stream, a batch of objects from the S3
notification queue, the sweeper when windows close, a user whose name becomes known) ends
in the same loop (:meth:`Joiner._apply`): load the contacts' views in bulk, decide each with
the pure state machine (:mod:`processor.core.join`), write the next views conditionally in
one wave of transactions (optimistic concurrency: a conflict re-reads and re-decides that
contact alone), then emit the final ones with one output put for the batch. Each entry
point returns only when its effects are durable, so its caller may checkpoint or delete
the messages.

The request waves of a batch of CTRs, whatever its size (each wave is requests side by side):

1. read the QM users and the stored contacts, write the CTR halves, read the object halves;
2. read again the object halves not found, now that the CTR halves are durable (only if any);
3. write the views and their sweeper markers (TransactWriteItems);
4. put the final views on the output stream (PutRecords);
5. mark them emitted (TransactWriteItems), and publish screen extractions.

Rare paths add waves of their own: a CTR old enough that its recording's notification
should have come reads the object's header itself; a stored version whose emission is
pending (a crash) is completed first; a conflict is re-decided.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from botocore.exceptions import ClientError

from processor.adapters.aws import OUTPUT_PUT_MAX_S, error_code, is_transient
from processor.adapters.dynamodb import bulk
from processor.adapters.dynamodb.contacts import StoredContact, view_doc
from processor.adapters.dynamodb.join_store import DueItem, SeenObject
from processor.adapters.kinesis.output import emission_id
from processor.adapters.s3.recording_copy import RecordingCopier
from processor.app.ports import ContactStore, JoinStore, OutputPort, RecordingMedia, UserDirectory
from processor.core.ctr import ContactRecord, format_instant, parse_instant
from processor.core.emission import (
    BUSY_PAUSE_S,
    CLAIM_LEASE_S,
    FIRST_PAUSE_S,
    Next,
    PutWindow,
    after_claim,
    backoff,
)
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
from processor.core.recording_location import RecordingLocations, Rejection, flagged
from processor.core.s3_events import ObjectCreated
from processor.core.user_directory import QmUser
from processor.platform.fault_points import fault_point
from processor.platform.logs import get_logger
from processor.platform.retry import retry_transient

log = get_logger("processor.join")

Clock = Callable[[], datetime]
MAX_CONFLICTS = 20
#: A CTR updated longer ago than this whose recording has not been seen reads the object
#: itself: its notification should have come (a replay, a backfill, a lost notification).
#: Younger ones wait for the notification; the sweeper reads the object at the window's end.
PROBE_AFTER = timedelta(minutes=2)
#: How long a recording whose CTR half exists waits, in steps, for that CTR's contact to be
#: written (its batch is between reading and writing); after that the sweeper decides it.
LINKED_NOT_STORED_PAUSES = (0.2, 0.5, 1.0, 2.0)
#: A sweep closes the due windows ``limit`` at a time, at most this many times.
SWEEP_ROUNDS = 20
#: PutRecords takes at most 500 records and 5 MB a request.
PUT_RECORDS_MAX = 500
PUT_RECORDS_BYTES = 4_500_000


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
    """Screen-recording control (:mod:`processor.app.screen_control`), seen from the join."""

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


#: Decides a contact's next view from what is stored (None: absent); None: nothing to write.
Decider = Callable[[StoredContact | None, datetime], ContactView | None]


@dataclass
class _Change:
    """One contact's part in a batch: how to decide it, and what to do once written."""

    decide: Decider
    raw: bytes | None = None
    user: QmUser | None = None
    extraction: bool = False  # publish the screen extraction once written (or on a replay)
    absent: Outcome = Outcome.MISSING  # the outcome when there is nothing stored and no view


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    state: JoinState | None  # the contact's state after the batch (None: no contact)


@dataclass(frozen=True)
class _Written:
    view: ContactView
    imported_at: str
    user: QmUser | None
    extraction: bool


def _pool(threads: int, name: str) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)


@dataclass
class Joiner:
    contacts: ContactStore
    joins: JoinStore
    media: RecordingMedia
    output: OutputPort
    users: UserDirectory
    window: Callable[[], timedelta]
    tolerance: Tolerance
    clock: Clock
    #: The buckets and key layout recordings are read from: a CTR's recording anywhere else
    #: is flagged on its contact, never expected, never read.
    locations: RecordingLocations
    observer: JoinObserver = field(default_factory=_NoObserver)
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: The emission claim's lease (see :mod:`processor.core.emission`).
    claim_lease_s: float = CLAIM_LEASE_S
    #: The monotonic clock the emission protocol's times are on, and how to wait on it.
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    screen: ScreenHook | None = None
    #: QM's own copy of each recording, made when the recording is first read (None: off).
    copier: RecordingCopier | None = None
    probe_after: timedelta = PROBE_AFTER
    #: Requests of one wave run side by side on ``io``; the parts of a wave that are
    #: themselves waves (a bulk read beside a bulk write) on ``waves``, so that neither pool
    #: ever waits for itself.
    io: ThreadPoolExecutor = field(default_factory=lambda: _pool(16, "join-io"))
    waves: ThreadPoolExecutor = field(default_factory=lambda: _pool(4, "join-wave"))

    # --- entry points --------------------------------------------------------------------
    def on_ctrs(self, batch: Sequence[tuple[ContactRecord, bytes]]) -> list[Outcome | Exception]:
        """A batch of CTR versions (one per contact) from the stream or the archive; one
        outcome per CTR, or the exception that one CTR alone caused. Durable on return."""
        if not batch:
            return []
        now = self.clock()
        rejected: dict[str, tuple[Rejection, ...]] = {}
        screened = []
        for record, raw in batch:
            kept, refused = self._screened(record)
            screened.append((kept, raw))
            if refused:
                rejected[record.contact_id] = refused
        batch = screened
        live = {
            record.contact_id: [e.location for e in expected_recordings(record) if not e.deleted]
            for record, _ in batch
        }
        locations = list(dict.fromkeys(loc for locs in live.values() for loc in locs))
        usernames = {r.agent.username for r, _ in batch if r.agent and r.agent.username}
        # Wave 1: users, stored contacts and object halves read, CTR halves written.
        users_f = self._submit(lambda: self._users(usernames))
        stored_f = self._submit(lambda: self.contacts.load_many(live))
        links = [(loc, cid) for cid, locs in live.items() for loc in dict.fromkeys(locs)]
        links_f = self._submit(lambda: self.joins.write(self.joins.link_requests(links, now)))
        halves = self.joins.read_halves(locations, now, links=False) if locations else {}
        links_f.result()
        # Wave 2: what was not there before the CTR halves were durable may have come since.
        unseen = [loc for loc in locations if halves[loc].obj is None]
        if unseen:
            halves.update(self.joins.read_halves(unseen, now, links=False))
        objects = {loc: h.obj for loc, h in halves.items() if h.obj is not None}
        old = {r.contact_id for r, _ in batch if now - r.last_update >= self.probe_after}
        stale = list(dict.fromkeys(loc for cid in old for loc in live[cid] if loc not in objects))
        if stale:
            objects.update(self._probe(stale, now))
        users = users_f.result()
        stored = stored_f.result()
        changes: dict[str, _Change] = {}
        for record, raw in batch:
            user = users.get(record.agent.username) if record.agent and record.agent.username else None
            changes[record.contact_id] = _Change(
                decide=self._ctr_decider(
                    record,
                    user,
                    {loc: objects[loc] for loc in live[record.contact_id] if loc in objects},
                    rejected.get(record.contact_id, ()),
                ),
                raw=raw,
                user=user,
                extraction=True,
                absent=Outcome.UNCHANGED,
            )
        results = self._apply(changes, stored)
        return [
            r if isinstance(r, Exception) else r.outcome
            for r in (results[record.contact_id] for record, _ in batch)
        ]

    def _screened(self, record: ContactRecord) -> tuple[ContactRecord, tuple[Rejection, ...]]:
        """The CTR without the recordings outside the recordings buckets or Connect's layout,
        and those (logged: the contact, the bucket and why; never the key)."""
        screened, rejected = self.locations.screen(record)
        if rejected:
            for rejection in rejected:
                log.warning(
                    "recording location rejected: never read, never played",
                    contact_id=record.contact_id,
                    reason=rejection.reason,
                    bucket=rejection.bucket[:63],
                    allowed=self.locations.describe(),
                )
        return screened, rejected

    def on_ctr(self, record: ContactRecord, raw: bytes) -> Outcome:
        """One CTR version (see :meth:`on_ctrs`)."""
        outcome = self.on_ctrs([(record, raw)])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def on_objects(self, objs: Sequence[ObjectCreated]) -> list[Outcome | Exception]:
        """Recording objects that appeared in S3 (a receive of notifications): each header is
        read once here, the object halves written in bulk, and the contacts that list them
        decided again. One outcome per object. Durable on return."""
        if not objs:
            return []
        now = self.clock()
        latest = self._in_own_buckets(objs)
        if not latest:
            return [Outcome.UNCHANGED for _ in objs]
        locations = list(latest)
        # Wave 1: both halves as they are (a redelivered notification needs no header read).
        before = self.joins.read_halves(locations, now)
        fresh = [loc for loc in locations if _needs_reading(before[loc].obj, latest[loc])]
        # Wave 2: the headers (one ranged GET each); wave 3: the object halves.
        seen = self._read_objects(fresh, {loc: latest[loc] for loc in fresh}, now)
        window = self.window()
        self.joins.write(
            self.joins.object_requests(
                [(obj, None if before[loc].contact_id else now + window) for loc, obj in seen.items()], now
            )
        )
        # Wave 4: the CTR halves written meanwhile (write, then read).
        unlinked = [loc for loc in seen if before[loc].contact_id is None]
        after = self.joins.read_halves(unlinked, now, objects=False) if unlinked else {}
        owners: dict[str, str] = {}
        for loc in locations:
            contact_id = before[loc].contact_id or (after[loc].contact_id if loc in after else None)
            if contact_id:
                owners[loc] = contact_id
            elif loc in seen:
                log.info("recording without its CTR yet", location=loc)
            else:
                log.info("recording gone before it was read", location=loc)
        known = {loc: s.obj for loc, s in seen.items()}
        known.update({loc: h.obj for loc, h in before.items() if h.obj is not None and loc not in known})
        results = self.reconcile_many(set(owners.values()), known=known) if owners else {}
        for pause in LINKED_NOT_STORED_PAUSES:
            # A CTR half without its contact: that CTR's batch is between its read of the
            # object halves and its write. Once written, the contact waits for this object:
            # decide it then, not at the end of its window.
            unstored = [c for c, r in results.items() if isinstance(r, Result) and r.state is None]
            if not unstored:
                break
            self.sleep(pause)
            results.update(self.reconcile_many(unstored, known=known))
        outcomes: list[Outcome | Exception] = []
        for obj in objs:
            contact_id = owners.get(obj.location) if obj.location in latest else None
            if contact_id is None:
                outcomes.append(Outcome.UNCHANGED)
                continue
            result = results[contact_id]
            outcomes.append(result if isinstance(result, Exception) else result.outcome)
        return outcomes

    def _in_own_buckets(self, objs: Sequence[ObjectCreated]) -> dict[str, ObjectCreated]:
        """The objects by location, those of other buckets left out: a notification is
        untrusted, and only the recordings buckets are read."""
        latest: dict[str, ObjectCreated] = {}
        for obj in objs:
            if self.locations.bucket_allowed(obj.location):
                latest[obj.location] = obj
                continue
            log.warning(
                "recording notification of another bucket ignored: never read",
                bucket=obj.bucket[:63],
                allowed=self.locations.describe(),
            )
        return latest

    def on_object(self, obj: ObjectCreated) -> Outcome:
        """One recording object (see :meth:`on_objects`)."""
        outcome = self.on_objects([obj])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def reconcile_many(
        self,
        contact_ids: Iterable[str],
        *,
        refresh_user: bool = False,
        probe: bool = False,
        known: Mapping[str, RecordingObject] | None = None,
    ) -> dict[str, Result | Exception]:
        """Decide again for stored contacts (objects arrived, windows closed, a user known).
        ``probe`` reads the header of each recording still missing (the sweeper, at the end
        of a window: it covers a notification that never came)."""
        ids = list(dict.fromkeys(contact_ids))
        if not ids:
            return {}
        now = self.clock()
        stored = self.contacts.load_many(ids)
        objects: dict[str, RecordingObject] = dict(known or {})
        wanted = [
            loc
            for c in stored.values()
            for loc in dict.fromkeys(e.location for e in c.view.expected if not e.deleted)
            if loc not in objects
        ]
        if wanted:
            halves = self.joins.read_halves(wanted, now, links=False)
            objects.update({loc: h.obj for loc, h in halves.items() if h.obj is not None})
        if probe:
            missing = [loc for loc in wanted if loc not in objects]
            if missing:
                objects.update(self._probe(missing, now))
        names = {
            c.view.contact.acd_id
            for c in stored.values()
            if c.view.contact.acd_id and (refresh_user or "user_unknown" in c.view.contact.flags)
        }
        users = self._users(names)
        changes = {cid: _Change(decide=self._reconcile_decider(objects, users, refresh_user)) for cid in ids}
        return self._apply(changes, stored)

    def reconcile(self, contact_id: str, *, refresh_user: bool = False) -> Outcome:
        """Decide again for one stored contact (see :meth:`reconcile_many`)."""
        result = self.reconcile_many([contact_id], refresh_user=refresh_user)[contact_id]
        if isinstance(result, Exception):
            raise result
        return result.outcome

    def record_screen(
        self, contact_id: str, *, status: str, location: str | None, coverage: float | None
    ) -> Outcome:
        """A desktop's result on the QM contact: the next revision, emitted like any change."""

        def decide(current: StoredContact | None, now: datetime) -> ContactView | None:
            if current is None:
                return None
            contact = current.view.contact
            if SCREEN_RANK.get(status, 0) < SCREEN_RANK.get(contact.screen_recording_status, 0):
                return None
            new = replace(
                contact,
                screen_recording_status=status,
                screen_recording_location=location
                if location is not None
                else contact.screen_recording_location,
                screen_coverage=coverage if coverage is not None else contact.screen_coverage,
            )
            if new == contact:
                return None
            return replace(current.view, contact=new, revision=current.view.revision + 1)

        result = self._apply({contact_id: _Change(decide=decide)}, self.contacts.load_many([contact_id]))
        outcome = result[contact_id]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome.outcome

    def refresh_agent(self, acd_id: str) -> int:
        """A QM user appeared or changed: give that agent's contacts their names."""
        ids = list(self.contacts.contact_ids_of_agent(acd_id))
        results = self.reconcile_many(ids, refresh_user=True)
        return sum(
            1 for r in results.values() if not isinstance(r, Exception) and r.outcome is Outcome.UPDATED
        )

    def sweep(self, limit: int = 500) -> SweepReport:
        """Close the windows that are due: contacts without their recordings are emitted
        ``recording_missing`` (after one last look at the object); recordings no CTR claimed
        are reported as orphans."""
        report = SweepReport()
        for _ in range(SWEEP_ROUNDS):
            due = []
            for item in self.joins.due(self.clock()):
                due.append(item)
                if len(due) >= limit:
                    break
            self._sweep_due(due, report)
            if len(due) < limit:
                break
        return report

    def _sweep_due(self, due: Sequence[DueItem], report: SweepReport) -> None:
        contacts = [d.key for d in due if d.kind == "contact"]
        recordings = [d.key for d in due if d.kind == "recording"]
        if contacts:
            results = self.reconcile_many(contacts, probe=True)
            report.reconciled += len(contacts)
            settled = []
            for contact_id, result in results.items():
                if isinstance(result, Exception):
                    log.warning(
                        "window could not be closed", contact_id=contact_id, error=type(result).__name__
                    )
                    continue
                if result.state is None or (result.state.final and result.outcome is not Outcome.UPDATED):
                    settled.append(contact_id)  # no contact, or a final one whose marker stayed
                elif result.outcome is Outcome.UPDATED and result.state is JoinState.RECORDING_MISSING:
                    report.missing += 1
            if settled:
                self.joins.clear_waiting(settled)
        if recordings:
            for location in self.joins.settle_orphans(recordings, self.clock()):
                report.orphans += 1
                self.observer.orphaned()
                log.warning("orphaned recording: no CTR lists it after the join window", location=location)

    # --- deciding ---------------------------------------------------------------------------
    def _ctr_decider(
        self,
        record: ContactRecord,
        user: QmUser | None,
        objects: Mapping[str, RecordingObject],
        rejected: Sequence[Rejection] = (),
    ) -> Decider:
        base = flagged(map_contact(record, user), rejected)
        if self.screen is not None and self.screen.expects_extraction(base, user):
            base = replace(base, screen_recording_status="pending")

        def decide(current: StoredContact | None, now: datetime) -> ContactView | None:
            if current is not None and current.last_update > base.last_update:
                return None
            contact = base
            if current is not None and current.view.contact.screen_recording_status:
                contact = base.with_screen_of(current.view.contact)  # a newer CTR keeps the screen recording
            return on_ctr(
                current.view if current else None,
                record=record,
                base=contact,
                objects=objects,
                now=now,
                window=self.window(),
                tolerance=self.tolerance,
            )

        return decide

    def _reconcile_decider(
        self, objects: Mapping[str, RecordingObject], users: Mapping[str, QmUser], refresh_user: bool
    ) -> Decider:
        def decide(current: StoredContact | None, now: datetime) -> ContactView | None:
            if current is None:
                return None
            base: QmContact = current.view.contact
            if refresh_user or "user_unknown" in base.flags:
                base = base.with_user(users.get(base.acd_id) if base.acd_id else None)
            live = {e.location for e in current.view.expected if not e.deleted}
            return reevaluate(
                current.view,
                objects={loc: obj for loc, obj in objects.items() if loc in live},
                now=now,
                window=self.window(),
                tolerance=self.tolerance,
                base=base,
            )

        return decide

    # --- the write loop ---------------------------------------------------------------------
    def _apply(  # noqa: PLR0912 - the batch's one loop: decide, write, re-decide conflicts
        self, changes: Mapping[str, _Change], stored: dict[str, StoredContact]
    ) -> dict[str, Result | Exception]:
        """Decide, write and emit every change; a conflict re-decides that contact alone."""
        stored = dict(stored)
        self._complete_pending(stored)
        results: dict[str, Result | Exception] = {}
        written: list[_Written] = []
        replays: list[tuple[StoredContact, _Change]] = []
        pending = dict(changes)
        claimed: float | None = None  # when our first claims were written (the earliest)
        for _ in range(MAX_CONFLICTS):
            now = self.clock()
            writes: list[tuple[str, ContactView, StoredContact | None]] = []
            for contact_id, change in pending.items():
                current = stored.get(contact_id)
                view = change.decide(current, now)
                if view is None:
                    results[contact_id] = Result(
                        Outcome.UNCHANGED if current is not None else change.absent,
                        current.view.state if current is not None else None,
                    )
                    if current is not None and change.extraction:
                        replays.append((current, change))  # a replay: publish if a crash prevented it
                    continue
                writes.append((contact_id, view, current))
            if not writes:
                pending = {}
                break
            groups = [self._actions(view, current, changes[cid].raw, now) for cid, view, current in writes]
            claimed = self.monotonic() if claimed is None else claimed
            outcomes = self.contacts.transact(groups)
            conflicts: list[str] = []
            for (contact_id, view, current), outcome in zip(writes, outcomes, strict=True):
                if outcome.written:
                    imported = current.imported_at if current and current.imported_at else format_instant(now)
                    change = changes[contact_id]
                    written.append(_Written(view, imported, change.user, change.extraction))
                    results[contact_id] = Result(
                        Outcome.CREATED if current is None else Outcome.UPDATED, view.state
                    )
                elif outcome.reason == bulk.CONDITION_FAILED:
                    conflicts.append(contact_id)
                else:
                    results[contact_id] = outcome.error or RuntimeError(
                        f"contact {contact_id}: write refused ({outcome.reason})"
                    )
            if not conflicts:
                pending = {}
                break
            fresh = self.contacts.load_many(conflicts)
            for contact_id in conflicts:
                if contact_id in fresh:
                    stored[contact_id] = fresh[contact_id]
                else:
                    stored.pop(contact_id, None)
            self._complete_pending({c: s for c, s in fresh.items()})
            pending = {contact_id: changes[contact_id] for contact_id in conflicts}
        for contact_id in pending:
            results[contact_id] = RuntimeError(f"contact {contact_id}: too many concurrent updates")
        fault_point("after_view_write")  # the views (and their emission claims) are durable, not yet emitted
        if claimed is not None:
            self._emit(written, claimed)
        self._extractions(
            [(w.view.contact, w.user) for w in written if w.extraction]
            + [(c.view.contact, ch.user) for c, ch in replays]
        )
        return results

    def _actions(
        self, view: ContactView, current: StoredContact | None, raw: bytes | None, now: datetime
    ) -> list[dict[str, Any]]:
        """The contact's conditional put and, in the same transaction, its sweeper marker:
        while it waits, due when its window closes; once final, due when the emission claim
        written with it lapses (removed with the mark that it was emitted), so that an
        emission its writer never finished (a crash, a stop) is completed by the sweeper,
        whether or not anything else visits the contact again."""
        actions = [
            # Decided on "no contact yet": write only if still none (a contact written since
            # is a conflict, decided again with what it holds: its screen recording, its
            # first import).
            self.contacts.put_action(
                view,
                replaces=current,
                raw_ctr=raw,
                now=now,
                claim_owner=self.owner,
                create_only=current is None,
            )
        ]
        was_waiting = current is not None and current.view.state is JoinState.WAITING
        if view.emittable:
            lapse = now + timedelta(seconds=self.claim_lease_s + 1)
            actions.append(self.joins.waiting_put(view.contact_id, lapse, now))
        elif view.state is JoinState.WAITING and view.deadline is not None:
            if not was_waiting or current is None or current.view.deadline != view.deadline:
                actions.append(self.joins.waiting_put(view.contact_id, view.deadline, now))
        elif was_waiting:
            actions.append(self.joins.waiting_delete(view.contact_id))
        return actions

    def _complete_pending(self, stored: dict[str, StoredContact]) -> None:
        """Complete the pending emissions of stored versions (a crash, a stuck worker) before
        deciding again, then read those contacts again."""
        pending = [c for c in stored.values() if c.emission_pending]
        if not pending:
            return
        bulk.run_all(self.io, self._finish, pending)
        fresh = self.contacts.load_many([c.contact_id for c in pending])
        for contact in pending:
            if contact.contact_id in fresh:
                stored[contact.contact_id] = fresh[contact.contact_id]

    # --- emitting -----------------------------------------------------------------------------
    def _emit(self, written: Sequence[_Written], claimed: float) -> None:
        """Put the final views written on the output stream (we hold their claims, taken at
        ``claimed``), then mark them emitted; a view whose claim runs out first is left to
        lapse and completed like a crashed worker's."""
        finals = [w for w in written if w.view.state.final]
        if not finals:
            return
        docs: dict[str, dict[str, Any]] = {}
        for w in finals:
            doc = view_doc(w.view, w.imported_at)
            doc["emission_id"] = emission_id(w.view.contact_id, w.view.version)
            docs[doc["emission_id"]] = doc
        late = self._put_all(docs, claimed)
        fault_point("after_output_put")
        done = [
            (w.view.contact_id, w.view.version)
            for w in finals
            if emission_id(w.view.contact_id, w.view.version) not in late
        ]
        if done:
            # Each mark with the removal of the contact's marker; a mark refused because a
            # newer version replaced this one leaves the marker to the sweeper.
            groups = [[self.contacts.emitted_action(c, v), self.joins.waiting_delete(c)] for c, v in done]
            for outcome in self.contacts.transact(groups):
                if outcome.error is not None:
                    raise outcome.error
        for w in finals:
            if emission_id(w.view.contact_id, w.view.version) in late:
                continue
            self.observer.emitted(w.view.state.value)
            log.info(
                "contact emitted",
                contact_id=w.view.contact_id,
                version=w.view.version,
                join_state=w.view.state.value,
            )
        if late:
            self._wait_until_stale(self._window(claimed))
            lapsed = self.contacts.load_many(docs[eid]["contact_id"] for eid in late)
            bulk.run_all(self.io, self._finish, list(lapsed.values()))

    def _put_all(self, docs: dict[str, dict[str, Any]], claimed: float) -> set[str]:
        """Put ``docs`` (by emission id) with as few PutRecords as fit them; a record the
        stream refused is put again alone, an answer lost is settled by one read-back for all
        the records it carried. Returns the ids not known to be on the stream when the claim's
        safe time ran out (none normally)."""
        window = self._window(claimed)
        remaining = dict(docs)
        pause = FIRST_PAUSE_S
        while remaining:
            if not window.may_put(self.monotonic()):
                return set(remaining)
            attempt_at = self.clock()
            chunks = _put_chunks(list(remaining.values()))
            answers = bulk.run_all(self.io, self._put_chunk, chunks)
            unknown: dict[str, str] = {}
            for chunk, answer in zip(chunks, answers, strict=True):
                if isinstance(answer, Exception):
                    unknown.update({d["emission_id"]: d["contact_id"] for d in chunk})
                    continue
                for doc, ok in zip(chunk, answer, strict=True):
                    if ok:
                        remaining.pop(doc["emission_id"], None)
            if not remaining:
                break
            self.sleep(window.pause(self.monotonic(), pause))
            pause = backoff(pause)
            if unknown:
                # A put whose answer was lost may have landed: never put again before a
                # read-back says it is not there (a read-back that fails leaves it to the
                # claim's expiry).
                log.warning("output put failed; checking whether it landed", records=len(unknown))
                try:
                    found = self.output.find(unknown, attempt_at, timeout_s=OUTPUT_PUT_MAX_S)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    return set(remaining)
                for eid in found:
                    remaining.pop(eid, None)
        return set()

    def _put_chunk(self, chunk: Sequence[dict[str, Any]]) -> list[bool] | Exception:
        try:
            return self.output.put_many(chunk)
        except Exception as exc:
            if not is_transient(exc):
                raise
            return exc

    def _extractions(self, contacts: Sequence[tuple[QmContact, QmUser | None]]) -> None:
        """Publish the screen extractions. Transient failures are retried (the batch waits);
        anything else is logged and does not hold the contact's import back."""
        screen = self.screen
        if screen is None:
            return
        wanted = [(c, u) for c, u in contacts if screen.expects_extraction(c, u)]

        def one(item: tuple[QmContact, QmUser | None]) -> None:
            contact, user = item
            try:
                retry_transient(lambda: screen.ensure_extraction(contact, user), "screen.extraction")
            except Exception as exc:
                log.error(
                    "screen extraction could not be published",
                    contact_id=contact.contact_id,
                    error=type(exc).__name__,
                    detail=str(exc)[:300],
                )

        bulk.run_all(self.io, one, wanted)

    # --- reading ------------------------------------------------------------------------------
    def _submit(self, fn: Callable[[], Any]) -> Future[Any]:
        return self.waves.submit(fn)

    def _users(self, usernames: Iterable[str]) -> dict[str, QmUser]:
        names = [u for u in usernames if u]
        if not names:
            return {}
        return retry_transient(lambda: self.users.get_many(names), "users.get_many")

    def _read_objects(
        self, locations: Sequence[str], notified: Mapping[str, ObjectCreated], now: datetime
    ) -> dict[str, SeenObject]:
        """Size, duration and recorded parties of each object (one ranged GET of its header
        and the call's opening, a second only when the opening leaves a channel silent), side
        by side; objects gone since their notification are left out."""

        def one(location: str) -> SeenObject | None:
            if not self.locations.bucket_allowed(location):
                # A view stored before its CTR's recordings were checked: never read.
                log.warning(
                    "recording outside the recordings buckets not read",
                    bucket=location.partition("/")[0][:63],
                    allowed=self.locations.describe(),
                )
                return None
            probed = retry_transient(lambda: self.media.probe(location), "media.probe")
            if probed is None:
                return None
            info, duration = probed
            self.observer.media_bytes(duration.bytes_read)
            event = notified.get(location)
            seen_at = event.event_time if event is not None and event.event_time is not None else now
            parties = duration.parties.parties.value if duration.parties is not None else None
            copied = None
            if self.copier is not None:
                copier = self.copier
                copied = retry_transient(lambda: copier.copy(location, info.size), "recording.copy")
            return SeenObject(
                RecordingObject(
                    location,
                    info.size,
                    seen_at,
                    duration.seconds,
                    duration.source,
                    parties,
                    copy_location=copied.location if copied is not None else None,
                    copy_error=copied.error if copied is not None else None,
                ),
                info.etag,
            )

        found = bulk.run_all(self.io, one, locations)
        return {loc: obj for loc, obj in zip(locations, found, strict=True) if obj is not None}

    def _probe(self, locations: Sequence[str], now: datetime) -> dict[str, RecordingObject]:
        """Read the objects whose notification has not come (a replay, a lost notification)
        and write their object halves; the CTR halves exist, so no orphan marker."""
        seen = self._read_objects(locations, {}, now)
        if seen:
            self.joins.write(self.joins.object_requests([(obj, None) for obj in seen.values()], now))
        return {loc: obj.obj for loc, obj in seen.items()}

    def _load(self, contact_id: str) -> StoredContact | None:
        return retry_transient(lambda: self.contacts.load(contact_id), "contacts.load")

    def _finish(self, stored: StoredContact | None) -> None:
        """Complete a pending emission of the stored version (ours, or a crashed or stuck
        worker's): wait while another holder's claim is fresh, then take it over, read the
        stream back from the last attempt, and publish only if the record is not there."""
        waiting_since = self.monotonic()
        while stored is not None and stored.emission_pending:
            version = stored.version
            contact_id = stored.contact_id
            claim = retry_transient(
                lambda c=contact_id, v=version: self.contacts.claim_emission(  # type: ignore[misc]
                    c, v, self.owner, self.clock(), self.claim_lease_s
                ),
                "contacts.claim_emission",
            )
            step = after_claim(
                claim, now=self.monotonic(), waiting_since=waiting_since, lease_s=self.claim_lease_s
            )
            if step is Next.STOP:
                return
            if step is Next.GIVE_UP:
                raise RuntimeError(f"contact {contact_id}: emission claim never released")
            if step is Next.WAIT:
                self.sleep(BUSY_PAUSE_S)
                continue
            window = self._window(self.monotonic())
            now = self.clock()
            try:
                previous = retry_transient(
                    lambda c=contact_id, v=version, n=now: self.contacts.note_attempt(c, v, self.owner, n),  # type: ignore[misc]
                    "contacts.note_attempt",
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                stored = self._load(contact_id)  # the claim was taken over, or the version replaced
                continue
            try:
                if previous is not None and self._already_published(contact_id, version, previous):
                    retry_transient(
                        lambda c=contact_id, v=version: self.contacts.mark_emitted(c, v),  # type: ignore[misc]
                        "contacts.mark_emitted",
                    )
                    return
                self._publish(contact_id, stored.view, stored.imported_at, window)
                return
            except ClaimExpiring:
                self._wait_until_stale(window)
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

    def _window(self, claimed: float) -> PutWindow:
        return PutWindow(claimed, self.claim_lease_s, OUTPUT_PUT_MAX_S)

    def _wait_until_stale(self, window: PutWindow) -> None:
        """Our claim is about to lapse with the output stream unreachable: let it lapse, so
        that whoever takes over (possibly us) reads back after our last put could land."""
        self.sleep(window.until_stale(self.monotonic()))

    def _publish(
        self, contact_id: str, view: ContactView, imported_at: str | None, window: PutWindow
    ) -> None:
        """Put the view on the output stream and mark it emitted. The caller holds the claim:
        puts are only started inside its ``window``; past that :class:`ClaimExpiring` is
        raised and the claim is left to lapse before anyone (with a read-back) tries again."""
        version = view.version
        doc = view_doc(view, imported_at)
        doc["emission_id"] = emission_id(contact_id, version)
        eid = doc["emission_id"]
        pause = FIRST_PAUSE_S
        while True:
            if not window.may_put(self.monotonic()):
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
            self.sleep(window.pause(self.monotonic(), pause))
            pause = backoff(pause)
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


def _needs_reading(stored: RecordingObject | None, notified: ObjectCreated) -> bool:
    """Whether a notified object's header must be read: not seen yet, seen without its
    duration, or overwritten since (another size)."""
    if stored is None or stored.duration_seconds is None:
        return True
    return notified.size is not None and notified.size != stored.size


def _put_chunks(docs: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    chunks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for doc in docs:
        doc_size = len(doc.get("contact_id", "")) + 2_000  # a QM contact is about 1-2 KB
        if current and (len(current) >= PUT_RECORDS_MAX or size + doc_size > PUT_RECORDS_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(doc)
        size += doc_size
    if current:
        chunks.append(current)
    return chunks
