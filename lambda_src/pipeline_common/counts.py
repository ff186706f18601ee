"""Exact per-type daily counts, whose storage is bounded by days × types, not by records.

**Markers, written by the processor, that expire.** Each delivery attempt puts, *before* the
record's conditional put, a marker of keys alone:

    pk = MARKER#<hour>#<shard>      sk = <day>#<type>#<id>#<stored_at>      expires_at = +7 days

``hour`` is the attempt's own UTC hour (``YYYY-MM-DDTHH``, when it arrives), ``day`` the record's
UTC day (its ``timestamp``), ``stored_at`` the time the attempt stores in the record item, and
the shard (``00``-``15``) a hash of the id, so an hour's markers spread over 16 partition keys,
each good for DynamoDB's 1,000 write units a second
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html).
A marker *counts* when the record item's ``stored_at`` is its own: the one attempt whose
conditional put stored the record. A duplicate, a conflict or an attempt that stopped before its
put leaves a marker that never counts, and expires.

**On the batched path a batch marks its records together**: before its conditional puts, a
batch puts one marker per 1,000 of its records (:func:`batch_marker_items`), in its attempt's
hour and shard, listing each record as ``<day>#<type>#<id>`` in ``ids``. Each listed record
counts exactly as a marker of its own would: when its record item holds the batch's
``stored_at``. Readers expand a batch marker into one marker a record (:func:`parse_markers`),
so everything below holds for both; a day's reader filters an hour's markers by day.

**The roll-up folds each closed hour, once.** An hour is closed :data:`SEAL_SECONDS` after it
ends: longer than any invocation can run (Lambda's 900-second maximum timeout,
https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html), so no attempt stamped
with that hour can still put its record. :func:`roll_up` takes the closed hours after the
watermark in order. For each, it reads the hour's markers, checks them against their records
(``BatchGetItem``, strongly consistent) and adds each (day, type) tally to its total item:

    pk = COUNTS#<day>      sk = <type>      count = N      folded_to = <the last hour folded>

with ``ADD count :n SET folded_to = :hour`` on the condition that ``folded_to`` is absent or
earlier than the hour. Then the watermark moves to the hour. Hours are folded in order and an
hour is finished before the next, so a total whose ``folded_to`` is the hour or later already
holds it: a roll-up that runs again, or beside another, adds nothing twice, and one that stops
anywhere is finished by the next. No transaction, and one write per (day, type) an hour: no hot
item.

**Late records** (a record's day may be any day from year 1 to 9999) count on their own day,
whenever they arrive: their marker is in the hour they arrive, and that hour's fold adds them to
their day's total.

**Reading a day** (:func:`daily_counts`) is exact at the moment it reads: the watermark, the
day's totals (one ``Query``, O(types)), then the day's markers in the hours the roll-up has not
folded yet (16 ``Query`` calls an open hour, usually one or two hours), checked as the roll-up
checks them and skipped where the total already holds their hour; and the previous layout's
markers of the day, for a table written before this one (:func:`legacy_counts`).

This module imports nothing from the project: the operator tools load it by path
(``pipeline_tools/runtime_source.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

MARKER_PREFIX = "MARKER#"
TOTAL_PREFIX = "COUNTS#"
#: The previous layout's markers, ``COUNT#<day>#<shard>`` / ``<type>#<id>``: one per stored
#: record, never expiring. Nothing writes them any more; the reader still counts them.
LEGACY_PREFIX = "COUNT#"
WATERMARK_KEY = {"pk": {"S": "ROLLUP#WATERMARK"}, "sk": {"S": "WATERMARK"}}
#: The record items' key prefix (``processor/keys.py``), which a marker is checked against.
RECORD_PREFIX = "RECORD#"
#: Partition keys an hour's markers spread over.
SHARDS = 16
#: Days a marker lives: the roll-up has this long to fold it after an outage.
MARKER_DAYS = 7
#: An hour is closed, and may be folded, this long after it ends: Lambda's maximum timeout
#: (900 s) and five minutes more.
SEAL_SECONDS = 1200
#: Keys a ``BatchGetItem`` takes at most.
BATCH_GET_KEYS = 100
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
HOUR_FORMAT = "%Y-%m-%dT%H"

#: How a call is made: ``call(name, function, **params)``; the roll-up passes its retry policy.
Call = Callable[..., Any]


def direct(name: str, function: Callable[..., Any], **params: Any) -> Any:
    return function(**params)


def shard_of(record_id: str) -> int:
    """The record's shard: the first four bytes of SHA-256 of its id, modulo :data:`SHARDS`."""
    return int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:4], "big") % SHARDS


def timestamp_text(moment: datetime) -> str:
    """A moment as the record item stores it (``stored_at``), in UTC with a ``Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def hour_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(HOUR_FORMAT)


def next_hour(hour: str) -> str:
    return hour_of(datetime.strptime(hour, HOUR_FORMAT).replace(tzinfo=UTC) + timedelta(hours=1))


def marker_pk(hour: str, shard: int) -> str:
    return f"{MARKER_PREFIX}{hour}#{shard:02d}"


def marker_item(
    record: dict[str, Any], stored_at: datetime, ttl_attribute: str
) -> dict[str, dict[str, str]]:
    """The marker an attempt puts before it stores ``record`` with ``stored_at``."""
    expires = int((stored_at + timedelta(days=MARKER_DAYS)).timestamp())
    return {
        "pk": {"S": marker_pk(hour_of(stored_at), shard_of(record["id"]))},
        "sk": {
            "S": f"{record['timestamp'][:10]}#{record['type']}#{record['id']}#"
            f"{timestamp_text(stored_at)}"
        },
        ttl_attribute: {"N": str(expires)},
    }


#: The most records one batch marker lists: 1,000 entries of at most 128 + 76 characters stay
#: far below DynamoDB's 400 KB item limit.
BATCH_MARKER_IDS = 1000
#: The sort-key prefix of a batch marker (sorts after every day: a day is digits).
BATCH_SK_PREFIX = "~batch#"


def batch_marker_items(
    records: Iterable[dict[str, Any]], stored_at: datetime, ttl_attribute: str, batch_id: str
) -> list[dict[str, Any]]:
    """The markers a batch puts before it stores its records with ``stored_at`` (the batched
    path): one per 1,000 records, whatever their days and types, listing each as
    ``<day>#<type>#<id>`` in ``ids``, instead of one a record. Each listed record counts, as
    a marker of its own would, only when its record item holds this ``stored_at``; so a batch's
    markers cost a write unit per KB of entries rather than one a record. ``batch_id`` (hex,
    no ``#``) names the batch's attempt and spreads its markers over the shards."""
    entries = sorted({f"{r['timestamp'][:10]}#{r['type']}#{r['id']}" for r in records})
    expires = {"N": str(int((stored_at + timedelta(days=MARKER_DAYS)).timestamp()))}
    items: list[dict[str, Any]] = []
    for part, start in enumerate(range(0, len(entries), BATCH_MARKER_IDS)):
        name = f"{batch_id}.{part}"
        items.append(
            {
                "pk": {"S": marker_pk(hour_of(stored_at), shard_of(name))},
                "sk": {"S": f"{BATCH_SK_PREFIX}{name}#{timestamp_text(stored_at)}"},
                "ids": {"SS": entries[start : start + BATCH_MARKER_IDS]},
                ttl_attribute: expires,
            }
        )
    return items


@dataclass(frozen=True)
class Marker:
    hour: str
    day: str
    type: str
    record_id: str
    stored_at: str


def parse_marker(item: dict[str, Any]) -> Marker:
    """A marker item read back (an id holds no ``#``; a type may); of a batch marker, the
    day and type read ``~batch`` and the batch's attempt stands where a record's id does."""
    hour = item["pk"]["S"][len(MARKER_PREFIX) :].rpartition("#")[0]
    rest, record_id, stored_at = item["sk"]["S"].rsplit("#", 2)
    return Marker(hour, rest[:10], rest[11:], record_id, stored_at)


def parse_markers(item: dict[str, Any]) -> list[Marker]:
    """What a marker item stands for, one :class:`Marker` a record: itself, or, for a batch
    marker, each id it lists."""
    marker = parse_marker(item)
    if "ids" not in item:
        return [marker]
    found = []
    for entry in item["ids"]["SS"]:
        day_and_type, record_id = entry.rsplit("#", 1)
        found.append(
            Marker(marker.hour, day_and_type[:10], day_and_type[11:], record_id, marker.stored_at)
        )
    return found


def _query(client: Any, table: str, call: Call, **params: Any) -> Iterator[dict[str, Any]]:
    """Every item a strongly consistent ``Query`` returns, page by page."""
    start: dict[str, Any] | None = None
    while True:
        extra = {"ExclusiveStartKey": start} if start else {}
        page = call("Query", client.query, TableName=table, ConsistentRead=True, **params, **extra)
        yield from page.get("Items", [])
        start = page.get("LastEvaluatedKey")
        if not start:
            return


def _under(
    client: Any, table: str, pk: str, call: Call, sk_prefix: str = "", keys_only: bool = False
) -> Iterator[dict[str, Any]]:
    """The items of partition ``pk`` (whose sort key starts with ``sk_prefix``, if given)."""
    condition, values = "pk = :pk", {":pk": {"S": pk}}
    if sk_prefix:
        condition += " AND begins_with(sk, :prefix)"
        values[":prefix"] = {"S": sk_prefix}
    extra = {"ProjectionExpression": "pk, sk, ids"} if keys_only else {}
    return _query(
        client,
        table,
        call,
        KeyConditionExpression=condition,
        ExpressionAttributeValues=values,
        **extra,
    )


def hour_markers(
    client: Any, table: str, hour: str, day: str | None = None, call: Call = direct
) -> list[Marker]:
    """The markers of ``hour`` (of one ``day`` only, if given), from its 16 partition keys:
    a record's own, and each record a batch marker lists."""
    # One query a shard: a batch marker lists records of any day, so the day is a filter.
    return [
        marker
        for shard in range(SHARDS)
        for item in _under(client, table, marker_pk(hour, shard), call, keys_only=True)
        for marker in parse_markers(item)
        if day is None or marker.day == day
    ]


def counted(
    client: Any, table: str, markers: Iterable[Marker], call: Call = direct
) -> list[Marker]:
    """The markers that count: their record is stored with their ``stored_at``."""
    markers = list(markers)
    ids = sorted({m.record_id for m in markers})
    stored: dict[str, str] = {}
    for start in range(0, len(ids), BATCH_GET_KEYS):
        keys = [
            {"pk": {"S": f"{RECORD_PREFIX}{i}"}, "sk": {"S": "RECORD"}}
            for i in ids[start : start + BATCH_GET_KEYS]
        ]
        request: dict[str, Any] = {
            table: {
                "Keys": keys,
                "ConsistentRead": True,
                "ProjectionExpression": "pk, sk, stored_at",
            }
        }
        while request:
            answer = call("BatchGetItem", client.batch_get_item, RequestItems=request)
            for item in answer.get("Responses", {}).get(table, []):
                stored[item["pk"]["S"][len(RECORD_PREFIX) :]] = item["stored_at"]["S"]
            request = answer.get("UnprocessedKeys") or {}
    return [m for m in markers if stored.get(m.record_id) == m.stored_at]


def watermark(client: Any, table: str, call: Call = direct) -> str | None:
    """The last hour the roll-up folded, or ``None`` before its first run."""
    item = call(
        "GetItem", client.get_item, TableName=table, Key=WATERMARK_KEY, ConsistentRead=True
    ).get("Item")
    return str(item["hour"]["S"]) if item else None


def first_marker_hour(client: Any, table: str, call: Call = direct) -> str | None:
    """The earliest hour holding a marker: one ``Scan``, only before the first roll-up."""
    hours: set[str] = set()
    start: dict[str, Any] | None = None
    while True:
        extra = {"ExclusiveStartKey": start} if start else {}
        page = call(
            "Scan",
            client.scan,
            TableName=table,
            ConsistentRead=True,
            FilterExpression="begins_with(pk, :marker)",
            ExpressionAttributeValues={":marker": {"S": MARKER_PREFIX}},
            ProjectionExpression="pk",
            **extra,
        )
        hours.update(i["pk"]["S"][len(MARKER_PREFIX) :].rpartition("#")[0] for i in page["Items"])
        start = page.get("LastEvaluatedKey")
        if not start:
            return min(hours, default=None)


def open_hours(client: Any, table: str, now: datetime, call: Call = direct) -> list[str]:
    """The hours after the watermark, up to the current one: those not folded yet."""
    last = hour_of(now + timedelta(minutes=5))  # a processor's clock may run a little ahead
    done = watermark(client, table, call)
    hour = next_hour(done) if done else first_marker_hour(client, table, call)
    hours = []
    while hour is not None and hour <= last:
        hours.append(hour)
        hour = next_hour(hour)
    return hours


def totals(client: Any, table: str, day: str, call: Call = direct) -> dict[str, tuple[int, str]]:
    """The folded totals of ``day``: type -> (count, the last hour folded into it)."""
    return {
        item["sk"]["S"]: (int(item["count"]["N"]), item["folded_to"]["S"])
        for item in _under(client, table, f"{TOTAL_PREFIX}{day}", call)
    }


def daily_counts(
    client: Any, table_name: str, day: str, now: datetime | None = None
) -> dict[str, int]:
    """The records stored per type for ``day`` (``YYYY-MM-DD``), exact at the moment it reads.

    :raises ValueError: for a day that is not a date as ``YYYY-MM-DD``.
    """
    check_day(day)
    hours = open_hours(client, table_name, now or datetime.now(UTC))
    folded = totals(client, table_name, day)
    counts: Counter[str] = Counter({t: n for t, (n, _) in folded.items()})
    for hour in hours:
        pending = counted(client, table_name, hour_markers(client, table_name, hour, day))
        counts.update(m.type for m in pending if folded.get(m.type, (0, ""))[1] < m.hour)
    counts.update(legacy_counts(client, table_name, day))
    return dict(sorted(counts.items()))


def legacy_counts(client: Any, table: str, day: str, call: Call = direct) -> Counter[str]:
    """What the previous layout counted for ``day``: its markers (one per record it stored,
    written after the record), by type. A record it stored is a duplicate to this layout, whose
    marker never counts, so no record is counted in both. 16 ``Query`` calls, empty for a day
    stored after the upgrade."""
    return Counter(
        item["sk"]["S"].rsplit("#", 1)[0]
        for shard in range(SHARDS)
        for item in _under(client, table, f"{LEGACY_PREFIX}{day}#{shard:02d}", call, keys_only=True)
    )


def check_day(day: str) -> None:
    """:raises ValueError: unless ``day`` is a real date written ``YYYY-MM-DD``."""
    try:
        if not DAY.fullmatch(day):
            raise ValueError
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        raise ValueError(f"day: {day!r} is not a date as YYYY-MM-DD") from None


def closed_hours(client: Any, table: str, now: datetime, call: Call = direct) -> list[str]:
    """The hours after the watermark that are closed (ended :data:`SEAL_SECONDS` ago)."""
    last = hour_of(now - timedelta(seconds=SEAL_SECONDS) - timedelta(hours=1))
    return [h for h in open_hours(client, table, now, call) if h <= last]


def fold_hour(client: Any, table: str, hour: str, call: Call = direct) -> Counter[tuple[str, str]]:
    """Add ``hour``'s counted markers to their days' totals, each (day, type) once; then move
    the watermark to ``hour``. What it added, by (day, type); nothing when already folded."""
    tally = Counter(
        (m.day, m.type)
        for m in counted(client, table, hour_markers(client, table, hour, None, call), call)
    )
    added: Counter[tuple[str, str]] = Counter()
    for (day, record_type), n in sorted(tally.items()):
        if _add(client, table, call, day, record_type, n, hour):
            added[(day, record_type)] = n
    advance(client, table, call, hour)
    return added


def _add(
    client: Any, table: str, call: Call, day: str, record_type: str, n: int, hour: str
) -> bool:
    try:
        call(
            "UpdateItem of a day's total",
            client.update_item,
            TableName=table,
            Key={"pk": {"S": f"{TOTAL_PREFIX}{day}"}, "sk": {"S": record_type}},
            UpdateExpression="ADD #count :n SET folded_to = :hour",
            ConditionExpression="attribute_not_exists(folded_to) OR folded_to < :hour",
            ExpressionAttributeNames={"#count": "count"},
            ExpressionAttributeValues={":n": {"N": str(n)}, ":hour": {"S": hour}},
        )
    except client.exceptions.ConditionalCheckFailedException:
        return False  # this hour is in it already
    return True


def advance(client: Any, table: str, call: Call, hour: str) -> None:
    """Move the watermark to ``hour``, unless it is there or further already."""
    # A failed condition: another roll-up moved it as far or further.
    with contextlib.suppress(client.exceptions.ConditionalCheckFailedException):
        call(
            "UpdateItem of the watermark",
            client.update_item,
            TableName=table,
            Key=WATERMARK_KEY,
            UpdateExpression="SET #hour = :hour",
            ConditionExpression="attribute_not_exists(#hour) OR #hour < :hour",
            ExpressionAttributeNames={"#hour": "hour"},
            ExpressionAttributeValues={":hour": {"S": hour}},
        )


def roll_up(
    client: Any,
    table: str,
    now: datetime,
    call: Call = direct,
    more_time: Callable[[], bool] = lambda: True,
) -> list[str]:
    """Fold every closed hour after the watermark, in order, while ``more_time()``; the hours
    folded. With no watermark and no marker, the watermark starts at the last closed hour."""
    hours = closed_hours(client, table, now, call)
    if not hours and watermark(client, table, call) is None:
        advance(client, table, call, hour_of(now - timedelta(seconds=SEAL_SECONDS, hours=1)))
    folded = []
    for hour in hours:
        if not more_time():
            break
        fold_hour(client, table, hour, call)
        folded.append(hour)
    return folded
