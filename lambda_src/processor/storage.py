"""Exactly-once storage: the attempt's count marker, then a conditional put of the record.

Each attempt first puts its count marker (``pipeline_common/counts.py``: keys and an expiry,
stamped with the attempt's ``stored_at``, expiring after 7 days), then the record item, only if
absent (``attribute_not_exists(pk)``), with that same ``stored_at``. A marker counts only when the
record item holds its ``stored_at``, so exactly one attempt's marker counts. Neither put is a
transaction and no item is shared, so concurrent processors never conflict, and a record costs
two writes of one unit each (a transaction costs two units per item,
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html,
"Capacity management for transactions"). So:

* a second delivery fails the condition. The failure returns the stored item
  (``ReturnValuesOnConditionCheckFailure``), so with no extra read the processor compares the
  stored ``digest`` (SHA-256 of the record's canonical contract fields) with the new one: the
  same content is a *duplicate*; different content under the same id is a *conflict*
  (:class:`RecordConflict`, which sends the record to the DLQ). Either way its marker never
  counts;
* an attempt that stops after its marker and before its put leaves a marker that never counts;
  the retry writes its own. One that stops after its put has stored and counted the record, and
  its retry is a duplicate. A count is never doubled and, once the record is stored, never
  missing.

Each put is retried in-process while it fails transiently (``pipeline_common.retries``).

A record counts on its own UTC day (its ``timestamp``), whenever it arrives.
The payload is stored as its compact JSON text: lossless for every JSON number, and never near
DynamoDB's nesting limits. With the ``deflate`` encoding, a payload whose item would start one
more KB (one more write unit) is stored instead as that same text compressed with zlib (RFC 1950)
in the binary attribute ``payload_deflate``: still lossless, and read back with
``zlib.decompress`` (:func:`read_payload`). A payload that gains nothing from it stays plain
text.

With a retention, the record item carries its expiry as epoch seconds in the table's TTL
attribute, and DynamoDB deletes it (at no charge) some time after that moment. The stack only
allows a retention longer than the replay window, so a record is never gone while a redrive of
it could still arrive. A day's counts outlive its records.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import ClientError

from pipeline_common.contract import canonical
from pipeline_common.counts import batch_marker_items, marker_item, timestamp_text
from pipeline_common.item_size import write_units
from pipeline_common.retries import RetryPolicy
from processor.keys import record_key

#: The table's TTL attribute (``constructs_lib/data_table.py``), which markers always carry.
TTL_ATTRIBUTE = "expires_at"
#: ``json``: the payload as JSON text; ``deflate``: compressed where it saves a write unit.
PAYLOAD_ENCODINGS = ("json", "deflate")


@dataclass(frozen=True)
class Retention:
    """Records expire ``days`` after they are stored, through the TTL ``attribute``."""

    attribute: str
    days: int

    def expires_at(self, stored_at: datetime) -> int:
        """Epoch seconds, as DynamoDB TTL reads them."""
        return int((stored_at + timedelta(days=self.days)).timestamp())


class RecordConflict(ValueError):
    """A record arrived under an id already stored with different content."""

    def __init__(self, record_id: str, stored: str, received: str) -> None:
        super().__init__(
            f"id: {record_id!r} is already stored with different content (stored digest "
            f"{stored[:12]}, this record {received[:12]}); nothing was changed: send it under "
            "a new id, or fix the producer"
        )
        self.record_id = record_id


def digest(record: dict[str, Any]) -> str:
    """SHA-256 of the record's canonical contract fields: equal content, equal digest."""
    return hashlib.sha256(canonical(record).encode()).hexdigest()


@dataclass(frozen=True)
class StoreResult:
    record_id: str
    status: Literal["stored", "duplicate"]


def record_item(
    record: dict[str, Any],
    stored_at: datetime,
    retention: Retention | None = None,
    encoding: str = "json",
) -> dict[str, dict[str, Any]]:
    """The record's item; with ``encoding="deflate"``, its payload compressed when that makes
    the item cost fewer write units."""
    if encoding not in PAYLOAD_ENCODINGS:
        raise ValueError(f"payload encoding {encoding!r}: must be one of {PAYLOAD_ENCODINGS}")
    item: dict[str, dict[str, Any]] = {
        **record_key(record["id"]),
        "id": {"S": record["id"]},
        "type": {"S": record["type"]},
        "source": {"S": record["source"]},
        "timestamp": {"S": record["timestamp"]},
        "payload": {"S": json.dumps(record["payload"], separators=(",", ":"), sort_keys=True)},
        "stored_at": {"S": timestamp_text(stored_at)},
        "digest": {"S": digest(record)},
    }
    for optional in ("received_at", "category"):
        if isinstance(record.get(optional), str):
            item[optional] = {"S": record[optional]}
    if retention is not None:
        item[retention.attribute] = {"N": str(retention.expires_at(stored_at))}
    if encoding == "deflate":
        compact = {k: v for k, v in item.items() if k != "payload"}
        compact["payload_deflate"] = {"B": zlib.compress(item["payload"]["S"].encode(), 9)}
        if write_units(compact) < write_units(item):
            return compact
    return item


def read_payload(item: dict[str, Any]) -> Any:
    """The payload of a stored record item, whichever encoding stored it."""
    if "payload_deflate" in item:
        return json.loads(zlib.decompress(bytes(item["payload_deflate"]["B"])))
    return json.loads(item["payload"]["S"])


def store(
    client: Any,
    table_name: str,
    record: dict[str, Any],
    now: datetime,
    retention: Retention | None = None,
    encoding: str = "json",
    *,
    retry: RetryPolicy | None = None,
    deadline: float | None = None,
) -> StoreResult:
    """Store ``record`` and count it, exactly once; with ``retention``, it expires: its count
    marker, then :func:`put_record`.

    :param retry: how transient failures are retried in-process. :default: ``RetryPolicy()``
    :param deadline: the ``retry.clock()`` time by which retries stop. :default: 30 s from now
    :raises RecordConflict: when its id is stored with different content.
    :raises StillTransient: when a put still fails transiently after the in-process retries,
        so that Lambda retries the invocation.
    :raises ClientError: for any other AWS error.
    """
    retry = retry or RetryPolicy()
    deadline = retry.clock() + 30 if deadline is None else deadline
    retry.call(
        deadline,
        "PutItem of the count marker",
        client.put_item,
        TableName=table_name,
        Item=marker_item(record, now, TTL_ATTRIBUTE),
    )
    return put_record(
        client, table_name, record, now, retention, encoding, retry=retry, deadline=deadline
    )


def put_record(
    client: Any,
    table_name: str,
    record: dict[str, Any],
    now: datetime,
    retention: Retention | None = None,
    encoding: str = "json",
    *,
    retry: RetryPolicy,
    deadline: float,
) -> StoreResult:
    """The record's conditional put, once its marker is in place (its own, or its batch's,
    ``store_batch_markers``, with this ``now``); raises as :func:`store` does."""
    try:
        retry.call(
            deadline,
            "PutItem of the record",
            client.put_item,
            TableName=table_name,
            Item=record_item(record, now, retention, encoding),
            ConditionExpression="attribute_not_exists(pk)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        kept_item = dict(error.response.get("Item") or {})
        received, kept = digest(record), _stored_digest(kept_item)
        if kept != received:
            raise RecordConflict(record["id"], kept, received) from None
        # A retried put whose first try stored the item (its response was lost) finds its own.
        if kept_item.get("stored_at", {}).get("S") != timestamp_text(now):
            return StoreResult(record["id"], "duplicate")
    return StoreResult(record["id"], "stored")


def store_batch_markers(
    client: Any,
    table_name: str,
    records: list[Any],
    now: datetime,
    batch_id: str,
    *,
    retry: RetryPolicy,
    deadline: float,
) -> None:
    """Put a batch's count markers (``pipeline_common.counts.batch_marker_items``) for the
    records of a batch that can be stored: objects with a string id, type and timestamp. One
    that then fails the contract is listed but never counts (no record item holds this
    ``now``), like any marker whose put came to nothing."""
    markable = [
        r
        for r in records
        if isinstance(r, dict)
        and all(isinstance(r.get(k), str) for k in ("id", "type", "timestamp"))
    ]
    for item in batch_marker_items(markable, now, TTL_ATTRIBUTE, batch_id):
        retry.call(
            deadline,
            "PutItem of a batch's count marker",
            client.put_item,
            TableName=table_name,
            Item=item,
        )


def _stored_digest(item: dict[str, Any]) -> str:
    """The digest of a stored record item; items stored before digests existed are digested
    from their own fields, so a redelivery of one is still a duplicate."""
    if "digest" in item:
        return str(item["digest"]["S"])
    fields = {name: item[name]["S"] for name in ("id", "type", "source", "timestamp")}
    return digest({**fields, "payload": read_payload(item)})
