"""Exactly-once storage: a conditional put of the record, then its count marker.

The record item is put only if absent (``attribute_not_exists(pk)``), and then its count marker
(``processor/counts.py``), an item of keys alone that an unconditional put writes again
harmlessly. Neither is a transaction and no item is shared, so concurrent processors never
conflict, and a record costs two writes of one unit each (a transaction costs two units per
item, https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html,
"Capacity management for transactions"). So:

* a second delivery fails the condition. The failure returns the stored item
  (``ReturnValuesOnConditionCheckFailure``), so with no extra read the processor compares the
  stored ``digest`` (SHA-256 of the record's canonical contract fields) with the new one: the
  same content is a *duplicate*, and its marker is written again (in case the first delivery
  stopped between the two puts); different content under the same id is a *conflict*
  (:class:`RecordConflict`, which sends the record to the DLQ; nothing is written);
* a retry after any failure finds nothing written (and writes both), or the record alone (and
  writes the marker), or both (and changes nothing). A count is never doubled and, once the
  record's delivery succeeds, never missing.

Each put is retried in-process while it fails transiently (``pipeline_common.retries``).

The marker's day is the record's own UTC date, so a retry on another day counts the same day.
The payload is stored as its compact JSON text: lossless for every JSON number, and never near
DynamoDB's nesting limits. With the ``deflate`` encoding, a payload whose item would start one
more KB (one more write unit) is stored instead as that same text compressed with zlib (RFC 1950)
in the binary attribute ``payload_deflate``: still lossless, and read back with
``zlib.decompress`` (:func:`read_payload`). A payload that gains nothing from it stays plain
text.

With a retention, the record item carries its expiry as epoch seconds in the table's TTL
attribute, and DynamoDB deletes it (at no charge) some time after that moment. The stack only
allows a retention longer than the replay window, so a record is never gone while a redrive of
it could still arrive. Markers never expire.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import ClientError

from pipeline_common.contract import canonical
from pipeline_common.item_size import write_units
from pipeline_common.retries import RetryPolicy
from processor.counts import marker_key
from processor.keys import record_key

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
        "stored_at": {"S": stored_at.astimezone(UTC).isoformat().replace("+00:00", "Z")},
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
    """Store ``record`` and count it, exactly once; with ``retention``, it expires.

    :param retry: how transient failures are retried in-process. :default: ``RetryPolicy()``
    :param deadline: the ``retry.clock()`` time by which retries stop. :default: 30 s from now
    :raises RecordConflict: when its id is stored with different content.
    :raises StillTransient: when a put still fails transiently after the in-process retries,
        so that Lambda retries the invocation.
    :raises ClientError: for any other AWS error.
    """
    retry = retry or RetryPolicy()
    deadline = retry.clock() + 30 if deadline is None else deadline
    status: Literal["stored", "duplicate"] = "stored"
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
        received, kept = digest(record), _stored_digest(dict(error.response.get("Item") or {}))
        if kept != received:
            raise RecordConflict(record["id"], kept, received) from None
        status = "duplicate"
    retry.call(
        deadline,
        "PutItem of the count marker",
        client.put_item,
        TableName=table_name,
        Item=marker_key(record),
    )
    return StoreResult(record["id"], status)


def _stored_digest(item: dict[str, Any]) -> str:
    """The digest of a stored record item; items stored before digests existed are digested
    from their own fields, so a redelivery of one is still a duplicate."""
    if "digest" in item:
        return str(item["digest"]["S"])
    fields = {name: item[name]["S"] for name in ("id", "type", "source", "timestamp")}
    return digest({**fields, "payload": read_payload(item)})
