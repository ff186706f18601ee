"""The storage designs weighed for the per-type daily counts, each as ``store(client, record)``.

Each stores the record exactly once (a conditional put) and counts it; they differ in how:

* ``transaction``: the design this project shipped first. One ``TransactWriteItems`` puts the
  record and increments ``STATS#<type>`` / ``<day>``; every record of a type and day updates
  that one item, and a conflict is left to Lambda's retry.
* ``transaction-retried``: the same, with conflicts retried in-process (jittered backoff).
* ``sharded-transaction``: the counter split in 16 by a hash of the id, in a transaction,
  retried in-process. Its storage is bounded (16 items a type and day), its writes are not:
  a transaction bills each item twice.
* ``markers-kept``: the design shipped second: an idempotent marker put, then the conditional
  put of the record; markers are counted on read and never expire, so the counts keep an item
  per record for ever.
* ``markers``: the shipped design (``pipeline_common/counts.py``): the same writes, the markers
  expire after 7 days, and an hourly roll-up folds each closed hour into a total per day and
  type first.

A sixth, counts aggregated from a DynamoDB stream, is weighed in docs/records-and-operations.md
without a run here: the runner has no stream.

:func:`settle` is what happens to a design's counts as the stack ages: for ``markers``, two
roll-ups at once at a moment past the markers' life, then the TTL deletions DynamoDB makes by
then (items whose TTL attribute is in the past).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

LAMBDA_SRC = Path(__file__).resolve().parents[2] / "lambda_src"
TABLE = "bench"
SHARDS = 16
#: How long after the roll-ups :func:`settle` applies TTL's deletions: past every marker's life.
AGED = timedelta(days=8)
#: Roll-ups :func:`settle` runs at once.
ROLL_UPS_AT_ONCE = 2

Store = Callable[[Any, dict[str, Any]], Any]


def runtime() -> tuple[Any, Any, Any]:
    """``processor.storage``, ``pipeline_common.counts`` and ``pipeline_common.retries``."""
    if str(LAMBDA_SRC) not in sys.path:
        sys.path.insert(0, str(LAMBDA_SRC))
    from pipeline_common import counts, retries
    from processor import storage

    return storage, counts, retries


def markers() -> Store:
    storage, _, retries = runtime()
    policy = retries.RetryPolicy()

    def store(client: Any, record: dict[str, Any]) -> Any:
        return storage.store(
            client, TABLE, record, datetime.now(UTC), retry=policy, deadline=policy.clock() + 29
        ).status

    return store


def settle(
    clients: list[Any], design: str, now: datetime | None = None, reader: Any = None
) -> datetime:
    """Age the table of ``design`` past its markers' life: for ``markers``, roll-ups at once
    (one on each of the first :data:`ROLL_UPS_AT_ONCE` clients) when the hours written to are
    closed, then the deletions TTL makes by :data:`AGED` later. The hourly runs in between
    fold empty hours and add nothing, so they are not run (16 queries an hour). The moment
    to read the counts at, for :func:`counted`. TTL's deletions are made through ``reader``
    (default: the first client), as DynamoDB makes them: on no one's bill."""
    moment = (now or datetime.now(UTC)) + timedelta(hours=2)
    if design != "markers":
        return moment
    _, counts, retries = runtime()
    policy = retries.RetryPolicy()
    failures: list[BaseException] = []

    def roll_up(client: Any) -> None:
        try:
            deadline = policy.clock() + 120
            counts.roll_up(
                client, TABLE, moment, lambda n, f, **p: policy.call(deadline, n, f, **p)
            )
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=roll_up, args=(c,)) for c in clients[:ROLL_UPS_AT_ONCE]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    expire(reader or clients[0], moment + AGED)
    return moment


def expire(client: Any, now: datetime, attribute: str = "expires_at") -> int:
    """Delete the items whose TTL ``attribute`` is before ``now``, as DynamoDB's TTL does
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/TTL.html); how many."""
    deleted = 0
    for page in client.get_paginator("scan").paginate(TableName=TABLE):
        for item in page["Items"]:
            if attribute in item and int(item[attribute]["N"]) < now.timestamp():
                client.delete_item(TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]})
                deleted += 1
    return deleted


def count_items(client: Any) -> int:
    """The items the table keeps for counts: everything but the records."""
    return sum(
        1
        for page in client.get_paginator("scan").paginate(TableName=TABLE)
        for item in page["Items"]
        if not item["pk"]["S"].startswith("RECORD#")
    )


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
    "markers-kept": markers,
    "markers": markers,
}


def counted(client: Any, design: str, day: str, now: datetime | None = None) -> dict[str, int]:
    """The per-type counts of ``day`` as ``design`` keeps them, read at ``now``."""
    _, counts, _ = runtime()
    if design.startswith("markers"):
        found: dict[str, int] = counts.daily_counts(client, TABLE, day, now)
        return found
    totals: dict[str, int] = {}
    for page in client.get_paginator("scan").paginate(TableName=TABLE):
        for item in page["Items"]:
            if item["pk"]["S"].startswith("STATS#") and item["sk"]["S"] == day:
                record_type = item["pk"]["S"][len("STATS#") :].split("#")[0]
                totals[record_type] = totals.get(record_type, 0) + int(item["count"]["N"])
    return totals
