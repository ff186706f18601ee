"""The storage designs weighed for the per-type daily counts, each as ``store(client, record)``.

Each stores the record exactly once (a conditional put) and counts it; they differ in how:

* ``transaction``: the design this project shipped first. One ``TransactWriteItems`` puts the
  record and increments ``STATS#<type>`` / ``<day>``; every record of a type and day updates
  that one item, and a conflict is left to Lambda's retry.
* ``transaction-retried``: the same, with conflicts retried in-process (jittered backoff).
* ``sharded-transaction``: the counter split in 16 by a hash of the id, in a transaction,
  retried in-process.
* ``markers``: the shipped design (``processor/storage.py``): a conditional put of the record,
  then an idempotent put of its count marker; counted on read.

A fifth, counts aggregated from a DynamoDB stream, is weighed in the README without a run
here: the runner has no stream.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

LAMBDA_SRC = Path(__file__).resolve().parents[2] / "lambda_src"
TABLE = "bench"
SHARDS = 16

Store = Callable[[Any, dict[str, Any]], Any]


def runtime() -> tuple[Any, Any, Any]:
    """``processor.storage``, ``processor.counts`` and ``pipeline_common.retries``."""
    if str(LAMBDA_SRC) not in sys.path:
        sys.path.insert(0, str(LAMBDA_SRC))
    from pipeline_common import retries
    from processor import counts, storage

    return storage, counts, retries


def markers() -> Store:
    storage, _, retries = runtime()
    policy = retries.RetryPolicy()

    def store(client: Any, record: dict[str, Any]) -> Any:
        return storage.store(
            client, TABLE, record, datetime.now(UTC), retry=policy, deadline=policy.clock() + 29
        ).status

    return store


def transaction(*, retried: bool = False, shards: int = 1) -> Store:
    storage, counts, retries = runtime()
    policy = retries.RetryPolicy()

    def counter_key(record: dict[str, Any]) -> dict[str, Any]:
        shard = f"#{counts.shard_of(record['id']) % shards:02d}" if shards > 1 else ""
        return {
            "pk": {"S": f"STATS#{record['type']}{shard}"},
            "sk": {"S": record["timestamp"][:10]},
        }

    def write(client: Any, record: dict[str, Any]) -> Any:
        return client.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": storage.record_item(record, datetime.now(UTC)),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": counter_key(record),
                        "UpdateExpression": "ADD #count :one",
                        "ExpressionAttributeNames": {"#count": "count"},
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ]
        )

    def store(client: Any, record: dict[str, Any]) -> Any:
        try:
            if retried:
                policy.call(
                    policy.clock() + 29, "TransactWriteItems", write, client=client, record=record
                )
            else:
                write(client, record)
        except ClientError as error:
            reasons = error.response.get("CancellationReasons") or [{}]
            if reasons[0].get("Code") == "ConditionalCheckFailed":
                return "duplicate"
            raise
        return "stored"

    return store


DESIGNS: dict[str, Callable[[], Store]] = {
    "transaction": transaction,
    "transaction-retried": lambda: transaction(retried=True),
    "sharded-transaction": lambda: transaction(retried=True, shards=SHARDS),
    "markers": markers,
}


def counted(client: Any, design: str, day: str) -> dict[str, int]:
    """The per-type counts of ``day`` as ``design`` keeps them."""
    _, counts, _ = runtime()
    if design == "markers":
        found: dict[str, int] = counts.daily_counts(client, TABLE, day)
        return found
    totals: dict[str, int] = {}
    for page in client.get_paginator("scan").paginate(TableName=TABLE):
        for item in page["Items"]:
            if item["pk"]["S"].startswith("STATS#") and item["sk"]["S"] == day:
                record_type = item["pk"]["S"][len("STATS#") :].split("#")[0]
                totals[record_type] = totals.get(record_type, 0) + int(item["count"]["N"])
    return totals
