"""A batch of source records, and what became of it. Pure data.

Every source (the KCL, a replayed shard, an archive object, a file, the quarantine) hands the
application :class:`StreamRecord` values; every consumer answers with a :class:`BatchResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from processor.platform.exceptions import SourcePosition


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One record as delivered by a source (Kinesis via the KCL, a file, S3)."""

    data: bytes
    position: SourcePosition


@dataclass
class BatchResult:
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def imported(self) -> int:
        return self.created + self.updated

    def count_quarantined(self, reason: str) -> None:
        self.quarantined += 1
        self.quarantined_by_reason[reason] = self.quarantined_by_reason.get(reason, 0) + 1

    def add(self, other: BatchResult) -> None:
        """Add another batch's counts to these (a backfill's or a replay's running total)."""
        self.read += other.read
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.quarantined += other.quarantined
        for reason, count in other.quarantined_by_reason.items():
            self.quarantined_by_reason[reason] = self.quarantined_by_reason.get(reason, 0) + count
