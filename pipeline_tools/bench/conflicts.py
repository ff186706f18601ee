"""The storage designs under DynamoDB's conflict rule: the rate each sustains, and its writes.

``python -m pipeline_tools.bench.conflicts [--records N] [--rate R ...] [--design D ...]``

For each design of ``pipeline_tools/bench/designs.py`` and each rate (records of one type a
second, lowest first), N records go through 8 concurrent processors
(``pipeline_tools/runner/concurrent.py``) on moto, with the runner's conflict rule (a transaction
holds its items 20 ms) and Lambda's three attempts as rounds. It reports the valid records
dead-lettered, the rate the processors achieved (this machine's moto is the limit, not
DynamoDB), and the write units per stored record, sized by the meter's rules
(``pipeline_tools/dynamodb_meter.py``) on the requests that completed. Then the table is aged
past the markers' life (``designs.settle``: the roll-ups, then TTL's deletions): it reports the
items left for counts, the read units a roll-up spent per record, and whether the counts read
then are exact. A design stops at its first rate with a dead-lettered record:
that rate is its ceiling here.

A measurement, not a test; ``make bench`` runs it and writes the table into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

#: What ``make bench`` runs, and the defaults here: records of one type and day per run, and
#: the rates asked, lowest first (a design stops at its first rate that dead-letters).
RECORDS = 300
RATES = (50.0, 400.0)
PROCESSORS = 8
WINDOW_SECONDS = 0.02


@dataclass(frozen=True)
class StorageRun:
    design: str
    rate: float
    records: int
    stored: int
    dead_lettered: int
    achieved_rate: float
    write_units_per_record: float
    conflicts: int
    count_items: int = 0
    rollup_read_units_per_record: float = 0.0
    counts_exact: bool = False


def records_of_one_type(count: int) -> list[dict[str, Any]]:
    """``count`` orders of one day, with a payload of about 220 bytes."""
    return [
        {
            "id": f"r-{i:06d}",
            "type": "order",
            "source": "bench",
            "timestamp": "2026-11-29T10:00:00Z",
            "payload": {"n": i, "note": "x" * 200},
        }
        for i in range(count)
    ]


def metered_processors(reader: Any, rule: Any) -> tuple[list[Any], list[Any]]:
    """A client per processor, under ``rule``, without SDK retries, each with its meter."""
    import boto3

    from pipeline_tools.bench.designs import runtime
    from pipeline_tools.dynamodb_meter import DynamoDBMeter

    meters, clients = [], []
    for _ in range(PROCESSORS):
        client = boto3.client(
            "dynamodb", region_name="us-east-1", config=runtime()[2].no_sdk_retries()
        )
        meter = DynamoDBMeter(reader, ["pk", "sk"])
        meter.attach(client)
        rule.enforce_on(client)
        meters.append(meter)
        clients.append(client)
    return meters, clients


def run(design: str, count: int, rate: float) -> StorageRun:
    """``count`` records of one type at ``rate`` a second through ``design``."""
    import boto3
    from moto import mock_aws

    from pipeline_tools.bench import designs
    from pipeline_tools.runner.concurrent import run_concurrently
    from pipeline_tools.runner.conflicts import TransactionConflicts
    from pipeline_tools.runner.provision import create_table

    with mock_aws():
        reader = boto3.client("dynamodb", region_name="us-east-1")
        create_table(reader, designs.TABLE)
        if design == "markers":
            # The roll-up's first run, at deployment: it starts its watermark on the empty table.
            designs.runtime()[1].roll_up(reader, designs.TABLE, datetime.now(UTC))
        rule = TransactionConflicts(window_seconds=WINDOW_SECONDS)
        meters, clients = metered_processors(reader, rule)
        records = records_of_one_type(count)
        result = run_concurrently(designs.DESIGNS[design](), clients, records, rate=rate)
        stored = len(result.results)
        written = sum(m.write_units for m in meters)
        before = sum(m.read_units for m in meters)
        aged = designs.settle(clients, design, reader=reader)
        rollup_reads = (sum(m.read_units for m in meters) - before) / designs.ROLL_UPS_AT_ONCE
        kept = designs.count_items(reader)
        found = designs.counted(reader, design, "2026-11-29", aged)
        exact = found == ({"order": stored} if stored else {})
    return StorageRun(
        design=design,
        rate=rate,
        records=count,
        stored=stored,
        dead_lettered=len(result.dead_letters),
        achieved_rate=result.attempts / result.seconds if result.seconds else 0.0,
        write_units_per_record=written / stored if stored else 0.0,
        conflicts=rule.counts["transactions cancelled"] + rule.counts["single writes rejected"],
        count_items=kept,
        rollup_read_units_per_record=rollup_reads / stored if stored else 0.0,
        counts_exact=exact,
    )


def ladder(
    designs: list[str],
    count: int,
    rates: tuple[float, ...],
    progress: Any,
    finished: Any = lambda outcome: None,
) -> list[StorageRun]:
    """Each design at each rate, lowest first, until its first dead-lettered record;
    ``finished`` gets each run's outcome as soon as it has one."""
    runs = []
    for design in designs:
        for rate in rates:
            progress(f"storage: {design} at {rate:g} records/s ...")
            outcome = run(design, count, rate)
            finished(outcome)
            runs.append(outcome)
            if outcome.dead_lettered:
                break
    return runs


def render(runs: list[StorageRun]) -> list[str]:
    """The BENCHMARKS.md table."""
    lines = [
        "| design | rate asked | achieved | valid records dead-lettered | conflicts | "
        "write units / record | count items kept, aged | roll-up read units / record | "
        "counts exact, aged |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in runs:
        lines.append(
            f"| {r.design} | {r.rate:g}/s | {r.achieved_rate:.0f}/s | "
            f"{r.dead_lettered} of {r.records} | {r.conflicts} | {r.write_units_per_record:.2f} "
            f"| {r.count_items} | {r.rollup_read_units_per_record:.2f} | "
            f"{'yes' if r.counts_exact else 'NO'} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    from pipeline_tools.bench.designs import DESIGNS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=RECORDS, help=f"default {RECORDS}")
    parser.add_argument(
        "--rate", type=float, action="append", default=None, help=f"default {RATES}"
    )
    parser.add_argument("--design", action="append", choices=sorted(DESIGNS), default=None)
    args = parser.parse_args(argv)
    ladder(
        args.design or list(DESIGNS),
        args.records,
        tuple(sorted(args.rate)) if args.rate else RATES,
        lambda line: print(line, file=sys.stderr, flush=True),
        lambda outcome: print(json.dumps(asdict(outcome)), flush=True),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
