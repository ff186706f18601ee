"""The fault run: 1,000 records through the real pipeline code on moto; nothing is lost.

10 % of the records are malformed (mixed defects), 5 % are duplicate deliveries, and the
processor's DynamoDB calls are throttled (some twice in a row: the in-process retries settle
those; some every time: Lambda's retries and then the DLQ) or lose their response after
writing. Lambda's retries, destinations and DLQ come from the synthesized template.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from enricher.enrichment import category_key
from pipeline_tools.dead_letters import peek
from pipeline_tools.operations import redrive
from pipeline_tools.pipeline import RunnerInvoker, runner_pipeline
from tests.conftest import docs_text, stored_and_counted
from tests.fault_injection import fail_after, fail_before

TOTAL, MALFORMED, DUPLICATES = 1000, 100, 50
TYPES = ("order", "refund", "signup", "click", "payment")
CATEGORIES = {"order": "sales", "refund": "sales", "signup": "growth"}

# Each malformed record: how it is broken, and words its DLQ reason must contain.
DEFECTS: list[tuple[str, Any, str]] = [
    ("missing id", lambda r: r.pop("id"), "id: required field is missing"),
    ("bad id", lambda r: r.update(id="has spaces!"), "id: must be 1-128 characters"),
    (
        "naive timestamp",
        lambda r: r.update(timestamp="2026-11-29T10:00:00"),
        "timestamp: must include a time zone",
    ),
    ("not a timestamp", lambda r: r.update(timestamp="soon"), "timestamp: not an ISO-8601"),
    ("payload not object", lambda r: r.update(payload=[1, 2, 3]), "payload: must be a JSON object"),
    (
        "payload too big",
        lambda r: r.update(payload={"blob": "x" * 40000}),
        "payload: must be at most 32768 bytes",
    ),
    ("type too long", lambda r: r.update(type="t" * 65), "type: must be a string of 1-64"),
    ("unknown field", lambda r: r.update(priority="high"), "priority: unknown field"),
    ("missing source", lambda r: r.pop("source"), "source: required field is missing"),
    ("source not string", lambda r: r.update(source=42), "source: must be a string"),
]


def make_workload(seed: int = 20261129) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The 1,000 events in a shuffled order, and the reason each malformed one must carry."""
    rng = random.Random(seed)
    valid_count = TOTAL - MALFORMED - DUPLICATES
    valid = []
    for n in range(valid_count):
        offset = rng.choice(["Z", "+02:00", "-05:00", "+05:30"])
        valid.append(
            {
                "id": f"rec-{n:05d}",
                "type": rng.choice(TYPES),
                "source": rng.choice(["webshop", "app", "partner-api"]),
                "timestamp": f"2026-11-{rng.randint(27, 29):02d}T{rng.randint(0, 23):02d}:"
                f"{rng.randint(0, 59):02d}:00{offset}",
                "payload": {"amount": rng.randint(1, 10_000) / 100, "n": n},
            }
        )
    malformed, reasons = [], {}
    for n in range(MALFORMED):
        record = {**valid[n % valid_count], "id": f"bad-{n:05d}"}
        _, breaks, reason = DEFECTS[n % len(DEFECTS)]
        breaks(record)
        malformed.append(record)
        reasons[_key(record)] = reason
    duplicates = [dict(r) for r in rng.sample(valid, DUPLICATES)]
    events = valid + malformed
    rng.shuffle(events)
    # A duplicate delivery always comes after its original.
    for duplicate in duplicates:
        first = next(i for i, e in enumerate(events) if e.get("id") == duplicate["id"])
        events.insert(rng.randint(first + 1, len(events)), duplicate)
    return events, reasons


def _key(record: dict[str, Any]) -> str:
    return repr(sorted((k, repr(v)[:80]) for k, v in record.items()))


def _number(rid: str) -> int:
    return int(rid.split("-")[1])


def _record_id(params: dict[str, Any]) -> str:
    item = params["Item"]  # the record's put, or its count marker's (sk <type>#<id>)
    return item["id"]["S"] if "id" in item else item["sk"]["S"].rpartition("#")[2]


class FaultPlan:
    """Faults in every stage, chosen by record number:

    * the validator crashes on a few records (it is never retried: they reach the DLQ);
    * the enricher's reads are throttled once for some, and every time for a few (retries
      exhausted: the DLQ);
    * the processor's writes are throttled once or twice for some, every time for a few, and a
      few commits lose their response;
    * Lambda redelivers some events to the enricher after a success (a duplicate mid-chain).

    ``injected["fixed"] = True`` ends the faults that exhaust retries (the operator's fix).
    """

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.injected: Counter = Counter()
        self.remaining: dict[str, int] = {}
        self.lost: set[str] = set()
        self.enricher_reads: Counter = Counter()
        self.validate = pipeline.module("validator").accept

    def install(self) -> Counter:
        client = self.pipeline.module("processor").dynamodb
        fail_before(client, "PutItem", self.throttle)
        fail_after(client, "PutItem", self.lose_response)
        fail_before(self.pipeline.module("enricher").dynamodb, "GetItem", self.throttle_read)
        self.pipeline.module("validator").accept = self.crashing_accept
        self.pipeline.redeliver = self.redeliver
        return self.injected

    def exhausted(self, rid: str, divisor: int, rest: int) -> bool:
        return (
            rid.startswith("rec-") and _number(rid) % divisor == rest and not self.injected["fixed"]
        )

    def throttle(self, params: dict[str, Any]) -> bool:
        rid = _record_id(params)
        n = _number(rid)
        if self.exhausted(rid, 41, 7):
            self.injected["processor_exhausted"] += 1
            return True
        self.remaining.setdefault(rid, 2 if n % 13 == 0 else 1 if n % 7 == 0 else 0)
        if self.remaining[rid] > 0:
            self.remaining[rid] -= 1
            self.injected["throttled"] += 1
            return True
        return False

    def lose_response(self, params: dict[str, Any]) -> bool:
        rid = _record_id(params)
        n = _number(rid)
        if n % 17 == 5 and n % 13 != 0 and rid not in self.lost:
            self.lost.add(rid)
            self.injected["lost_response"] += 1
            return True
        return False

    def throttle_read(self, params: dict[str, Any]) -> bool:
        # The enricher reads CATEGORY#<type>; the record comes from the handler's correlation id.
        rid = str(self.pipeline.module("enricher").logger.get_correlation_id() or "")
        if not rid.startswith("rec-"):
            return False
        self.enricher_reads[rid] += 1
        first = _number(rid) % 23 == 4 and self.enricher_reads[rid] == 1
        if self.exhausted(rid, 43, 11) or first:
            self.injected["enricher_throttled"] += 1
            return True
        return False

    def crashing_accept(self, event: Any, *args: Any, **kwargs: Any) -> Any:
        rid = event.get("id", "") if isinstance(event, dict) else ""
        if self.exhausted(str(rid), 47, 13):
            self.injected["validator_crashed"] += 1
            raise RuntimeError("validator: simulated crash")
        return self.validate(event, *args, **kwargs)

    def redeliver(self, stage: str, event: Any) -> bool:
        record = event.get("responsePayload") if isinstance(event, dict) else None
        rid = str(record.get("id", "")) if isinstance(record, dict) else ""
        if stage == "enricher" and rid.startswith("rec-") and _number(rid) % 19 == 3:
            key = f"redelivered {rid}"
            if not self.injected[key]:
                self.injected[key] = 1
                self.injected["redelivered"] += 1
                return True
        return False


@pytest.fixture
def faults(pipeline) -> Counter:
    """The :class:`FaultPlan` installed on the pipeline; its counts of what it injected."""
    return FaultPlan(pipeline).install()


def test_thousand_records_with_faults_nothing_lost_nothing_twice(
    pipeline, faults, record_property, monkeypatch
):
    events, reasons = make_workload()
    assert len(events) == TOTAL
    ddb = pipeline.session.client("dynamodb")
    table = pipeline.specs["processor"].environment["TABLE_NAME"]
    for record_type, category in CATEGORIES.items():
        ddb.put_item(
            TableName=table, Item={**category_key(record_type), "category": {"S": category}}
        )

    outcomes = pipeline.run(events)
    in_dlq_after_the_run = len(
        peek(pipeline.sqs, pipeline.specs["validator"].dead_letter_queue_url)
    )

    # The operator's fix: the faults that exhausted retries end, and the DLQ is redriven.
    faults["fixed"] = True
    invoker = RunnerInvoker(pipeline)
    redriven = redrive(pipeline.sqs, runner_pipeline(pipeline), invoker)
    invoker.finish()
    again = redrive(pipeline.sqs, runner_pipeline(pipeline), invoker)
    invoker.finish()

    stored, counters = stored_and_counted(ddb, table)
    letters = peek(pipeline.sqs, pipeline.specs["validator"].dead_letter_queue_url)

    valid = {e["id"]: e for e in events if _key(e) not in reasons}
    # The count's day is the record's UTC day, computed here, not by the code under test.
    expected_counters = Counter(
        (e["type"], datetime.fromisoformat(e["timestamp"]).astimezone(UTC).date().isoformat())
        for e in valid.values()
    )
    duplicate_deliveries = TOTAL - MALFORMED - len(valid)
    status = Counter(o.status for o in outcomes)

    # Printed at the end of the pytest run (tests/conftest.py), with or without xdist.
    summary = (
        f"fault run: {TOTAL} in | {len(stored)} stored | {duplicate_deliveries} duplicate "
        f"deliveries | {in_dlq_after_the_run} in DLQ, {redriven.redriven} redriven, "
        f"{len(letters)} left | {status['lost']} lost | throttled writes "
        f"{faults['throttled']} | writes failed to exhaustion {faults['processor_exhausted']} "
        f"| throttled reads {faults['enricher_throttled']} | validator crashes "
        f"{faults['validator_crashed']} | lost responses {faults['lost_response']} | "
        f"redelivered mid-chain {faults['redelivered']} | "
        f"invocations {dict(pipeline.invocations)}"
    )
    record_property("summary", summary)
    # The run is seeded, so the README quotes this very line: a changed run changes the README.
    assert summary in docs_text().splitlines(), summary

    # Every valid record stored exactly once, with its category.
    assert sorted(i["id"]["S"] for i in stored) == sorted(valid)
    categories = Counter(i["category"]["S"] for i in stored)
    assert categories["uncategorized"] == sum(
        1 for e in valid.values() if e["type"] not in CATEGORIES
    )
    # Daily counts equal the distinct valid records per type and UTC day.
    assert counters == dict(expected_counters)
    # After the redrive, the DLQ holds the malformed records only, each with its defect named:
    # the validator's crashes were redriven with the rest (a crash is not a rejection).
    assert len(letters) == MALFORMED
    for letter in letters:
        assert reasons[_key(letter.event)] in letter.error
        assert letter.error_code == "200" and letter.request_id
    # Nothing lost: in = stored + duplicate deliveries + left in the DLQ (each counted once).
    assert len(stored) + duplicate_deliveries + MALFORMED == TOTAL
    assert status["lost"] == 0
    # The faults really happened, in every stage; the first redrive moved what had exhausted
    # its retries, and a second redrive found nothing more to do.
    assert faults["throttled"] >= 100 and faults["lost_response"] >= 30
    assert faults["processor_exhausted"] >= 3 * 15 and faults["enricher_throttled"] >= 30
    assert faults["validator_crashed"] >= 10 and faults["redelivered"] >= 30
    assert redriven.redriven >= 15 + 15 and again.redriven == 0
