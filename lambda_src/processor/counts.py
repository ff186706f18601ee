"""The per-type daily counts: one marker item per stored record, counted when read.

Each stored record has a *count marker*, an item of keys alone:

    pk = COUNT#<yyyy-mm-dd>#<shard>      sk = <type>#<id>

The day is the record's own UTC date; the shard (``00``-``15``) is a hash of its id. Writing a
marker is idempotent: a retry, a redelivery or a redrive writes the same key again and changes
nothing, so a count is never doubled. Nothing is incremented, so no item is hot and nothing
conflicts: the markers of one day spread over :data:`SHARDS` partition keys, each good for
DynamoDB's 1,000 write units a second per partition
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html).
Markers never expire, even when records do, so a day's count outlives its records.

:func:`daily_counts` reads a day back: one paginated ``Query`` per shard for the keys, tallied
by type (a record's id cannot hold ``#``, so the type is what comes before the last ``#``).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Any

COUNT_PREFIX = "COUNT#"
#: Partition keys a day's markers spread over.
SHARDS = 16
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def shard_of(record_id: str) -> int:
    """The record's shard: the first four bytes of SHA-256 of its id, modulo :data:`SHARDS`."""
    return int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:4], "big") % SHARDS


def marker_pk(day: str, shard: int) -> str:
    return f"{COUNT_PREFIX}{day}#{shard:02d}"


def marker_key(record: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The count marker of ``record``: its UTC day and shard, its type and id."""
    day = record["timestamp"][:10]
    return {
        "pk": {"S": marker_pk(day, shard_of(record["id"]))},
        "sk": {"S": f"{record['type']}#{record['id']}"},
    }


def daily_counts(client: Any, table_name: str, day: str) -> dict[str, int]:
    """The records stored per type for ``day`` (``YYYY-MM-DD``), read with strong consistency.

    :raises ValueError: for a day that is not ``YYYY-MM-DD``.
    """
    if not DAY.fullmatch(day):
        raise ValueError(f"day: {day!r} is not a date as YYYY-MM-DD")
    counts: Counter[str] = Counter()
    paginator = client.get_paginator("query")
    for shard in range(SHARDS):
        pages = paginator.paginate(
            TableName=table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": marker_pk(day, shard)}},
            ProjectionExpression="sk",
            ConsistentRead=True,
        )
        for page in pages:
            for item in page.get("Items", []):
                counts[item["sk"]["S"].rpartition("#")[0]] += 1
    return dict(sorted(counts.items()))
