"""Today's storage under DynamoDB's conflict rule: processors at once, Lambda's retries in rounds.

``python -m pipeline_tools.bench.conflicts [--records N] [--rate R ...]`` stores N records of one
type with 8 concurrent processors (threads, each with its own client) through
``processor.storage.store``, on moto with :class:`~pipeline_tools.runner.conflicts.
TransactionConflicts` (a transaction holds its items 20 ms). Each record gets Lambda's three
attempts; the retries come a minute or two later in Lambda, so each attempt is a round of its
own, paced at the same rate. It prints, per rate, how many valid records would be dead-lettered.
A measurement, not a test: issue 21's storage redesign is measured against it.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
KEYS = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
ATTRIBUTES = [{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")]


def run(count: int, rate: float, *, workers: int = 8, attempts: int = 3) -> dict[str, Any]:
    """Store ``count`` records of one type at ``rate`` records/s; what became of them."""
    import boto3
    from moto import mock_aws

    from pipeline_tools.runner.conflicts import TransactionConflicts

    sys.path.insert(0, str(ROOT / "lambda_src"))
    from processor.storage import store

    records = [
        {
            "id": f"r-{i:05d}",
            "type": "order",
            "source": "bench",
            "timestamp": "2026-11-29T10:00:00Z",
            "payload": {"n": i},
        }
        for i in range(count)
    ]
    with mock_aws():
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName="t", KeySchema=KEYS, AttributeDefinitions=ATTRIBUTES,
            BillingMode="PAY_PER_REQUEST",
        )  # fmt: skip
        rule = TransactionConflicts(window_seconds=0.02)
        clients = [boto3.client("dynamodb", region_name="us-east-1") for _ in range(workers)]
        for client in clients:
            rule.enforce_on(client)
        pending: list[dict[str, Any]] = records
        stored = 0
        for _ in range(attempts):
            done, pending = _round(store, clients, pending, rate)
            stored += done
    return {
        "records": count,
        "rate_per_second": rate,
        "stored": stored,
        "valid_records_dead_lettered": len(pending),
        **dict(rule.counts),
    }


def _round(
    store: Any, clients: list[Any], records: list[dict[str, Any]], rate: float
) -> tuple[int, list[dict[str, Any]]]:
    """One attempt at every record, by all the processors at once: (stored, failed)."""
    work: queue.Queue[dict[str, Any]] = queue.Queue()
    for record in records:
        work.put(record)
    failed: list[dict[str, Any]] = []
    stored = [0]
    lock = threading.Lock()

    def worker(client: Any) -> None:
        while True:
            try:
                record = work.get_nowait()
            except queue.Empty:
                return
            time.sleep(len(clients) / rate)  # arrivals at `rate` across the processors
            try:
                store(client, "t", record, datetime.now(UTC))
            except Exception:
                with lock:
                    failed.append(record)
            else:
                with lock:
                    stored[0] += 1

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return stored[0], failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--rate", type=float, action="append", default=None)
    args = parser.parse_args(argv)
    for rate in args.rate or [50.0, 500.0]:
        print(json.dumps(run(args.records, rate)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
