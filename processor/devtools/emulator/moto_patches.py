"""Where the embedded emulator departs from stock moto, and why.

moto's ``TransactWriteItems`` deep-copies every table a transaction touches, to roll back
when one action fails: its cost grows with the table (measured here: a 25-action
transaction took 9.7 ms on an empty table, 101 ms at 500 items, 677 ms at 2,000), where
DynamoDB's does not. qm-ingest writes contacts in transactions, so the emulator would
slow down as a test or a demo goes on. This replacement keeps moto's semantics (every
condition checked, all or nothing, the same cancellation reasons) but snapshots only the
items the transaction touches, and holds a lock so that two transactions never interleave.

moto's Kinesis shard takes the next sequence number as "the last one + 1" with no lock (its
own comment says it is not safe for concurrency): two PutRecords on one shard at once could
both take the same number, and one record silently replaced the other while both puts were
answered as successful (measured here: 3 of 4,000 records lost with 8 concurrent puts of
500). The service puts its output in parallel chunks, so this lost contacts on the emulator
that AWS would never lose. The replacement numbers and stores each record under a lock, finds
the last number in O(1) (moto copies every key of the shard per record), and reads under the
same lock, so a reader never iterates a shard while it grows. moto's GetRecords walks the
shard from its first record on every call, whatever the iterator's position: a poll of a
stream holding n records cost O(n), and every reader polls (the KCL per shard, the service's
own read-backs, the benchmarks' watchers), so the emulator slowed as a test session went on.
Sequence numbers are consecutive, so the replacement reads from the iterator's position.

moto's SQS ReceiveMessage checks each message it hands out against the queue's retention
period by building every attribute of the queue, including the three approximate message
counts, each a pass over every message in the queue; and each message's visibility and delay
are read by building two datetimes. A receive of 10 from a queue holding n messages costs
about 30 passes over n: with the recordings queue a few thousand deep (a burst of calls, or a
backfill), this was a third of the emulator's CPU in the pipeline benchmark (measured with a
sampling profiler), where SQS answers in constant time. The replacements read the retention
period directly and compare the clock once per message, with the same results.

moto's dispatcher finds the backend of every request by listing moto's package directory
(``os.listdir`` and an ``isdir`` per entry) and then matching the host against every
service's URL patterns, under one lock that every request takes: a tenth of the emulator's
CPU in the backfill benchmark, and a queue in front of every request (measured with a
sampling profiler). The answer depends only on the host, so it is remembered per host.

moto parses every update and condition expression from its text, twice for an update in a
transaction (once to validate the request, once to apply it), and builds each item by adding
its attributes one at a time, re-measuring the whole item at each: quadratic in the number of
attributes. In the backfill benchmark these were a sixth of the emulator's CPU (sampling
profiler). A service sends the same few expressions with different values, so the parsed
update expression (which moto's validator deep-copies before it touches it) and the condition's
tokens are remembered per expression text; an item is measured once, against the same limit
(sizes only add up, so the last of moto's checks is the one that decides).

moto 5.2 answers every DynamoDB request through its generic response serializer, which walks
the operation's output shape and, for each attribute value of each item, tries every key the
AttributeValue structure may carry under each of its aliases: about 3 ms of CPU per item of
20 attributes (measured here), against 0.02 ms for ``json.dumps`` of the same result, which is
already in DynamoDB's wire form. In the replay benchmark over imported contacts it was 58 % of
the emulator's CPU (sampling profiler). The item operations' results (no timestamps; binary
values as bytes) are written with ``json.dumps`` instead, binary values base64-encoded and
absent (``None``) members left out as the serializer does; any other value falls back to the
serializer. A test holds both to the same JSON on every attribute type.

moto finds a service's backend for an account through ``BackendDict.__getitem__``, which takes
a process-wide lock and checks a list of every service's backends by equality on every call;
DynamoDB's handlers look the backend up once per key of a BatchGetItem. With two requests in
flight, threads queued on that lock (a sixth of the samples in the replay benchmark). An
account's backend, once created, is read without the lock.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from typing import Any

_LOCK = threading.Lock()


def _key_of(backend: Any, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    table = backend.get_table(op["TableName"])
    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = op["Item"][table.range_key_attr]
    return key


def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:  # noqa: PLR0912, PLR0915 - moto's own flow
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )
    from moto.dynamodb.models.dynamo_type import DynamoType

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    with _LOCK:
        # (table name, key) -> the item's attributes before the transaction (None: absent)
        before: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any] | None]] = {}
        errors: list[tuple[str | None, str | None, dict[str, Any] | None]] = []

        def restore() -> None:
            for (table_name, _), (key, attrs) in before.items():
                table = self.get_table(table_name)
                if attrs is None:
                    hash_key = DynamoType(key[table.hash_key_attr])
                    range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
                    table.delete_item(hash_key, range_key)
                else:
                    table.put_item(attrs, overwrite=True)

        for item in transact_items:
            original_item: dict[str, Any] | None = None
            if len(list(item.keys())) > 1:
                raise TransactWriteSingleOpException
            try:
                op_type, op = next(iter(item.items()))
                if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                    raise ValueError("Unsupported transaction operation")
                table_name = op["TableName"]
                key = _key_of(self, op_type, op)
                unique = (str(table_name), str(dict(sorted(key.items()))))
                if unique in before:
                    raise MultipleTransactionsException()
                current = self.get_item(table_name, key)
                before[unique] = (key, copy.deepcopy(current.to_json()["Attributes"]) if current else None)
                condition = op.get("ConditionExpression")
                names = op.get("ExpressionAttributeNames")
                values = op.get("ExpressionAttributeValues")
                if condition is not None and not get_filter_expression(condition, names, values).expr(
                    current
                ):
                    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)
                if op_type == "Put":
                    self.put_item(
                        table_name,
                        op["Item"],
                        condition_expression=condition,
                        expression_attribute_names=names,
                        expression_attribute_values=values,
                    )
                elif op_type == "Delete":
                    self.delete_item(
                        table_name,
                        key,
                        condition_expression=condition,
                        expression_attribute_names=names,
                        expression_attribute_values=values,
                    )
                elif op_type == "Update":
                    self.update_item(
                        table_name,
                        key,
                        update_expression=op["UpdateExpression"],
                        condition_expression=condition,
                        expression_attribute_names=names,
                        expression_attribute_values=values,
                    )
                errors.append((None, None, None))
            except (MultipleTransactionsException, MockValidationException):
                restore()
                raise
            except ConditionalCheckFailed as exc:
                errors.append(("ConditionalCheckFailed", str(exc.message), original_item))
            except Exception as exc:
                errors.append((type(exc).__name__, str(exc), original_item))
        if any(code is not None for code, _, _ in errors):
            restore()
            raise TransactionCanceledException(errors)


_SHARD_LOCK = threading.RLock()


def shard_put_record(self: Any, partition_key: str, data: str, explicit_hash_key: str) -> str:
    from moto.kinesis.models import Record

    with _SHARD_LOCK:
        sequence_number = shard_max_sequence_number(self) + 1
        self.records[sequence_number] = Record(partition_key, data, sequence_number, explicit_hash_key)
        return str(sequence_number)


def shard_max_sequence_number(self: Any) -> int:
    with _SHARD_LOCK:
        return next(reversed(self.records)) if self.records else 0


def shard_min_sequence_number(self: Any) -> int:
    with _SHARD_LOCK:
        return next(iter(self.records)) if self.records else 0


def _shard_get_records(moto_get_records: Any) -> Any:
    def get_records(self: Any, last_sequence_id: str, limit: int | None) -> tuple[list[Any], int, int]:
        with _SHARD_LOCK:
            records = self.records
            after = int(last_sequence_id)
            if not records:
                return [], after, 0
            first, last = next(iter(records)), next(reversed(records))
            start = max(after + 1, first)
            stop = last if limit is None else min(last, start + limit - 1)
            results = []
            for number in range(start, stop + 1):
                record = records.get(number)
                if record is None:  # not numbered one after another: moto's own walk
                    return moto_get_records(self, last_sequence_id, limit)  # type: ignore[no-any-return]
                results.append(record)
            if not results:
                return [], after, 0
            behind = records[last].created_at - results[-1].created_at
            return results, results[-1].sequence_number, int(behind * 1000)

    get_records.qm_patched = True  # type: ignore[attr-defined]
    return get_records


def message_valid_for_retention(self: Any, queue_name: str, message: Any) -> bool:
    retention_period = int(self.get_queue(queue_name).message_retention_period)
    return bool(retention_period + message.sent_timestamp / 1000 > time.time())


def message_visible(self: Any) -> bool:
    return bool(time.time() * 1000.0 > self.visible_at)


def message_delayed(self: Any) -> bool:
    return bool(time.time() * 1000.0 < self.delayed_until)


def _backend_per_host(method: Any) -> Any:
    known: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        try:
            return known[host]
        except KeyError:
            backend = known[host] = method(self, host)
            return backend

    return get_backend_for_host


_PARSED_LIMIT = 1024


def _remember(store: dict[str, Any], text: str, parsed: Any) -> Any:
    """Keep ``parsed`` for ``text`` (forgetting everything once the store is full)."""
    if len(store) >= _PARSED_LIMIT:
        store.clear()
    store[text] = parsed
    return parsed


def _remembered_update_parser(make: Any) -> Any:
    parsed: dict[str, Any] = {}

    def remembered(cls: Any, expression_str: str) -> Any:
        try:
            return parsed[expression_str]
        except KeyError:
            pass
        # An invalid expression raises, and nothing is remembered.
        return _remember(parsed, expression_str, make(expression_str))

    remembered.qm_patched = True  # type: ignore[attr-defined]
    return classmethod(remembered)


def _remembered_condition_lexer(lex: Any) -> Any:
    from collections import deque

    lexed: dict[str, tuple[Any, ...]] = {}

    def remembered(self: Any) -> Any:
        text = self.condition_expression
        nodes = lexed.get(text)
        if nodes is None:
            # The tokens are namedtuples: shared, never changed.
            nodes = _remember(lexed, text, tuple(lex(self)))
        return deque(nodes)

    remembered.qm_patched = True  # type: ignore[attr-defined]
    return remembered


def item_init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
    """moto's ``Item.__init__``, the item measured once instead of once per attribute."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    self.hash_key = hash_key
    self.range_key = range_key
    values = {key: DynamoType(value) for key, value in attrs.items()}
    if sum(bytesize(key) + value.size() for key, value in values.items()) > 405000:  # moto's limit
        raise ItemSizeTooLarge
    self.attrs = LimitedSizeDict()
    dict.update(self.attrs, values)


#: The DynamoDB operations whose results hold items and capacities only (no timestamps).
ITEM_OPERATIONS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchGetItem",
        "BatchWriteItem",
        "Query",
        "Scan",
        "TransactGetItems",
        "TransactWriteItems",
    }
)


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def _wire(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(type(value).__name__)


def dynamo_json(result: Any) -> str | None:
    """An item operation's result as DynamoDB's JSON, or None where the serializer is needed."""
    if not isinstance(result, dict):
        return None
    top = {k: v for k, v in result.items() if v is not None}
    # None only ever sits at the top of these results or in a capacity entry; items never
    # carry one (a NULL attribute is {"NULL": true}). Capacity entries are small.
    for key in ("ConsumedCapacity", "ItemCollectionMetrics"):
        if key in top:
            top[key] = _without_none(top[key])
    try:
        return json.dumps(top, default=_wire)
    except TypeError:
        return None


def _dynamo_execute_result(generic: Any) -> Any:
    def execute_result(self: Any, context: Any) -> Any:
        if context.operation_model.name in ITEM_OPERATIONS:
            body = dynamo_json(self.result)
            if body is not None:
                return 200, {"Content-Type": "application/x-amz-json-1.0"}, body
        return generic(self, context)

    execute_result.qm_patched = True  # type: ignore[attr-defined]
    return execute_result


def _backend_without_lock(getitem: Any) -> Any:
    def __getitem__(self: Any, account_id: str) -> Any:
        found = dict.get(self, account_id)
        return found if found is not None else getitem(self, account_id)

    __getitem__.qm_patched = True  # type: ignore[attr-defined]
    return __getitem__


def apply() -> None:
    """Install the replacements in this process's moto (the emulator server calls this)."""
    from moto.core.base_backend import BackendDict
    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
    from moto.dynamodb.responses import DynamoResult
    from moto.kinesis.models import Shard
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication
    from moto.sqs.models import Message, SQSBackend

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    Shard.put_record = shard_put_record  # type: ignore[method-assign]
    Shard.get_max_sequence_number = shard_max_sequence_number  # type: ignore[method-assign]
    Shard.get_min_sequence_number = shard_min_sequence_number  # type: ignore[method-assign]
    if not getattr(Shard.get_records, "qm_patched", False):
        Shard.get_records = _shard_get_records(Shard.get_records)  # type: ignore[method-assign]
    SQSBackend.is_message_valid_based_on_retention_period = message_valid_for_retention  # type: ignore[method-assign]
    Message.visible = property(message_visible)  # type: ignore[method-assign, assignment]
    Message.delayed = property(message_delayed)  # type: ignore[method-assign, assignment]
    if not getattr(DomainDispatcherApplication.get_backend_for_host, "qm_per_host", False):
        per_host = _backend_per_host(DomainDispatcherApplication.get_backend_for_host)
        per_host.qm_per_host = True
        DomainDispatcherApplication.get_backend_for_host = per_host  # type: ignore[method-assign]
    if not getattr(UpdateExpressionParser.make, "qm_patched", False):
        UpdateExpressionParser.make = _remembered_update_parser(UpdateExpressionParser.make)
    lexer = ConditionExpressionParser._lex_condition_expression
    if not getattr(lexer, "qm_patched", False):
        ConditionExpressionParser._lex_condition_expression = _remembered_condition_lexer(lexer)  # type: ignore[method-assign]
    Item.__init__ = item_init  # type: ignore[method-assign]
    if not getattr(DynamoResult.execute_result, "qm_patched", False):
        DynamoResult.execute_result = _dynamo_execute_result(DynamoResult.execute_result)  # type: ignore[method-assign]
    if not getattr(BackendDict.__getitem__, "qm_patched", False):
        BackendDict.__getitem__ = _backend_without_lock(BackendDict.__getitem__)  # type: ignore[method-assign]
