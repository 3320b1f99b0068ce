"""``qm-ingest replay``: process the CTR stream again from an earlier position.

Two ways, both ending in the idempotent CTR path (a replay adds no contact and no output
record for what is already imported; after the contacts table was lost it restores it):

* **Lease mode** (default): the KCL application's checkpoints are moved back in its lease
  table, so the consumer (``qm-ingest run``) re-reads from there. Before anything moves,
  every lease's checkpoint is saved to a file (``--from-checkpoints FILE`` puts them back).
  A checkpoint only moves back, never past records the consumer has not processed. Leases
  held by live workers (an owner whose lease counter moves within the failover time) are
  not touched unless ``--stop-workers`` (stop this host's workers first: they checkpoint
  and release their leases) or ``--force`` (move them under the running workers: each
  loses its lease at its next renewal and the lease is reassigned from the new
  checkpoint; records in flight are processed twice, which emission absorbs).
* **Direct** (``--direct``): this process reads the shards itself and imports what it
  reads; the consumer and its checkpoints are left alone. For a one-off re-import.

``--dry-run`` reads the stream from the replay position, writes nothing, and prints
what would change (the gap report of :mod:`processor.core.reconcile`) and where each
checkpoint would move.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from processor.adapters.aws import AwsClients
from processor.adapters.dynamodb.contact_versions import imported_between, imported_versions
from processor.adapters.dynamodb.leases import KclLeaseTable
from processor.adapters.kcl.supervisor import local_workers, stop_local_workers
from processor.adapters.kinesis.stream_reader import (
    Page,
    ShardReader,
    StartAt,
    first_sequence_at,
    list_shard_ids,
    read_ahead,
    start_after,
)
from processor.app.ctr_path import CtrIngest
from processor.app.ports import LeaseTable
from processor.core.batch import BatchResult, StreamRecord
from processor.core.checkpoints import (
    SHARD_END,
    TRIM_HORIZON_CHECKPOINT,
    Checkpoint,
    LeaseState,
    SavedCheckpoints,
    held,
    replay_checkpoint,
    select_shards,
)
from processor.core.ctr import AcceptedInstances, check_instance, parse_ctr
from processor.core.reconcile import GapReport, NewestVersions, compare
from processor.platform.exceptions import InvalidInput, ReplayRefused, SourcePosition
from processor.platform.logs import get_logger
from processor.platform.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

log = get_logger("processor.ops.replay")

#: How long a CTR may take from its LastUpdateTimestamp to the stream: an imported contact
#: updated this close to the end of what was read may simply not have been read yet.
DELIVERY_SLACK = timedelta(minutes=15)
MOVE_ATTEMPTS = 20


@dataclass(frozen=True)
class ReplayFrom:
    """Where to replay from: the stream's start, an instant, or saved checkpoints."""

    trim_horizon: bool = False
    timestamp: datetime | None = None
    saved: SavedCheckpoints | None = None

    def describe(self) -> str:
        if self.trim_horizon:
            return "TRIM_HORIZON"
        if self.timestamp is not None:
            return f"timestamp {self.timestamp.isoformat()}"
        assert self.saved is not None
        return f"checkpoints saved at {self.saved.saved_at.isoformat()}"


@dataclass(frozen=True)
class ShardPlan:
    shard_id: str
    current: Checkpoint
    target: Checkpoint
    owner: str | None

    @property
    def moves(self) -> bool:
        return self.current != self.target


# --- progress ------------------------------------------------------------------------------------
class ShardProgress:
    """Records, MB and lag per shard on stderr (a no-op when stderr is not a terminal)."""

    def __init__(self, shards: Sequence[str], *, enabled: bool, title: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._lock = threading.Lock()
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn(f"[bold]{title}[/] {{task.description}}"),
            BarColumn(),
            TextColumn("{task.fields[records]:>10,} records"),
            TextColumn("{task.fields[mb]:>9.2f} MB"),
            TextColumn("lag {task.fields[lag]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._tasks = {
            shard: self._progress.add_task(shard, total=None, records=0, mb=0.0, lag="?") for shard in shards
        }
        self.records: dict[str, int] = dict.fromkeys(shards, 0)
        self.bytes: dict[str, int] = dict.fromkeys(shards, 0)

    def __enter__(self) -> ShardProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(
        self,
        shard: str,
        *,
        records: int = 0,
        size: int = 0,
        lag_ms: float | None = None,
        fraction: float | None = None,
        done: bool = False,
    ) -> None:
        with self._lock:
            self.records[shard] += records
            self.bytes[shard] += size
            fields: dict[str, Any] = {"records": self.records[shard], "mb": self.bytes[shard] / 1e6}
            if lag_ms is not None:
                fields["lag"] = _human_ms(lag_ms)
            task = self._tasks[shard]
            if done:
                self._progress.update(task, total=1, completed=1, **fields)
            elif fraction is not None:
                self._progress.update(
                    task, total=1000, completed=round(1000 * min(1.0, max(0.0, fraction))), **fields
                )
            else:
                self._progress.update(task, **fields)


def _human_ms(ms: float) -> str:
    seconds = ms / 1000
    if seconds < 1:
        return "0s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


# --- reading the stream --------------------------------------------------------------------------
def direct_starts(
    kinesis: KinesisClient, stream: str, frm: ReplayFrom, shards: Sequence[str] | None
) -> dict[str, StartAt | None]:
    """Where to read each shard from (None: nothing to read on it)."""
    ids = list_shard_ids(kinesis, stream)
    if shards:
        unknown = [s for s in shards if s not in ids]
        if unknown:
            raise ValueError(f"stream {stream} has no shard {', '.join(unknown)} (shards: {', '.join(ids)})")
        ids = [s for s in ids if s in shards]
    starts: dict[str, StartAt | None] = {}
    for shard in ids:
        if frm.trim_horizon:
            starts[shard] = StartAt("TRIM_HORIZON")
        elif frm.timestamp is not None:
            starts[shard] = StartAt("AT_TIMESTAMP", timestamp=frm.timestamp)
        else:
            assert frm.saved is not None
            checkpoint = frm.saved.checkpoints().get(shard)
            starts[shard] = start_after(checkpoint) if checkpoint is not None else StartAt("TRIM_HORIZON")
    return starts


def _lag_ms(page: Page) -> float:
    return float(page.millis_behind)


def _records(page: Page, stream: str, shard: str) -> list[StreamRecord]:
    return [
        StreamRecord(
            bytes(r["Data"]),
            SourcePosition(
                source="kinesis", stream_or_queue=stream, shard_id=shard, sequence_number=r["SequenceNumber"]
            ),
        )
        for r in page.records
    ]


@dataclass
class DirectReport:
    shards: dict[str, BatchResult] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0
    gaps: GapReport | None = None  # dry run

    @property
    def records(self) -> int:
        return sum(r.read for r in self.shards.values())

    @property
    def created(self) -> int:
        return sum(r.created for r in self.shards.values())

    @property
    def updated(self) -> int:
        return sum(r.updated for r in self.shards.values())

    @property
    def unchanged(self) -> int:
        return sum(r.unchanged for r in self.shards.values())

    @property
    def quarantined(self) -> int:
        return sum(r.quarantined for r in self.shards.values())


def replay_direct(
    settings: Settings,
    aws: AwsClients,
    frm: ReplayFrom,
    *,
    shards: Sequence[str] | None = None,
    ingest: CtrIngest | Callable[[], CtrIngest] | None = None,
    dry_run: bool = False,
    progress: bool = True,
    min_interval: float | None = None,
) -> DirectReport:
    """Read each shard from the replay position to its tip here, one thread per shard, the
    next page read while the current one is imported; import what is read (``ingest``: one
    for all shards, or a factory for one CTR path per shard, with its own pools), or with
    ``dry_run`` only compare it with the contacts table."""
    kinesis = aws.kinesis
    stream = settings.ctr_stream
    starts = {s: a for s, a in direct_starts(kinesis, stream, frm, shards).items() if a is not None}
    report = DirectReport(shards={s: BatchResult() for s in starts})
    newest = NewestVersions()
    arrivals: list[datetime] = []
    lock = threading.Lock()
    started = time.monotonic()
    extra: dict[str, Any] = {} if min_interval is None else {"min_interval": min_interval}
    accepted: AcceptedInstances | None = None
    if dry_run:
        from processor.app.wiring import instances_now

        accepted = instances_now(settings, aws)
    with ShardProgress(list(starts), enabled=progress, title="replay") as bar:

        def one(shard: str) -> None:
            reader = ShardReader(kinesis, stream, shard, starts[shard], **extra)
            total = report.shards[shard]
            first_lag: float | None = None
            own = ingest() if ingest is not None and not isinstance(ingest, CtrIngest) else None
            shard_ingest = own if own is not None else ingest
            try:
                for page in read_ahead(reader.pages()):
                    # Progress: how much of the lag at the start has been read since.
                    first_lag = first_lag or float(page.millis_behind) or None
                    fraction = 1 - page.millis_behind / first_lag if first_lag else None
                    if page.records:
                        if dry_run:
                            _collect(page, shard, newest, settings, accepted=accepted, lock=lock)
                            with lock:
                                arrivals.append(page.records[0]["ApproximateArrivalTimestamp"])
                                arrivals.append(page.records[-1]["ApproximateArrivalTimestamp"])
                            total.read += len(page.records)
                        else:
                            assert isinstance(shard_ingest, CtrIngest)
                            total.add(shard_ingest.process(_records(page, stream, shard)))
                        with lock:
                            report.bytes += page.bytes
                    bar.update(
                        shard,
                        records=len(page.records),
                        size=page.bytes,
                        lag_ms=_lag_ms(page),
                        fraction=fraction,
                    )
            finally:
                if own is not None:
                    own.close()
            bar.update(shard, done=True, lag_ms=0)

        with ThreadPoolExecutor(max_workers=max(1, len(starts)), thread_name_prefix="replay") as pool:
            list(pool.map(one, starts))
    report.seconds = time.monotonic() - started
    if dry_run:
        report.gaps = stream_gaps(settings, aws, newest, arrivals)
    return report


def _collect(
    page: Page,
    shard: str,
    newest: NewestVersions,
    settings: Settings,
    *,
    accepted: AcceptedInstances | None,
    lock: threading.Lock,
) -> None:
    for record in page.records:
        try:
            ctr = parse_ctr(bytes(record["Data"]), max_bytes=settings.max_record_bytes)
            check_instance(ctr, accepted)
        except InvalidInput:
            with lock:
                newest.unreadable += 1
            continue
        with lock:
            newest.add(ctr.contact_id, ctr.version, f"{shard} @ {record['SequenceNumber']}")


def stream_gaps(
    settings: Settings, aws: AwsClients, newest: NewestVersions, arrivals: list[datetime]
) -> GapReport:
    """The gap report of what was read from the stream against the contacts table."""
    ddb = aws.dynamodb
    in_range: list[tuple[str, str]] = []
    if arrivals:
        since = min(arrivals).astimezone(UTC)
        until = max(arrivals).astimezone(UTC) - DELIVERY_SLACK
        if until > since:
            in_range = imported_between(ddb, settings.contacts_table, since, until)
    return compare(
        newest.versions,
        imported_versions(ddb, settings.contacts_table, newest.versions),
        imported_in_range=in_range,
        unreadable=newest.unreadable,
    )


# --- lease mode -------------------------------------------------------------------------------
def plan_moves(
    leases: Sequence[LeaseState], frm: ReplayFrom, kinesis: KinesisClient, stream: str
) -> list[ShardPlan]:
    """Where each lease's checkpoint goes."""
    plans = []
    saved = frm.saved.checkpoints() if frm.saved else {}
    for lease in sorted(leases, key=lambda x: x.shard_id):
        plans.append(
            ShardPlan(
                lease.shard_id, lease.checkpoint, _goal(lease, frm, saved, kinesis, stream), lease.owner
            )
        )
    return plans


def _goal(
    lease: LeaseState, frm: ReplayFrom, saved: dict[str, Checkpoint], kinesis: KinesisClient, stream: str
) -> Checkpoint:
    if frm.saved is not None:
        # Restoring is exactly what was saved (forward too: the operator undoes a replay).
        return saved.get(lease.shard_id, lease.checkpoint)
    if frm.trim_horizon:
        return replay_checkpoint(lease.checkpoint, TRIM_HORIZON_CHECKPOINT)
    assert frm.timestamp is not None
    first = first_sequence_at(kinesis, stream, lease.shard_id, frm.timestamp)
    return replay_checkpoint(lease.checkpoint, Checkpoint.before(first) if first else None)


def save_checkpoints(path: Path, saved: SavedCheckpoints) -> None:
    """Write the file and fsync it before anything moves (it is the way back)."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(orjson.dumps(saved.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)


def load_checkpoints(path: Path) -> SavedCheckpoints:
    try:
        doc = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    return SavedCheckpoints.from_dict(doc)


def default_save_path(settings: Settings, now: datetime) -> Path:
    return Path(settings.state_dir) / "checkpoints" / f"{settings.application_name}-{now:%Y%m%dT%H%M%SZ}.json"


def observe_holders(
    table: LeaseTable, first: dict[str, LeaseState], wait_s: float, sleep: Callable[[float], None]
) -> dict[str, str]:
    """Leases held by live workers: read again after ``wait_s`` and compare."""
    if not any(lease.owner for lease in first.values()):
        return {}
    sleep(wait_s)
    return held(first, table.read())


@dataclass
class LeaseReplay:
    saved_to: Path | None
    plans: list[ShardPlan]
    moved: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    held_by: dict[str, str] = field(default_factory=dict)
    stopped: list[int] = field(default_factory=list)
    forced: bool = False
    gaps: GapReport | None = None


def refusal(held_by: dict[str, str], application: str) -> str:
    owners = sorted(set(held_by.values()))
    return (
        f"{len(held_by)} lease(s) of {application} are held by running workers ({', '.join(owners)}): "
        "their checkpoints were not moved. Either stop those workers and run replay again; or "
        "--stop-workers: stop this host's workers of the application (SIGTERM: they checkpoint and "
        "release their leases), move the checkpoints, then start them again yourself; or --force: "
        "move the checkpoints under the running workers (each loses its lease at its next renewal and "
        "the lease is reassigned from the new checkpoint; records in flight are processed twice, "
        "which changes nothing)."
    )


def replay_leases(
    settings: Settings,
    aws: AwsClients,
    frm: ReplayFrom,
    *,
    shards: Sequence[str] | None = None,
    stop_workers: bool = False,
    force: bool = False,
    save_to: Path | None = None,
    dry_run: bool = False,
    now: datetime,
    sleep: Callable[[float], None] = time.sleep,
) -> LeaseReplay:
    """Move the lease checkpoints (see the module). Raises :class:`ReplayRefused` when
    live workers hold leases and neither ``stop_workers`` nor ``force`` is given."""
    table = KclLeaseTable(aws.dynamodb, settings.application_name)
    if not table.exists():
        raise ReplayRefused(
            f"no lease table {settings.application_name}: the KCL application has never run. "
            "`qm-ingest run` reads from QM_INITIAL_POSITION at its first start; use --direct to import now."
        )
    leases = table.read()
    if not leases:
        raise ReplayRefused(f"lease table {settings.application_name} has no shard leases yet")
    try:
        selected = select_shards(leases.values(), shards)
    except ValueError as exc:
        raise ReplayRefused(str(exc)) from None
    if frm.saved is not None and frm.saved.application != settings.application_name:
        raise ReplayRefused(
            f"the checkpoints file is for application {frm.saved.application}, "
            f"not {settings.application_name} (QM_APPLICATION_NAME)"
        )
    plans = plan_moves(selected, frm, aws.kinesis, settings.ctr_stream)
    result = LeaseReplay(saved_to=None, plans=plans, forced=force)
    if dry_run:
        return result
    # The way back first: every lease, as it is now.
    path = save_to or default_save_path(settings, now)
    save_checkpoints(
        path,
        SavedCheckpoints(
            application=settings.application_name,
            stream=settings.ctr_stream,
            saved_at=now,
            leases=tuple(leases.values()),
            note=f"before replay from {frm.describe()}",
        ),
    )
    result.saved_to = path
    moving = [p for p in plans if p.moves]
    if not moving:
        return result
    wait_s = settings.kcl_failover_ms / 1000 + 1
    holders = observe_holders(table, leases, wait_s, sleep)
    holders = {s: o for s, o in holders.items() if s in {p.shard_id for p in moving}}
    if holders and stop_workers:
        workers = local_workers(Path(settings.state_dir), settings.application_name)
        left = stop_local_workers(workers)
        result.stopped = [w.pid for w in workers if w not in left]
        log.info("stopped local workers before replay", pids=result.stopped, still_running=len(left))
        holders = {
            s: o for s, o in observe_holders(table, table.read(), wait_s, sleep).items() if s in holders
        }
    result.held_by = holders
    if holders and not force:
        stopped = (
            f"stopped this host's worker(s) (pids {', '.join(map(str, result.stopped))}: start them again), "
            "but "
            if result.stopped
            else ""
        )
        raise ReplayRefused(stopped + refusal(holders, settings.application_name))
    for plan in moving:
        if _move(table, plan, frm):
            result.moved.append(plan.shard_id)
        else:
            result.failed.append(plan.shard_id)
    log.info(
        "checkpoints moved",
        application=settings.application_name,
        moved=result.moved,
        failed=result.failed,
        forced=bool(holders),
        saved_to=str(path),
    )
    return result


def _move(table: LeaseTable, plan: ShardPlan, frm: ReplayFrom) -> bool:
    """Conditional write, re-read on a conflict (a renewal, a checkpoint, a hand-off)."""
    target = plan.target
    for attempt in range(MOVE_ATTEMPTS):
        lease = table.read().get(plan.shard_id)
        if lease is None:
            log.warning("lease disappeared before its checkpoint moved", shard_id=plan.shard_id)
            return False
        if lease.checkpoint_owner is None:
            if frm.saved is None:
                # Relative to what the consumer has reached by now, still never forward.
                goal = TRIM_HORIZON_CHECKPOINT if frm.trim_horizon else plan.target
                target = replay_checkpoint(lease.checkpoint, goal)
            if table.move(lease, target):
                return True
        time.sleep(min(0.1 * 2**attempt, 2.0))
    return False


# --- following the consumer -----------------------------------------------------------------------
@dataclass
class _Follower:
    """Counts the records the consumer has checkpointed since the replay, for one shard:
    reads the range again behind the consumer, never past its checkpoint."""

    shard: str
    pages: Iterator[Page]
    pending: list[dict[str, Any]] = field(default_factory=list)
    exhausted: bool = False
    counted_arrival: datetime | None = None

    def advance(self, checkpoint: Checkpoint) -> tuple[int, int]:
        records = size = 0
        reached = checkpoint.order_key()
        while True:
            while self.pending:
                first = self.pending[0]
                if Checkpoint(first["SequenceNumber"]).order_key() > reached:
                    return records, size
                self.pending.pop(0)
                records += 1
                size += len(first["Data"])
                self.counted_arrival = first["ApproximateArrivalTimestamp"]
            if self.exhausted:
                return records, size
            try:
                page = next(self.pages)
            except StopIteration:
                self.exhausted = True
                return records, size
            self.pending = list(page.records)


def follow_consumer(
    settings: Settings,
    aws: AwsClients,
    replay: LeaseReplay,
    *,
    timeout_s: float,
    progress: bool = True,
    poll_s: float = 2.0,
) -> dict[str, bool]:
    """Show the consumer re-reading (records, MB, lag per shard) until every moved lease is
    back where it was before the replay, or ``timeout_s``. Returns shard -> caught up."""
    table = KclLeaseTable(aws.dynamodb, settings.application_name)
    before = {p.shard_id: p.current for p in replay.plans}
    targets = {p.shard_id: p.target for p in replay.plans}
    moved = list(replay.moved)
    followers: dict[str, _Follower] = {}
    for shard in moved:
        start = start_after(targets[shard])
        if start is None:  # restored to LATEST or SHARD_END: nothing to re-read
            followers[shard] = _Follower(shard, iter(()), exhausted=True)
            continue
        reader = ShardReader(aws.kinesis, settings.ctr_stream, shard, start, limit=1000)
        followers[shard] = _Follower(shard, reader.pages())
    done = dict.fromkeys(moved, False)
    deadline = time.monotonic() + timeout_s
    with ShardProgress(moved, enabled=progress, title="re-reading") as bar:
        while not all(done.values()) and time.monotonic() < deadline:
            leases = table.read()
            for shard in moved:
                if done[shard]:
                    continue
                lease = leases.get(shard)
                if lease is None:
                    done[shard] = True  # cleaned up after the shard ended: fully read
                    continue
                follower = followers[shard]
                records, size = follower.advance(lease.checkpoint)
                lag = None
                if follower.counted_arrival is not None:
                    lag = max(0.0, (datetime.now(UTC) - follower.counted_arrival).total_seconds() * 1000)
                back = _caught_up(lease.checkpoint, before[shard], targets[shard])
                done[shard] = back
                bar.update(shard, records=records, size=size, lag_ms=lag, done=back)
            if not all(done.values()):
                time.sleep(poll_s)
    return done


def _caught_up(now: Checkpoint, before: Checkpoint, target: Checkpoint) -> bool:
    """The consumer's checkpoint is back at (or past) where it was before the replay."""
    if now.sequence_number == SHARD_END:
        return True
    if before.sentinel:
        return not now.sentinel and now != target
    return now.order_key() >= before.order_key()
