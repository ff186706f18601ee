"""Eight processors at once under DynamoDB's conflict rule, with Lambda's async retries.

moto applies one request at a time and never conflicts; the runner's rule
(``pipeline_tools/runner/conflicts.py``) holds a transaction's items for 20 ms, as DynamoDB
does while one is in flight, and refuses what touches them
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html). Each
processor is a thread with its own client; each of Lambda's three attempts is a round of its own
(``pipeline_tools/runner/concurrent.py``). The counts are read twice: right after the runs,
from the markers, and after two roll-ups at once and the markers' TTL
(``pipeline_tools/bench/designs.py``, ``settle``), from the totals. The expected counts are
this file's arithmetic.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pipeline_common.retries import no_sdk_retries
from pipeline_tools.bench.designs import DESIGNS, TABLE, count_items, counted, settle
from pipeline_tools.runner.concurrent import run_concurrently
from pipeline_tools.runner.conflicts import TransactionConflicts
from pipeline_tools.runner.provision import create_table

PROCESSORS = 8
DAY = "2026-11-29"


def record(i: int, record_type: str = "order", day: str = DAY) -> dict[str, Any]:
    return {
        "id": f"{record_type}-{day}-{i:05d}",
        "type": record_type,
        "source": "concurrency-test",
        "timestamp": f"{day}T10:00:00Z",
        "payload": {"n": i},
    }


@pytest.fixture
def table():
    """The stack's table schema on moto, and eight processors' clients under the rule."""
    with mock_aws():
        rule = TransactionConflicts(window_seconds=0.02)
        clients = []
        for _ in range(PROCESSORS):
            client = boto3.client("dynamodb", region_name="us-east-1", config=no_sdk_retries())
            rule.enforce_on(client)
            clients.append(client)
        create_table(clients[0], TABLE)
        yield clients, rule


def stored_ids(client: Any) -> list[str]:
    return [
        item["id"]["S"]
        for page in client.get_paginator("scan").paginate(TableName=TABLE)
        for item in page["Items"]
        if item["pk"]["S"].startswith("RECORD#")
    ]


def test_2000_records_of_one_type_then_a_mix_none_in_the_dlq_counts_exact(table):
    clients, rule = table
    store = DESIGNS["markers"]()
    rng = random.Random(21)

    # 2,000 records of one type and day, arriving at 1,000 a second; 200 delivered twice.
    burst = [record(i) for i in range(2000)]
    burst_deliveries = burst + rng.sample(burst, 200)
    rng.shuffle(burst_deliveries)
    first = run_concurrently(store, clients, burst_deliveries, rate=1000)

    # Then a mix: five types over two days, 150 redeliveries, and a redrive of 100 records of
    # the burst (an operator re-sending what was already stored), all at once.
    types = ("order", "refund", "signup", "click", "payment")
    mix = [
        record(10_000 + i, types[i % 5], ("2026-11-29", "2026-11-30")[i % 2]) for i in range(1000)
    ]
    mix_deliveries = mix + rng.sample(mix, 150) + rng.sample(burst, 100)
    rng.shuffle(mix_deliveries)
    second = run_concurrently(store, clients, mix_deliveries, rate=1000)

    # Nothing in the DLQ; every attempt succeeded at once, so Lambda never retried.
    assert first.dead_letters == [] and second.dead_letters == []
    assert first.failed_attempts == 0 and second.failed_attempts == 0
    assert first.attempts == 2200 and second.attempts == 1250
    # Every valid record stored exactly once.
    ids = stored_ids(clients[0])
    assert len(ids) == len(set(ids)) == 3000
    assert set(ids) == {r["id"] for r in burst + mix}
    # Counts by this test's arithmetic: 2,000 orders on the 29th from the burst; the mix's
    # 1,000 records are 100 of each of the five types on each of the two days.
    expected = {
        "2026-11-29": dict(sorted(({t: 100 for t in types} | {"order": 2000 + 100}).items())),
        "2026-11-30": {t: 100 for t in sorted(types)},
    }
    for day, counts in expected.items():
        assert counted(clients[0], "markers", day) == counts
    # The conflict rule was applied to every write, and nothing ever held an item.
    assert rule.counts["single writes"] >= 2 * 3000 and rule.counts["transactions"] == 0
    # Two roll-ups at once, under the same rule, then the markers' TTL: the same counts, now
    # from a total per day and type (5 types on 2 days) and the roll-up's watermark.
    aged = settle(clients, "markers")
    for day, counts in expected.items():
        assert counted(clients[0], "markers", day, aged) == counts
    assert count_items(clients[0]) == 2 * 5 + 1
    assert len(stored_ids(clients[0])) == 3000


def test_under_the_same_rule_the_first_design_dead_letters_valid_records(table):
    """The rule bites: the transactional counter of the first design, at the same rate, loses
    valid records to the DLQ after Lambda's three attempts (a broken rule would not)."""
    clients, rule = table
    burst = [record(i) for i in range(400)]
    run = run_concurrently(DESIGNS["transaction"](), clients, burst, rate=1000)
    assert rule.counts["transactions cancelled"] > 0
    assert len(run.dead_letters) > 0
    assert all("TransactionConflict" in error for _, error in run.dead_letters)
    # What was not dead-lettered was stored and counted once.
    stored = len(stored_ids(clients[0]))
    assert stored + len(run.dead_letters) == len(burst)
    assert counted(clients[0], "transaction", DAY) == {"order": stored}


def test_the_counts_reader_refuses_a_malformed_day(table):
    clients, _ = table
    with pytest.raises(ValueError, match=r"day: '2026-13' is not a date as YYYY-MM-DD"):
        counted(clients[0], "markers", "2026-13")
    assert Counter(counted(clients[0], "markers", DAY)) == Counter()


def test_batches_at_once_on_the_batched_path_store_once_and_count_exactly(table):
    """The batched path's processor, eight at once: batches of 50 deliveries (a record in two
    batches handled at the same moment included) each put their batch's marker, then each
    record's conditional put (``processor/storage.py``); every record stored once, nothing in
    the DLQ, the counts exact from the markers and again after the roll-ups and the TTL."""
    import uuid
    from dataclasses import replace
    from datetime import UTC, datetime

    from pipeline_tools.bench.designs import runtime

    clients, rule = table
    storage, _, retries = runtime()
    policy = replace(retries.RetryPolicy(), sleep=lambda seconds: None)

    def store_batch(client: Any, batch: dict[str, Any]) -> list[str]:
        now, deadline = datetime.now(UTC), policy.clock() + 30
        storage.store_batch_markers(
            client, TABLE, batch["records"], now, uuid.uuid4().hex, retry=policy, deadline=deadline
        )
        return [
            storage.put_record(client, TABLE, r, now, retry=policy, deadline=deadline).status
            for r in batch["records"]
        ]

    rng = random.Random(33)
    types = ("order", "refund", "signup")
    records = [record(i, types[i % 3]) for i in range(1500)]
    deliveries = records + rng.sample(records, 300)
    rng.shuffle(deliveries)
    batches = [
        {"id": f"batch-{n}", "records": deliveries[start : start + 50]}
        for n, start in enumerate(range(0, len(deliveries), 50))
    ]
    run = run_concurrently(store_batch, clients, batches, rate=200)
    assert run.dead_letters == [] and run.failed_attempts == 0
    ids = stored_ids(clients[0])
    assert len(ids) == len(set(ids)) == len(records)
    # (A record twice in one batch finds its own put at the second: "stored" to the storage
    # layer, which the processor's handler reports as a duplicate, tests/test_batch_entry.py.)
    statuses = Counter(s for result in run.results.values() for s in result)
    assert sum(statuses.values()) == len(deliveries) and statuses["duplicate"] > 0
    expected = {t: 500 for t in types}
    assert counted(clients[0], "markers", DAY) == expected
    aged = settle(clients, "markers")
    assert counted(clients[0], "markers", DAY, aged) == expected
    assert count_items(clients[0]) == len(types) + 1  # a total per type, and the watermark
    assert rule.counts["transactions"] == 0
