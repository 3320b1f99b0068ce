"""Ports the application owns: what the stream services need of the outside, as Protocols.

Each has an emulator-backed adapter under :mod:`processor.adapters` and an in-memory one in
:mod:`processor.adapters.memory`; ``tests/contract/test_ports.py`` holds both to one contract.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from processor.core.user_directory import QmUser


class OutputPort(Protocol):
    """The output stream: every final QM contact version, exactly once (with the emission
    protocol of :mod:`processor.core.emission`). Kinesis has no idempotent put, so the
    protocol needs to ask what arrived."""

    def publish(self, doc: dict[str, Any]) -> str:
        """Put one record (partition key: its ``contact_id``); its sequence number."""
        ...

    def put_many(self, docs: Sequence[dict[str, Any]]) -> list[bool]:
        """Put records together; True for each the stream took, False for each it refused
        (known not to be there). An exception means the answer is unknown."""
        ...

    def find(self, wanted: Mapping[str, str], since: datetime, timeout_s: float = 30.0) -> set[str]:
        """Which of ``wanted`` (emission id -> contact id) arrived since ``since``.
        :class:`TimeoutError` when that could not be read to the end: "not found" means absent."""
        ...

    def contains(self, contact_id: str, emission: str, since: datetime, timeout_s: float = 30.0) -> bool:
        """Whether ``emission`` of ``contact_id`` arrived since ``since`` (as :meth:`find`)."""
        ...

    def records(self, *, timeout_s: float = 120.0) -> Iterator[dict[str, Any]]:
        """Every record on the stream, each contact's in the order they arrived."""
        ...


class UserDirectory(Protocol):
    """QM users by username (= ACD ID): the first and last name a contact gets."""

    def get_many(self, usernames: Iterable[str]) -> dict[str, QmUser]:
        """The known users among ``usernames`` (unknown ones are absent)."""
        ...
