"""DynamoDB in bulk: reads, unconditional writes and guarded (transactional) writes, each as
one wave of requests side by side, whatever the number of items.

* :func:`batch_get`: BatchGetItem, 100 keys a request, unprocessed keys asked again.
* :func:`batch_write`: BatchWriteItem, 25 puts or deletes a request, for writes that need
  no condition (their item belongs to one writer, or the last writer may win).
* :func:`transact_groups`: conditional writes. Each *group* is the set of actions that must
  happen together (a contact and its sweeper marker); groups are packed into
  TransactWriteItems requests (100 actions, 4 MB). A group whose condition fails is reported
  as such (the caller re-decides that one contact alone); the other groups of a cancelled
  transaction are submitted again, never failed with it.

Transient failures are retried inside (the caller waits); anything else propagates.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError

from processor.adapters.aws import error_code
from processor.platform.retry import retry_transient

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

T = TypeVar("T")
R = TypeVar("R")

GET_KEYS_PER_REQUEST = 100
WRITES_PER_REQUEST = 25
TRANSACT_ACTIONS = 100
#: DynamoDB's limit is 4 MB of items per transaction; leave room for the request around them.
TRANSACT_BYTES = 3_500_000
#: Codes of a cancelled transaction's reasons that a later attempt can fix.
RETRY_REASONS = frozenset({"TransactionConflict", "ProvisionedThroughputExceeded", "ThrottlingError"})
CONDITION_FAILED = "ConditionalCheckFailed"
MAX_ROUNDS = 50

Key = dict[str, Any]
Item = dict[str, Any]


def run_all(pool: ThreadPoolExecutor | None, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``fn`` over ``items`` side by side (in order); one item needs no pool."""
    if pool is None or len(items) <= 1:
        return [fn(item) for item in items]
    return list(pool.map(fn, items))


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _pause(attempt: int) -> None:
    time.sleep(min(0.05 * 2**attempt, 2.0) * (0.5 + random.random()))  # noqa: S311 - jitter


def _key_text(key: Key) -> str:
    return repr(sorted((name, tuple(value.items())) for name, value in key.items()))


def batch_get(
    ddb: DynamoDBClient,
    keys: Iterable[tuple[str, Key]],
    *,
    pool: ThreadPoolExecutor | None = None,
    consistent: bool = True,
) -> dict[tuple[str, str], Item]:
    """The items found among ``keys`` ((table, key) pairs), by ``(table, key text)``: see
    :func:`item_id`. Strongly consistent by default (a write before it is seen)."""
    wanted = list({(table, _key_text(key)): (table, key) for table, key in keys}.values())
    found: dict[tuple[str, str], Item] = {}

    def one(chunk: Sequence[tuple[str, Key]]) -> list[tuple[str, Item]]:
        request: dict[str, Any] = {}
        for table, key in chunk:
            request.setdefault(table, {"Keys": [], "ConsistentRead": consistent})["Keys"].append(key)
        got: list[tuple[str, Item]] = []
        attempt = 0
        while request:
            response = retry_transient(
                lambda r=request: ddb.batch_get_item(RequestItems=r),  # type: ignore[misc]
                "dynamodb.batch_get",
            )
            for table, items in response.get("Responses", {}).items():
                got.extend((table, item) for item in items)
            request = dict(response.get("UnprocessedKeys") or {})
            if request:
                attempt += 1
                _pause(attempt)
        return got

    for results in run_all(pool, one, _chunks(wanted, GET_KEYS_PER_REQUEST)):
        for table, item in results:
            found[(table, _item_key_text(table, item))] = item
    return found


def item_id(table: str, key: Key) -> tuple[str, str]:
    """How :func:`batch_get` indexes what it found: ``found.get(item_id(table, key))``."""
    return (table, _key_text(key))


def _item_key_text(table: str, item: Item) -> str:
    names = key_names.get(table)
    if names is None:
        raise KeyError(f"key attributes of {table} are not registered (dynamo_batch.register_key)")
    return _key_text({name: item[name] for name in names})


#: Table name -> its key attribute names; tables read through :func:`batch_get` register here.
key_names: dict[str, tuple[str, ...]] = {}


def register_key(table: str, *names: str) -> None:
    key_names[table] = names


def batch_write(
    ddb: DynamoDBClient,
    requests: Iterable[tuple[str, dict[str, Any]]],
    *,
    pool: ThreadPoolExecutor | None = None,
) -> None:
    """Unconditional puts and deletes ((table, PutRequest/DeleteRequest) pairs), durable on
    return. Two requests for one item: the later one wins (one request may not hold both)."""
    latest: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for table, request in requests:
        if "PutRequest" in request:
            item = request["PutRequest"]["Item"]
            key = {name: item[name] for name in key_names[table]}
        else:
            key = request["DeleteRequest"]["Key"]
        latest[(table, _key_text(key))] = (table, request)

    def one(chunk: Sequence[tuple[str, dict[str, Any]]]) -> None:
        pending: dict[str, list[dict[str, Any]]] = {}
        for table, request in chunk:
            pending.setdefault(table, []).append(request)
        attempt = 0
        while pending:
            response = retry_transient(
                lambda p=pending: ddb.batch_write_item(RequestItems=p),  # type: ignore[misc]
                "dynamodb.batch_write",
            )
            pending = dict(response.get("UnprocessedItems") or {})  # type: ignore[arg-type]
            if pending:
                attempt += 1
                _pause(attempt)

    run_all(pool, one, _chunks(list(latest.values()), WRITES_PER_REQUEST))


@dataclass(frozen=True)
class GroupOutcome:
    """What happened to one group of a :func:`transact_groups` call."""

    written: bool
    reason: str | None = None  # CONDITION_FAILED, or another code of a refused action
    error: Exception | None = None  # the error this group alone caused (e.g. an item too large)


def _size(actions: Sequence[dict[str, Any]]) -> int:
    return sum(len(repr(action)) for action in actions)


def _pack(
    groups: list[tuple[int, Sequence[dict[str, Any]]]],
) -> list[list[tuple[int, Sequence[dict[str, Any]]]]]:
    requests: list[list[tuple[int, Sequence[dict[str, Any]]]]] = []
    current: list[tuple[int, Sequence[dict[str, Any]]]] = []
    count = size = 0
    for index, actions in groups:
        group_size = _size(actions)
        if current and (count + len(actions) > TRANSACT_ACTIONS or size + group_size > TRANSACT_BYTES):
            requests.append(current)
            current, count, size = [], 0, 0
        current.append((index, actions))
        count += len(actions)
        size += group_size
    if current:
        requests.append(current)
    return requests


def transact_groups(
    ddb: DynamoDBClient,
    groups: Sequence[Sequence[dict[str, Any]]],
    *,
    pool: ThreadPoolExecutor | None = None,
) -> list[GroupOutcome]:
    """Write each group of TransactWriteItems actions atomically; one outcome per group."""
    outcomes: dict[int, GroupOutcome] = {}
    todo: list[tuple[int, Sequence[dict[str, Any]]]] = [(i, g) for i, g in enumerate(groups) if g]
    for index, group in enumerate(groups):
        if not group:
            outcomes[index] = GroupOutcome(written=True)

    whole_refused = object()

    def one(request: list[tuple[int, Sequence[dict[str, Any]]]]) -> list[tuple[int, Any]]:
        """Outcomes of a request's groups; None: not written, submit again; ``whole_refused``:
        the request was refused as a whole for some group's content (submit one by one)."""
        actions = [action for _, group in request for action in group]
        try:
            retry_transient(
                lambda: ddb.transact_write_items(TransactItems=actions),  # type: ignore[arg-type]
                "dynamodb.transact_write",
            )
        except ClientError as exc:
            code = error_code(exc)
            if code == "TransactionCanceledException":
                reasons: list[dict[str, Any]] = list(exc.response.get("CancellationReasons") or [])  # type: ignore[arg-type]
                return list(_cancelled(request, reasons))
            if code == "ValidationException" and len(request) > 1:
                return [(index, whole_refused) for index, _ in request]
            if code == "ValidationException":
                return [(request[0][0], GroupOutcome(written=False, reason=code, error=exc))]
            raise
        return [(index, GroupOutcome(written=True)) for index, _ in request]

    alone = False
    for attempt in range(MAX_ROUNDS):
        if not todo:
            break
        requests = [[group] for group in todo] if alone else _pack(todo)
        by_index = dict(todo)
        retry: list[tuple[int, Sequence[dict[str, Any]]]] = []
        for results in run_all(pool, one, requests):
            for index, outcome in results:
                if outcome is None or outcome is whole_refused:
                    alone = alone or outcome is whole_refused
                    retry.append((index, by_index[index]))
                else:
                    outcomes[index] = outcome
        todo = retry
        if todo and attempt:
            _pause(attempt)
    if todo:
        raise RuntimeError(f"{len(todo)} transactional writes still conflicting after {MAX_ROUNDS} rounds")
    return [outcomes[i] for i in range(len(groups))]


def _cancelled(
    request: list[tuple[int, Sequence[dict[str, Any]]]], reasons: list[dict[str, Any]]
) -> list[tuple[int, GroupOutcome | None]]:
    results: list[tuple[int, GroupOutcome | None]] = []
    position = 0
    for index, group in request:
        codes = [str(r.get("Code") or "None") for r in reasons[position : position + len(group)]]
        position += len(group)
        refused = [c for c in codes if c not in ("None", "")]
        if not refused or all(c in RETRY_REASONS for c in refused):
            results.append((index, None))  # cancelled with the others, or a conflict: again
        elif CONDITION_FAILED in refused:
            results.append((index, GroupOutcome(written=False, reason=CONDITION_FAILED)))
        else:
            results.append((index, GroupOutcome(written=False, reason=refused[0])))
    return results
