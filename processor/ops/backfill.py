"""The Firehose archive as a CTR source: backfill, follow mode and reconciliation.

Every path ends in the same CTR path as the stream (:class:`processor.app.ctr_path.CtrIngest`:
parse, tenant check, mapping, join, idempotent emission), so an object imported twice, or
a contact seen both in the archive and on the stream, adds nothing the second time.

* :class:`ArchiveImporter` imports one object: streams it (plain or gzip), splits it into
  CTRs (:mod:`processor.core.firehose`), feeds them in batches, quarantines corrupt bytes
  with the object key and byte offset, and marks the object done in the cursor only after
  all of that is durable. A crash in the middle redoes the object, which changes nothing
  already imported.
* :func:`run_backfill` imports the objects of a date range, skipping those the cursor
  has, with a progress bar (objects, records, MB, ETA).
* :class:`ArchiveEventConsumer` is follow mode: S3 notifications of new objects on an SQS
  queue, each message deleted once its object is imported.
* :func:`reconcile` compares the archive with the contacts table (gap report), and with
  ``fix`` imports what is missing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from botocore.exceptions import ClientError

from processor.adapters.aws import AwsClients, is_transient
from processor.adapters.dynamodb.contact_versions import imported_between, imported_versions
from processor.adapters.s3.archive import (
    ArchiveCursor,
    ArchiveObject,
    DynamoArchiveCursor,
    ObjectOutcome,
    head_object,
    list_archive,
    read_object,
)
from processor.adapters.sqs.consumer import ConsumerStats, SqsConsumer
from processor.app.ctr_path import Clock, CtrIngest, utc_now
from processor.core.archive_layout import HOUR, ArchiveLocation, object_hour
from processor.core.batch import BatchResult, StreamRecord
from processor.core.ctr import AcceptedInstances, parse_ctr
from processor.core.firehose import read_archive_object
from processor.core.reconcile import GapReport, NewestVersions, compare
from processor.core.s3_events import ObjectCreated, S3Notification, parse_notification
from processor.platform.exceptions import InvalidInput, SourcePosition
from processor.platform.fault_points import fault_point
from processor.platform.logs import get_logger
from processor.platform.retry import retry_transient
from processor.platform.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from processor.adapters.dynamodb.quarantine import Quarantine

log = get_logger("processor.archive")

BATCH_RECORDS = 500
BATCH_BYTES = 4 << 20
#: Firehose buffers records up to 15 minutes before it writes an object: a contact updated
#: near a range's edge may sit in the next hour's folder. Reconciliation reads this much more
#: on each side before calling an imported contact "extra".
EDGE_SLACK = timedelta(hours=1)

Progress = Callable[[int, int], None]  # (records handled, stored bytes read) since the last call


def looks_like_ctr(value: Any) -> bool:
    """Resynchronisation hint: a value with a ContactId is a record, not a nested object."""
    return isinstance(value, dict) and "ContactId" in value


@dataclass
class _Counting:
    """Stored bytes read so far (for progress and the ETA), chunk by chunk."""

    chunks: Iterable[bytes]
    read: int = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.read += len(chunk)
            yield chunk


class ArchiveImporter:
    """Imports Firehose objects through the CTR path; marks each done when durable."""

    def __init__(
        self,
        *,
        s3: S3Client,
        ingest: CtrIngest,
        cursor: ArchiveCursor,
        max_record_bytes: int,
        clock: Clock = utc_now,
        batch_records: int = BATCH_RECORDS,
    ) -> None:
        self._s3 = s3
        self._ingest = ingest
        self._cursor = cursor
        self._max = max_record_bytes
        self._clock = clock
        self._batch_records = batch_records

    @property
    def s3(self) -> S3Client:
        return self._s3

    def done(self, objects: Sequence[ArchiveObject]) -> set[str]:
        """Locations of ``objects`` the cursor has (same ETag)."""
        return retry_transient(lambda: self._cursor.done(objects), "cursor.done")

    def is_done(self, obj: ArchiveObject) -> bool:
        return obj.location in self.done([obj])

    def import_object(self, obj: ArchiveObject, progress: Progress | None = None) -> ObjectOutcome:
        """Every CTR of ``obj`` through the CTR path, corrupt bytes quarantined; then the
        cursor. Returns only when all of it is durable. Raises on a transient failure
        (the caller retries the whole object: what was imported is not imported again)."""
        stored = _Counting(read_object(self._s3, obj))
        total = BatchResult()
        batch: list[StreamRecord] = []
        size = 0
        reported_bytes = 0
        index = 0

        def flush() -> None:
            nonlocal size, reported_bytes
            if batch:
                result = self._ingest.process(batch)
                total.add(result)
                if progress:
                    progress(len(batch), stored.read - reported_bytes)
                    reported_bytes = stored.read
                batch.clear()
                size = 0
                fault_point("backfill_after_batch")

        for item in read_archive_object(stored, max_record_bytes=self._max, looks_like_record=looks_like_ctr):
            position = SourcePosition(
                source="s3",
                stream_or_queue=obj.bucket,
                object_key=obj.key,
                byte_offset=item.offset,
                index=index,
            )
            index += 1
            if item.problem is not None:
                flush()  # keep the quarantine in content order with the records around it
                error = InvalidInput(item.problem, item.detail, payload=item.data, position=position)
                self._ingest.reject(error, total)
                continue
            batch.append(StreamRecord(item.data, position))
            size += len(item.data)
            if len(batch) >= self._batch_records or size >= BATCH_BYTES:
                flush()
        flush()
        if progress and stored.read > reported_bytes:
            progress(0, stored.read - reported_bytes)
        outcome = ObjectOutcome(
            records=total.read,
            imported=total.imported,
            unchanged=total.unchanged,
            quarantined=total.quarantined,
        )
        now = self._clock()
        retry_transient(lambda: self._cursor.mark_done(obj, outcome, now), "cursor.mark_done")
        fault_point("backfill_after_object")
        log.info(
            "archive object imported",
            object_key=obj.key,
            bucket=obj.bucket,
            records=outcome.records,
            imported=outcome.imported,
            unchanged=outcome.unchanged,
            quarantined=outcome.quarantined,
        )
        return outcome

    def import_current(self, obj: ArchiveObject, progress: Progress | None = None) -> ObjectOutcome | None:
        """:meth:`import_object`, following an object replaced since it was listed (its
        ETag changed: the GET's precondition fails) to its current version."""
        for _ in range(5):
            try:
                return self.import_object(obj, progress)
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in ("PreconditionFailed", "412"):
                    raise
            current = self._head(obj)
            if current is None:
                log.warning("archive object deleted before it was read", object_key=obj.key)
                return None
            obj = ArchiveObject(current.bucket, current.key, current.size, current.etag, obj.hour)
            if self.is_done(obj):
                return ObjectOutcome()
        raise RuntimeError(f"{obj.url} keeps changing while it is read")

    def _head(self, obj: ArchiveObject) -> ArchiveObject | None:
        return retry_transient(lambda: head_object(self._s3, obj.bucket, obj.key), "s3.head_object")


# --- backfill ----------------------------------------------------------------------------------
@dataclass
class BackfillReport:
    objects: int = 0  # in the range
    skipped: int = 0  # already imported (cursor)
    imported_objects: int = 0
    failed_objects: list[str] = field(default_factory=list)
    records: int = 0
    imported: int = 0  # contacts created or updated
    unchanged: int = 0
    quarantined: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "skipped": self.skipped,
            "imported_objects": self.imported_objects,
            "failed_objects": self.failed_objects,
            "records": self.records,
            "imported": self.imported,
            "unchanged": self.unchanged,
            "quarantined": self.quarantined,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
        }


class BackfillProgress:
    """Objects, records, MB and ETA on stderr (a no-op when stderr is not a terminal)."""

    def __init__(self, total_objects: int, total_bytes: int, *, enabled: bool = True) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._lock = threading.Lock()
        self._progress = Progress(
            TextColumn("[bold]backfill"),
            BarColumn(),
            TextColumn("{task.fields[objects]}/{task.fields[object_total]} objects"),
            TextColumn("{task.fields[records]:,} records"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._task = self._progress.add_task(
            "backfill", total=max(total_bytes, 1), objects=0, records=0, object_total=total_objects
        )
        self._objects = 0
        self._records = 0

    def __enter__(self) -> BackfillProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def advance(self, records: int, stored_bytes: int) -> None:
        with self._lock:
            self._records += records
            self._progress.update(self._task, advance=stored_bytes, records=self._records)

    def object_done(self) -> None:
        with self._lock:
            self._objects += 1
            self._progress.update(self._task, objects=self._objects)


def run_backfill(
    importer: ArchiveImporter,
    objects: Sequence[ArchiveObject],
    *,
    parallel: int = 2,
    progress: bool = True,
    retry_seconds: float = 300.0,
) -> BackfillReport:
    """Import ``objects`` (skipping those already done), ``parallel`` at a time."""
    started = time.monotonic()
    report = BackfillReport(objects=len(objects))
    done = importer.done(objects)
    todo = [o for o in objects if o.location not in done]
    report.skipped = len(objects) - len(todo)
    lock = threading.Lock()
    with BackfillProgress(len(todo), sum(o.size for o in todo), enabled=progress) as bar:

        def one(obj: ArchiveObject) -> None:
            try:
                outcome = retry_transient(
                    lambda: importer.import_current(obj, bar.advance),
                    "archive.import",
                    max_seconds=retry_seconds,
                )
            except Exception as exc:
                log.error(
                    "archive object not imported",
                    object_key=obj.key,
                    bucket=obj.bucket,
                    error=type(exc).__name__,
                    transient=is_transient(exc),
                    detail=str(exc)[:300],
                )
                with lock:
                    report.failed_objects.append(obj.url)
                return
            with lock:
                report.imported_objects += 1
                report.bytes += obj.size
                if outcome is not None:
                    report.records += outcome.records
                    report.imported += outcome.imported
                    report.unchanged += outcome.unchanged
                    report.quarantined += outcome.quarantined
            bar.object_done()

        if parallel <= 1:
            for obj in todo:
                one(obj)
        else:
            with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="backfill") as pool:
                list(pool.map(one, todo))
    report.seconds = time.monotonic() - started
    return report


# --- follow mode -------------------------------------------------------------------------------
def archive_key_filter(prefix: str) -> Callable[[str], bool]:
    """Keys of Firehose objects below ``prefix`` (in the YYYY/MM/DD/HH/ layout)."""
    return lambda key: object_hour(prefix, key) is not None


@dataclass
class ArchiveConsumerStats(ConsumerStats):
    objects: int = 0
    skipped: int = 0
    ignored_keys: int = 0


@dataclass
class ArchiveEventConsumer(SqsConsumer[S3Notification]):
    """Follow mode: S3 ObjectCreated notifications of new Firehose objects, from SQS.

    A message is deleted only after every object it names is imported (or was already:
    S3 may notify twice); a transient failure leaves it for redelivery (and the
    dead-letter queue after the redrive limit). A body that is not an S3 notification, or
    that names an object in another bucket than ``bucket`` (the archive bucket: a
    notification is untrusted, and the service role reads other buckets too), is
    quarantined, dead-lettered and deleted, and nothing it names is read."""

    sqs: SQSClient
    queue_url: str
    dlq_url: str | None
    queue_name: str
    importer: ArchiveImporter
    quarantine: Quarantine
    prefix: str
    bucket: str
    clock: Clock = utc_now
    wait_seconds: int = 5  # long poll; short enough for SIGTERM to stop within 10 s
    stats: ArchiveConsumerStats = field(default_factory=ArchiveConsumerStats)
    label: ClassVar[str] = "archive"
    noun: ClassVar[str] = "archive notification"

    def parse(self, body: str) -> S3Notification:
        notification = parse_notification(body, accept=archive_key_filter(self.prefix))
        foreign = sorted({o.bucket for o in notification.objects if o.bucket != self.bucket})
        if foreign:
            detail = f"names bucket {foreign[0][:63]!r}, not the archive bucket {self.bucket!r}"
            raise InvalidInput("foreign_bucket", detail)
        self.stats.ignored_keys += notification.ignored
        return notification

    def apply(self, parsed: S3Notification, message: dict[str, Any]) -> None:
        for created in parsed.objects:
            self._import(created)

    def _import(self, created: ObjectCreated) -> None:
        obj = head_object(self.importer.s3, created.bucket, created.key)
        if obj is None:
            log.warning("archive object gone before it was read", object_key=created.key)
            return
        obj = ArchiveObject(obj.bucket, obj.key, obj.size, obj.etag, object_hour(self.prefix, obj.key))
        if self.importer.is_done(obj):
            self.stats.skipped += 1
            return
        self.importer.import_current(obj)
        self.stats.objects += 1


def archive_followers(settings: Settings, aws: AwsClients, stop: threading.Event) -> list[threading.Thread]:
    """Follow mode's threads for ``qm-ingest run`` (QM_CTR_SOURCE=firehose-s3): each receives
    notifications from QM_ARCHIVE_QUEUE and imports the objects, until ``stop``."""
    from processor.app.wiring import build_ingest, build_quarantine
    from processor.core.archive_layout import folder

    sqs = aws.sqs
    queue_url = sqs.get_queue_url(QueueName=settings.archive_queue)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=f"{settings.archive_queue}-dlq")["QueueUrl"]

    def follow(consumer: ArchiveEventConsumer, ingest: CtrIngest) -> None:
        try:
            consumer.run(stop)
        finally:
            ingest.close()

    threads = []
    for index in range(settings.archive_consumers):
        ingest = build_ingest(settings, aws)
        consumer = ArchiveEventConsumer(
            sqs=sqs,
            queue_url=queue_url,
            dlq_url=dlq_url,
            queue_name=settings.archive_queue,
            importer=build_importer(settings, aws, ingest),
            quarantine=build_quarantine(settings, aws),
            prefix=folder(settings.archive_prefix),
            bucket=settings.archive_bucket,
        )
        threads.append(
            threading.Thread(target=follow, args=(consumer, ingest), name=f"archive-{index}", daemon=True)
        )
    log.info("following the Firehose archive", bucket=settings.archive_bucket, queue=settings.archive_queue)
    return threads


# --- reconciliation ----------------------------------------------------------------------------
@dataclass
class ArchiveScan:
    """The newest version of each contact in a set of archive objects, and where it is."""

    newest: NewestVersions = field(default_factory=NewestVersions)
    objects_of: dict[str, ArchiveObject] = field(default_factory=dict)  # contact id -> object
    records: int = 0
    bytes: int = 0


def scan_archive(
    s3: S3Client,
    objects: Iterable[ArchiveObject],
    *,
    max_record_bytes: int,
    instance_arn: AcceptedInstances | str | None,
    progress: Progress | None = None,
) -> ArchiveScan:
    """Read ``objects`` (no writes) and keep the newest version of each contact."""
    from processor.core.ctr import check_instance

    scan = ArchiveScan()
    for obj in objects:
        stored = _Counting(read_object(s3, obj))
        count = 0
        for item in read_archive_object(
            stored, max_record_bytes=max_record_bytes, looks_like_record=looks_like_ctr
        ):
            count += 1
            if item.problem is not None:
                scan.newest.unreadable += 1
                continue
            try:
                record = parse_ctr(item.data, max_bytes=max_record_bytes)
                check_instance(record, instance_arn)
            except InvalidInput:
                scan.newest.unreadable += 1
                continue
            before = scan.newest.versions.get(record.contact_id)
            scan.newest.add(record.contact_id, record.version, f"{obj.url} @ byte {item.offset}")
            if scan.newest.versions[record.contact_id] is not before:
                scan.objects_of[record.contact_id] = obj
        scan.records += count
        scan.bytes += stored.read
        if progress:
            progress(count, stored.read)
    return scan


@dataclass
class ReconcileResult:
    report: GapReport
    objects: int
    records: int
    fixed: BackfillReport | None = None


def reconcile(
    settings: Settings,
    aws: AwsClients,
    location: ArchiveLocation,
    since: datetime,
    until: datetime,
    *,
    fix: bool = False,
    progress: bool = True,
    importer: ArchiveImporter | None = None,
) -> ReconcileResult:
    """Gap report between the archive's ``[since, until)`` and the contacts table; with
    ``fix``, the objects holding missing or stale contacts are imported again."""
    s3 = aws.s3
    objects = list_archive(s3, location.bucket, location.prefix, since, until)
    around = [
        o
        for o in list_archive(s3, location.bucket, location.prefix, since - EDGE_SLACK, until + EDGE_SLACK)
        if o.location not in {x.location for x in objects}
    ]
    with BackfillProgress(
        len(objects) + len(around), sum(o.size for o in objects + around), enabled=progress
    ) as bar:

        def step(records: int, stored: int) -> None:
            bar.advance(records, stored)
            bar.object_done()

        from processor.app.wiring import instances_now

        accepted = instances_now(settings, aws)
        scan = scan_archive(
            s3,
            objects,
            max_record_bytes=settings.max_record_bytes,
            instance_arn=accepted,
            progress=step,
        )
        edges = scan_archive(
            s3,
            around,
            max_record_bytes=settings.max_record_bytes,
            instance_arn=accepted,
            progress=step,
        )
    ddb = aws.dynamodb
    source = scan.newest.versions
    report = compare(
        source,
        imported_versions(ddb, settings.contacts_table, source),
        imported_in_range=imported_between(ddb, settings.contacts_table, since, until),
        seen_anywhere=set(edges.newest.versions),
        unreadable=scan.newest.unreadable,
    )
    result = ReconcileResult(report, len(objects), scan.records)
    if fix and report.gaps:
        need = {v.contact_id for v in report.missing} | {v.contact_id for v, _ in report.stale}
        targets = {scan.objects_of[cid].location: scan.objects_of[cid] for cid in need}
        assert importer is not None, "reconcile --fix needs an importer"
        result.fixed = BackfillReport(objects=len(targets))
        for obj in sorted(targets.values(), key=_delivery_order):
            outcome = _import_retrying(importer, obj)
            result.fixed.imported_objects += 1
            if outcome is not None:
                result.fixed.records += outcome.records
                result.fixed.imported += outcome.imported
                result.fixed.unchanged += outcome.unchanged
                result.fixed.quarantined += outcome.quarantined
    return result


def _delivery_order(obj: ArchiveObject) -> tuple[datetime, str]:
    return (obj.hour or datetime.min.replace(tzinfo=UTC), obj.key)


def _import_retrying(importer: ArchiveImporter, obj: ArchiveObject) -> ObjectOutcome | None:
    return retry_transient(lambda: importer.import_current(obj), "archive.import", max_seconds=300)


# --- wiring --------------------------------------------------------------------------------------
def build_importer(settings: Settings, aws: AwsClients, ingest: CtrIngest) -> ArchiveImporter:
    return ArchiveImporter(
        s3=aws.s3,
        ingest=ingest,
        cursor=DynamoArchiveCursor(aws.dynamodb, settings.archive_cursor_table),
        max_record_bytes=settings.max_record_bytes,
    )


def default_until(now: datetime) -> datetime:
    """An open range ends with the current hour folder (Firehose may still be writing it)."""
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + HOUR
