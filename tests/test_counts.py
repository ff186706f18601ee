"""Counts across the roll-up: exact before, during and after it, late records included, through
crashes at every step and roll-ups that run twice or beside each other; bounded after the
markers' TTL.

Each test drives the processor's own storage code (``processor/storage.py``) and the roll-up
(``pipeline_common/counts.py``) on moto, with an injected clock: a record is stored "at" a
moment, a roll-up runs "at" a moment. The expected counts are this file's arithmetic: the
distinct records it stored, by their day and type.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pipeline_common import counts
from pipeline_common.retries import RetryPolicy, StillTransient
from pipeline_tools.bench.designs import TABLE, count_items, expire
from pipeline_tools.runner.provision import create_table
from processor.storage import store
from tests.fault_injection import fail_before

BASE = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
#: The in-process retries, without their waits.
RETRY = replace(RetryPolicy(), sleep=lambda seconds: None)


class Crash(Exception):
    """A roll-up stopped here: its process died, or its call timed out."""


@pytest.fixture
def client():
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(dynamodb, TABLE)
        yield dynamodb


def record(i: int, record_type: str, day: str) -> dict[str, Any]:
    return {
        "id": f"{record_type}-{day}-{i:04d}",
        "type": record_type,
        "source": "counts-test",
        "timestamp": f"{day}T08:30:00Z",
        "payload": {"n": i},
    }


def put(client: Any, rec: dict[str, Any], at: datetime) -> str:
    """Deliver ``rec`` to the processor's storage at ``at``; stored or duplicate."""
    return str(store(client, TABLE, rec, at, retry=RETRY, deadline=RETRY.clock() + 5).status)


def read(client: Any, expected: Counter[tuple[str, str]], now: datetime) -> dict[str, Any]:
    """Each day of ``expected`` as the reader gives it at ``now``."""
    return {
        day: counts.daily_counts(client, TABLE, day, now)
        for day in sorted({d for d, _ in expected})
    }


def by_day(expected: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    days: dict[str, dict[str, int]] = {}
    for (day, record_type), n in sorted(expected.items()):
        days.setdefault(day, {})[record_type] = n
    return days


def fail_to_store(rec: dict[str, Any], at: datetime) -> None:
    """A delivery whose marker is put and whose record put is throttled past every retry, on
    a client of its own (a processor whose invocation then fails)."""
    throttled = boto3.client("dynamodb", region_name="us-east-1")
    fail_before(throttled, "PutItem", lambda p: p["Item"]["pk"]["S"].startswith("RECORD#"))
    with pytest.raises(StillTransient):
        put(throttled, rec, at)


def roll_up(client: Any, now: datetime, call: Any = counts.direct) -> list[str]:
    return counts.roll_up(client, TABLE, now, call)


def idle_until(client: Any, now: datetime) -> None:
    """The hourly runs up to ``now`` over hours that hold no marker: each only moves the
    watermark (``test_an_empty_hour_moves_only_the_watermark``). One ``Scan`` checks the
    hours are empty, instead of 16 queries an hour of moto time."""
    hours = counts.closed_hours(client, TABLE, now)
    markers = [
        counts.parse_marker(i)
        for page in client.get_paginator("scan").paginate(TableName=TABLE)
        for i in page["Items"]
        if i["pk"]["S"].startswith(counts.MARKER_PREFIX)
    ]
    assert hours and not {m.hour for m in markers} & set(hours), "hours with markers to fold"
    counts.advance(client, TABLE, counts.direct, hours[-1])


def test_an_empty_hour_moves_only_the_watermark(client):
    put(client, record(1, "order", "2026-11-29"), BASE)
    roll_up(client, BASE + timedelta(hours=1, minutes=25))
    before = sorted(
        str(i)
        for page in client.get_paginator("scan").paginate(TableName=TABLE)
        for i in page["Items"]
    )
    assert counts.fold_hour(client, TABLE, "2026-11-29T11") == Counter()
    after = sorted(
        str(i)
        for page in client.get_paginator("scan").paginate(TableName=TABLE)
        for i in page["Items"]
    )
    changed = set(after) - set(before)
    assert len(changed) == 1 and "ROLLUP#WATERMARK" in changed.pop() and len(after) == len(before)
    assert counts.watermark(client, TABLE) == "2026-11-29T11"


def test_a_run_spanning_roll_ups_counts_every_record_once_late_ones_included(client):
    expected: Counter[tuple[str, str]] = Counter()

    def deliver(rec: dict[str, Any], at: datetime) -> None:
        if put(client, rec, at) == "stored":
            expected[(rec["timestamp"][:10], rec["type"])] += 1

    # Before: 30 records of two types on the 29th, stored 10:00-10:29, 5 delivered twice.
    first = [record(i, ("order", "refund")[i % 2], "2026-11-29") for i in range(30)]
    for i, rec in enumerate(first):
        deliver(rec, BASE + timedelta(minutes=i))
    for rec in first[:5]:
        deliver(rec, BASE + timedelta(minutes=45))
    assert expected == {("2026-11-29", "order"): 15, ("2026-11-29", "refund"): 15}
    assert read(client, expected, BASE + timedelta(hours=1)) == by_day(expected)

    # The roll-up at 11:25 folds hour 10 (closed at 11:20) and nothing later.
    assert roll_up(client, BASE + timedelta(hours=1, minutes=25)) == ["2026-11-29T10"]
    assert counts.totals(client, TABLE, "2026-11-29") == {
        "order": (15, "2026-11-29T10"),
        "refund": (15, "2026-11-29T10"),
    }

    # During: the next roll-up (12:30, folding hour 11) takes records between its calls, of
    # the open hour 12: late ones for the rolled-up 29th, one for the year 1 and one for 9999.
    during = [record(100 + i, "order", "2026-11-29") for i in range(6)] + [
        record(200, "signup", "0001-01-01"),
        record(201, "signup", "9999-12-31"),
    ]
    pending = iter(during)

    def records_arrive(name: str, function: Any, **params: Any) -> Any:
        rec = next(pending, None)
        if rec is not None:
            deliver(rec, BASE + timedelta(hours=2, minutes=10))
        return function(**params)

    assert roll_up(client, BASE + timedelta(hours=2, minutes=30), records_arrive) == [
        "2026-11-29T11"
    ]
    assert next(pending, None) is None, "every record arrived during the roll-up"
    assert read(client, expected, BASE + timedelta(hours=2, minutes=30)) == by_day(expected)

    # After: a delivery that failed on the 29th (its record put throttled until Lambda gave
    # up, its marker left behind) is redriven from the DLQ two days later, beside more late
    # records for the rolled-up 29th.
    failed = record(300, "refund", "2026-11-29")
    fail_to_store(failed, BASE + timedelta(hours=2, minutes=15))
    assert roll_up(client, BASE + timedelta(hours=3, minutes=25)) == ["2026-11-29T12"]
    later = BASE + timedelta(days=2)
    idle_until(client, later)
    for i in range(4):
        deliver(record(400 + i, "refund", "2026-11-29"), later + timedelta(minutes=i))
    deliver(failed, later + timedelta(minutes=10))
    assert read(client, expected, later + timedelta(minutes=30)) == by_day(expected)

    # The roll-up, then the same again: each hour is added once.
    assert roll_up(client, later + timedelta(hours=2)) == ["2026-12-01T09", "2026-12-01T10"]
    assert roll_up(client, later + timedelta(hours=2)) == []
    assert read(client, expected, later + timedelta(hours=2)) == by_day(expected)
    assert expected == {
        ("2026-11-29", "order"): 21,
        ("2026-11-29", "refund"): 20,
        ("0001-01-01", "signup"): 1,
        ("9999-12-31", "signup"): 1,
    }


# --- a roll-up that crashes, or runs beside another ----------------------------------------

#: When the roll-ups below run: hours 10 and 11 of BASE's day are closed, 12 is not.
ROLL_UP_AT = BASE + timedelta(hours=2, minutes=25)


def scenario(client: Any) -> tuple[list[dict[str, Any]], Counter[tuple[str, str]]]:
    """Markers in two closed hours and the open one: two days and two types, a duplicate and a
    failed delivery among them. The table's items, and the counts by this file's arithmetic."""
    expected: Counter[tuple[str, str]] = Counter()
    for i in range(12):
        rec = record(i, ("order", "refund")[i % 2], ("2026-11-28", "2026-11-29")[i % 3 == 0])
        at = BASE + timedelta(minutes=50 * i // 4)  # hours 10, 11 and 12
        assert put(client, rec, at) == "stored"
        expected[(rec["timestamp"][:10], rec["type"])] += 1
    assert put(client, record(0, "order", "2026-11-29"), BASE + timedelta(hours=1)) == "duplicate"
    fail_to_store(record(99, "order", "2026-11-29"), BASE + timedelta(minutes=5))
    items = [
        i for page in client.get_paginator("scan").paginate(TableName=TABLE) for i in page["Items"]
    ]
    return items, expected


def copy_of(client: Any, items: list[dict[str, Any]], name: str) -> str:
    create_table(client, name)
    for start in range(0, len(items), 25):
        client.batch_write_item(
            RequestItems={name: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]}
        )
    return name


def steps_of(client: Any, table: str) -> list[str]:
    """The calls a clean roll-up makes, in order."""
    names: list[str] = []

    def record_call(name: str, function: Any, **params: Any) -> Any:
        names.append(name)
        return function(**params)

    counts.roll_up(client, table, ROLL_UP_AT, record_call)
    return names


def exact(client: Any, table: str, expected: Counter[tuple[str, str]]) -> bool:
    days = sorted({d for d, _ in expected})
    found = {d: counts.daily_counts(client, table, d, ROLL_UP_AT) for d in days}
    folded = {(d, t): n for d in days for t, (n, _) in counts.totals(client, table, d).items()}
    # Hours 10 and 11 are in the totals; hour 12's records are still read from markers.
    in_hour_12 = Counter(
        (m.day, m.type)
        for m in counts.counted(client, table, counts.hour_markers(client, table, "2026-11-29T12"))
    )
    return found == by_day(expected) and Counter(folded) + in_hour_12 == expected


def crash_at(step: int, after: bool) -> Any:
    """A call hook that crashes at call number ``step``: before making it, or after it was
    made (its answer lost)."""
    calls = 0

    def crash(name: str, function: Any, **params: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == step and not after:
            raise Crash(name)
        answer = function(**params)
        if calls == step:
            raise Crash(f"{name}: done, its answer lost")
        return answer

    return crash


def another_at(step: int, client: Any, table: str) -> Any:
    """A call hook that runs a whole other roll-up before call number ``step``."""
    calls = 0

    def another_runs_meanwhile(name: str, function: Any, **params: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == step:
            counts.roll_up(client, table, ROLL_UP_AT)
        return function(**params)

    return another_runs_meanwhile


def test_a_crash_at_any_step_of_the_roll_up_is_finished_by_the_next_run(client):
    items, expected = scenario(client)
    steps = steps_of(client, copy_of(client, items, "clean"))
    assert steps.count("Query") == 2 * counts.SHARDS and "BatchGetItem" in steps
    for k, step in enumerate(steps):
        # Before each call; and after each write, as its answer is lost (a read whose answer
        # is lost is a crash before the next call).
        for after in (False, True) if step.startswith("UpdateItem") else (False,):
            table = copy_of(client, items, f"crash-{k}-{after}")
            crash = crash_at(k + 1, after)
            with pytest.raises(Crash):
                counts.roll_up(client, table, ROLL_UP_AT, crash)
            # Read in between: a total may be ahead of the watermark, and is not read twice.
            days = sorted({d for d, _ in expected})
            assert {d: counts.daily_counts(client, table, d, ROLL_UP_AT) for d in days} == by_day(
                expected
            ), f"read after a crash {'after' if after else 'at'} {step}"
            # Lambda runs the event again; the next hour's run would do the same.
            counts.roll_up(client, table, ROLL_UP_AT)
            assert exact(client, table, expected), f"crash {'after' if after else 'at'} {step}"
            assert counts.watermark(client, table) == "2026-11-29T11"


def test_a_roll_up_beside_another_at_any_step_adds_nothing_twice(client):
    items, expected = scenario(client)
    steps = steps_of(client, copy_of(client, items, "clean"))
    for k, step in enumerate(steps):
        table = copy_of(client, items, f"beside-{k}")
        counts.roll_up(client, table, ROLL_UP_AT, another_at(k + 1, client, table))
        assert exact(client, table, expected), f"another roll-up ran before {step}"


# --- the stack's age ------------------------------------------------------------------------


def test_after_the_markers_ttl_the_counts_keep_an_item_per_day_and_type(client):
    """Three days of records of four types, a failed delivery redriven 13 days later (the DLQ
    keeps a message 14 days), the roll-up running along; then the clock passes every marker's
    7 days and TTL deletes what has expired. The counts are unchanged, and what is left for
    them is a total per day and type and the watermark, however many records there were."""
    types = ("order", "refund", "signup", "click")
    days = ("2026-11-27", "2026-11-28", "2026-11-29")
    expected: Counter[tuple[str, str]] = Counter()
    for i in range(120):
        rec = record(i, types[i % 4], days[i % 3])
        assert put(client, rec, BASE + timedelta(minutes=i)) == "stored"
        expected[(rec["timestamp"][:10], rec["type"])] += 1
    failed = record(500, "click", "2026-11-27")
    fail_to_store(failed, BASE + timedelta(hours=3))
    roll_up(client, BASE + timedelta(hours=6))
    redriven = BASE + timedelta(days=13)
    idle_until(client, redriven)
    assert put(client, failed, redriven) == "stored"
    expected[("2026-11-27", "click")] += 1
    before = read(client, expected, redriven + timedelta(minutes=1))
    assert before == by_day(expected)

    # The hourly runs up to a week after the redrive; then TTL's deletions.
    roll_up(client, redriven + timedelta(hours=2))
    aged = redriven + timedelta(days=8)
    idle_until(client, aged)
    deleted = expire(client, aged)
    assert deleted == 120 + 1 + 1  # every marker: the stored, the failed and the redriven
    assert read(client, expected, aged) == before
    assert count_items(client) == len(days) * len(types) + 1
    # A record's own item is untouched: records expire by their own retention, or never.
    stored = [
        i
        for page in client.get_paginator("scan").paginate(TableName=TABLE)
        for i in page["Items"]
        if i["pk"]["S"].startswith("RECORD#")
    ]
    assert len(stored) == 121


def test_reading_a_day_costs_the_same_requests_for_10_records_as_for_200(client):
    """The reader's requests depend on the open hours (after the watermark) and the day's
    types, not on its records: a ``GetItem`` of the watermark, a ``Query`` of the day's totals,
    16 of each open hour's markers and 16 of the previous layout's, and a ``BatchGetItem``
    only for markers pending."""
    for i in range(200):
        day = "2026-11-28" if i < 10 else "2026-11-29"
        put(client, record(i, ("order", "refund")[i % 2], day), BASE + timedelta(seconds=9 * i))
    now = BASE + timedelta(hours=2, minutes=25)
    roll_up(client, now)
    made: Counter[str] = Counter()
    client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: made.update([model.name])
    )
    requests = {}
    for day, n in (("2026-11-28", 10), ("2026-11-29", 190)):
        made.clear()
        assert sum(counts.daily_counts(client, TABLE, day, now).values()) == n
        requests[day] = dict(made)
    open_hours = len(counts.open_hours(client, TABLE, now))
    assert open_hours == 1  # hour 12: the watermark is at 11
    assert requests["2026-11-28"] == requests["2026-11-29"]
    assert requests["2026-11-29"] == {"GetItem": 1, "Query": 1 + 16 * open_hours + 16}


def test_a_table_written_by_the_previous_layout_keeps_its_counts(client):
    """Before this layout, the processor put the record, then a marker of keys alone,
    ``COUNT#<day>#<shard>`` / ``<type>#<id>``, never expiring. Those days still count: the
    reader adds the old markers to the totals. A record stored then and delivered again now is
    a duplicate, and counts once."""
    old = [record(i, ("order", "refund")[i % 3 == 0], "2026-11-20") for i in range(9)]
    for rec in old:
        assert put(client, rec, BASE - timedelta(days=9)) == "stored"
    # As the previous release left the table: its markers, and none of this layout's.
    for page in client.get_paginator("scan").paginate(TableName=TABLE):
        for item in page["Items"]:
            if item["pk"]["S"].startswith(counts.MARKER_PREFIX):
                client.delete_item(TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]})
    for rec in old:
        shard = counts.shard_of(rec["id"])
        client.put_item(
            TableName=TABLE,
            Item={
                "pk": {"S": f"COUNT#2026-11-20#{shard:02d}"},
                "sk": {"S": f"{rec['type']}#{rec['id']}"},
            },
        )
    # After the upgrade: a redelivery of an old record, and new records for the same day.
    assert put(client, old[0], BASE) == "duplicate"
    for i in range(4):
        assert put(client, record(50 + i, "order", "2026-11-20"), BASE) == "stored"
    expected = {"2026-11-20": {"order": 6 + 4, "refund": 3}}
    assert read(client, Counter({("2026-11-20", "order"): 1}), BASE) == expected
    roll_up(client, BASE + timedelta(hours=1, minutes=25))
    assert read(client, Counter({("2026-11-20", "order"): 1}), BASE + timedelta(hours=2)) == (
        expected
    )


def test_a_batchs_markers_count_each_stored_record_once_through_the_roll_up(client):
    """The batched path: one marker per (day, type) of a batch lists its ids. A listed record
    that was stored counts once; one whose put never happened, or that a later batch
    delivered again (a duplicate: another stored_at), does not. Exact before and after the
    roll-up folds the hour."""
    from processor.storage import put_record, store_batch_markers

    first = [record(i, "order", "2026-11-29") for i in range(5)]
    first += [record(i, "click", "2026-11-28") for i in range(3)]
    at = BASE + timedelta(minutes=5)
    store_batch_markers(client, TABLE, first, at, "a1", retry=RETRY, deadline=RETRY.clock() + 5)
    markers = [
        i for i in client.scan(TableName=TABLE)["Items"] if i["pk"]["S"].startswith("MARKER#")
    ]
    assert [len(m["ids"]["SS"]) for m in markers] == [8]  # one for the batch: 8 records, 2 days
    stored = first[:4] + first[5:]  # order-0004's put never happens (its invocation failed)
    for rec in stored:
        put_record(client, TABLE, rec, at, retry=RETRY, deadline=RETRY.clock() + 5)
    # A later batch delivers two of them again, and the missing one for the first time.
    again = [first[0], first[5], first[4]]
    later = at + timedelta(minutes=10)
    store_batch_markers(client, TABLE, again, later, "b2", retry=RETRY, deadline=RETRY.clock() + 5)
    results = [
        put_record(client, TABLE, rec, later, retry=RETRY, deadline=RETRY.clock() + 5).status
        for rec in again
    ]
    assert results == ["duplicate", "duplicate", "stored"]
    expected = Counter(("2026-11-29", "order") for _ in range(5))
    expected += Counter(("2026-11-28", "click") for _ in range(3))
    assert read(client, expected, later) == by_day(expected)
    assert roll_up(client, BASE + timedelta(hours=1, minutes=25)) == ["2026-11-29T10"]
    assert read(client, expected, BASE + timedelta(hours=1, minutes=25)) == by_day(expected)
