"""The embedded emulator's TransactWriteItems as its table grows, against stock moto's.

Stock moto deep-copies every table a transaction touches (to roll back), so its cost grows
with the table; the emulator's replacement (processor/devtools/emulator/moto_patches.py) snapshots only
the items the transaction touches. Both are timed in this process on moto's own backend
(no HTTP), a 25-action transaction at each table size.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import line

SIZES = (0, 500, 2_000, 10_000)
ACTIONS = 25
REPEAT = 5


def _backend() -> Any:
    from moto.dynamodb.models import DynamoDBBackend

    backend = DynamoDBBackend("us-east-1", "123456789012")
    backend.create_table(
        "contacts",
        schema=[{"AttributeName": "contact_id", "KeyType": "HASH"}],
        throughput=None,
        attr=[{"AttributeName": "contact_id", "AttributeType": "S"}],
        global_indexes=None,
        indexes=None,
        streams=None,
        billing_mode="PAY_PER_REQUEST",
        sse_specification=None,
        tags=[],
        deletion_protection_enabled=False,
        warm_throughput=None,
    )
    return backend


def _fill(backend: Any, count: int) -> None:
    for i in range(count):
        backend.put_item("contacts", {"contact_id": {"S": f"c-{i}"}, "doc": {"S": "x" * 1000}})


def _time(backend: Any, transact: Any, tag: str) -> float:
    best = float("inf")
    for round_ in range(REPEAT):
        actions = [
            {
                "Put": {
                    "TableName": "contacts",
                    "Item": {"contact_id": {"S": f"{tag}-{round_}-{i}"}, "doc": {"S": "y" * 1000}},
                    "ConditionExpression": "attribute_not_exists(contact_id)",
                }
            }
            for i in range(ACTIONS)
        ]
        started = time.perf_counter()
        transact(backend, actions)
        best = min(best, time.perf_counter() - started)
    return best


def run() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    from processor.devtools.emulator import moto_patches

    stock = DynamoDBBackend.transact_write_items
    print(f"{ACTIONS}-action TransactWriteItems, best of {REPEAT}, on moto's backend in process")
    for size in SIZES:
        backend = _backend()
        _fill(backend, size)
        ours = _time(backend, moto_patches.transact_write_items, "ours")
        theirs = _time(backend, stock, "stock")
        print(
            line(
                f"table of {size:,} items: embedded emulator",
                1 / ours,
                "transactions/s",
                "stock moto",
                1 / theirs,
            )
        )
