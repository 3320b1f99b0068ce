"""KCL checkpoints as data: ordering, where a replay moves them, who holds a lease. Pure.

A KCL 3.x lease item (one per shard, in the lease table named after the application)
carries ``checkpoint`` (a sequence number, or ``TRIM_HORIZON`` / ``LATEST`` /
``AT_TIMESTAMP`` / ``SHARD_END``) and ``checkpointSubSequenceNumber``. A worker that takes
the lease reads from ``AT_SEQUENCE_NUMBER`` of the checkpoint and drops every record whose
``(sequence number, sub-sequence number)`` is not greater than it (KCL ``ProcessTask``),
so the checkpoint means "everything up to and including this is done".

To re-read from the first record at or after an instant, the checkpoint becomes that
record's sequence number with sub-sequence number -1: the record itself (sub-sequence
0) is then greater and is processed again. (A lease cannot carry a timestamp: the KCL's
``AT_TIMESTAMP`` sentinel takes its instant from the application's configuration.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from processor.core.ctr import format_instant, parse_instant
from processor.core.schemas import SchemaViolation, validate

TRIM_HORIZON = "TRIM_HORIZON"
LATEST = "LATEST"
AT_TIMESTAMP = "AT_TIMESTAMP"
SHARD_END = "SHARD_END"
SENTINELS = frozenset({TRIM_HORIZON, LATEST, AT_TIMESTAMP, SHARD_END})
FILE_FORMAT = "qm-ingest/kcl-checkpoints/1"

# The KCL's own order of the sentinels (ExtendedSequenceNumber): below every sequence number.
_SENTINEL_RANK = {AT_TIMESTAMP: -3, TRIM_HORIZON: -2, LATEST: -1}


@dataclass(frozen=True, slots=True, order=False)
class Checkpoint:
    sequence_number: str
    sub_sequence_number: int = 0

    def __post_init__(self) -> None:
        if self.sequence_number not in SENTINELS and not (
            self.sequence_number.isascii() and self.sequence_number.isdigit()
        ):
            raise ValueError(f"not a sequence number or a KCL sentinel: {self.sequence_number!r}")

    @property
    def sentinel(self) -> bool:
        return self.sequence_number in SENTINELS

    def order_key(self) -> tuple[int, int, int]:
        """The KCL's comparison (``SHARD_END`` greatest, the other sentinels least)."""
        if self.sequence_number == SHARD_END:
            return (2, 0, 0)
        if self.sequence_number in _SENTINEL_RANK:
            return (0, _SENTINEL_RANK[self.sequence_number], 0)
        return (1, int(self.sequence_number), self.sub_sequence_number)

    def describe(self) -> str:
        if self.sentinel or self.sub_sequence_number == 0:
            return self.sequence_number
        return f"{self.sequence_number}/{self.sub_sequence_number}"

    @classmethod
    def before(cls, sequence_number: str) -> Checkpoint:
        """The checkpoint that makes the record ``sequence_number`` the next one read."""
        return cls(sequence_number, -1)


TRIM_HORIZON_CHECKPOINT = Checkpoint(TRIM_HORIZON)


@dataclass(frozen=True, slots=True)
class LeaseState:
    """One lease item as read (only what replay needs)."""

    shard_id: str
    checkpoint: Checkpoint
    owner: str | None
    counter: int
    checkpoint_owner: str | None = None  # set while a graceful hand-off is under way

    @property
    def finished(self) -> bool:
        return self.checkpoint.sequence_number == SHARD_END


def held(first: Mapping[str, LeaseState], second: Mapping[str, LeaseState]) -> dict[str, str]:
    """Leases held by a live worker: an owner is set and the counter moved between two
    reads taken at least one failover time apart (a live owner renews every third of
    it). Returns shard id -> owner."""
    out: dict[str, str] = {}
    for shard, later in second.items():
        earlier = first.get(shard)
        if later.owner is None:
            continue
        if earlier is None or earlier.counter != later.counter or earlier.owner != later.owner:
            out[shard] = later.owner
    return out


def replay_checkpoint(current: Checkpoint, target: Checkpoint | None) -> Checkpoint:
    """Where a replay moves a lease: back to ``target``, never forward past records the
    consumer has not processed yet. ``target`` None: nothing to re-read on that shard.

    ``LATEST`` (a lease that has not read anything and starts at the tip) and
    ``SHARD_END`` are after every record; ``TRIM_HORIZON`` and ``AT_TIMESTAMP`` (no
    record processed yet) before every record."""
    if target is None:
        return current
    if current.sequence_number in (LATEST, SHARD_END):
        return target
    if current.sequence_number in (TRIM_HORIZON, AT_TIMESTAMP):
        return current
    return target if target.order_key() < current.order_key() else current


# --- the saved-checkpoints file ----------------------------------------------------------------
@dataclass(frozen=True)
class SavedCheckpoints:
    """The checkpoints of every lease at one moment (what ``replay`` saves before moving
    anything, and what ``--from-checkpoints`` restores). ``schemas/kcl-checkpoints.schema.json``."""

    application: str
    stream: str
    saved_at: datetime
    leases: tuple[LeaseState, ...]
    note: str = ""

    def checkpoints(self) -> dict[str, Checkpoint]:
        return {lease.shard_id: lease.checkpoint for lease in self.leases}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FILE_FORMAT,
            "application": self.application,
            "stream": self.stream,
            "saved_at": format_instant(self.saved_at),
            "note": self.note,
            "leases": [
                {
                    "shard_id": lease.shard_id,
                    "checkpoint": lease.checkpoint.sequence_number,
                    "sub_sequence_number": lease.checkpoint.sub_sequence_number,
                    "owner": lease.owner,
                    "lease_counter": lease.counter,
                }
                for lease in sorted(self.leases, key=lambda lease: lease.shard_id)
            ],
        }

    @classmethod
    def from_dict(cls, doc: Any) -> SavedCheckpoints:
        try:
            validate("kcl-checkpoints", doc)
        except SchemaViolation as exc:
            raise ValueError(f"not a qm-ingest checkpoints file: {exc}") from None
        saved_at = parse_instant(doc["saved_at"], "saved_at")
        assert saved_at is not None
        return cls(
            application=doc["application"],
            stream=doc["stream"],
            saved_at=saved_at,
            note=doc.get("note", ""),
            leases=tuple(
                LeaseState(
                    shard_id=item["shard_id"],
                    checkpoint=Checkpoint(item["checkpoint"], item.get("sub_sequence_number", 0)),
                    owner=item.get("owner"),
                    counter=item.get("lease_counter", 0),
                )
                for item in doc["leases"]
            ),
        )


def select_shards(leases: Iterable[LeaseState], shards: Iterable[str] | None) -> list[LeaseState]:
    """The leases of ``shards`` (all when None); an unknown shard id is an error."""
    leases = list(leases)
    if not shards:
        return leases
    wanted = list(dict.fromkeys(shards))
    known = {lease.shard_id for lease in leases}
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise ValueError(f"no lease for shard(s) {', '.join(unknown)} (leases: {', '.join(sorted(known))})")
    return [lease for lease in leases if lease.shard_id in wanted]
