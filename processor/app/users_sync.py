"""QM users from Amazon Connect, and the names they bring to contacts already imported.

Every path that creates or renames a user (``users import``, ``users sync``, the console's
import and "Sync now", the scheduled sync) ends here, so that an agent's contacts imported
before her QM user existed, or under her old name, get the names: a new revision of each
such contact, emitted once (the join's ``refresh_agent``). A user whose names did not
change costs nothing more than the sync's own write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from processor.adapters.aws import AwsClients
from processor.adapters.connect.user_listing import (
    BotoConnectUsers,
    ConnectUserSource,
    SyncStateStore,
    instance_id_from_arn,
    sync_users,
)
from processor.adapters.dynamodb.runtime_config import RuntimeConfigStore
from processor.adapters.dynamodb.users_table import DynamoUserAdmin
from processor.core.connect_users import SyncOutcome
from processor.platform.logs import get_logger
from processor.platform.settings import Settings

if TYPE_CHECKING:
    from processor.app.joiner import Joiner

log = get_logger("processor.users")

Namer = Callable[[Iterable[str]], int]


class ContactNamer:
    """Gives the contacts of these agents their QM users' names; returns how many changed."""

    def __init__(self, settings: Settings, aws: AwsClients) -> None:
        self._settings, self._aws = settings, aws
        self._joiner: Joiner | None = None
        self._lock = threading.Lock()

    def __call__(self, usernames: Iterable[str]) -> int:
        names = sorted(set(usernames))
        if not names:
            return 0
        with self._lock:
            if self._joiner is None:
                from processor.adapters.dynamodb.users_table import DynamoUserDirectory
                from processor.app.wiring import build_joiner

                self._joiner = build_joiner(self._settings, self._aws)
                # Names just written must be read as written, not from a lookup cache.
                self._joiner.users = DynamoUserDirectory(
                    self._aws.dynamodb, self._settings.users_table, cache_seconds=0
                )
            joiner = self._joiner
        return sum(joiner.refresh_agent(username) for username in names)


def sync_instance(settings: Settings, aws: AwsClients) -> str | None:
    """The instance users are synced from: the console's saved one, else the setting's first."""
    saved = RuntimeConfigStore(aws.dynamodb, settings.config_table).load().instance_arn
    return saved or settings.named_instance_arn


def _instant() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sync_and_name(
    settings: Settings,
    aws: AwsClients,
    instance_arn: str,
    *,
    synced_by: str,
    namer: Namer,
    source: ConnectUserSource | None = None,
    now: Callable[[], str] = _instant,
) -> tuple[SyncOutcome, int]:
    """Sync the users of ``instance_arn``; then name the contacts of new and renamed users."""
    outcome = sync_users(
        source or BotoConnectUsers(aws.client("connect")),
        DynamoUserAdmin(aws.dynamodb, settings.users_table, cache_seconds=0),
        SyncStateStore(aws.dynamodb, settings.config_table),
        instance_id=instance_id_from_arn(instance_arn),
        now=now,
        synced_by=synced_by,
    )
    named = namer(outcome.named)
    if named:
        log.info("contacts got their agents' names", contacts=named, users=len(outcome.named))
    return outcome, named


def run_scheduled_sync(
    settings: Settings,
    aws: AwsClients,
    *,
    interval: float,
    stop: threading.Event,
    source: Callable[[], ConnectUserSource] | None = None,
) -> None:
    """Every ``interval`` seconds: sync users from the configured instance (a failure is
    logged and tried again at the next interval)."""
    namer = ContactNamer(settings, aws)
    while not stop.wait(interval):
        try:
            arn = sync_instance(settings, aws)
            if arn is None:
                log.warning("scheduled users sync skipped: no Amazon Connect instance is configured")
                continue
            sync_and_name(
                settings, aws, arn, synced_by="schedule", namer=namer, source=source() if source else None
            )
        except Exception as exc:
            log.warning("scheduled users sync failed", error=type(exc).__name__)
