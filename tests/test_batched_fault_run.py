"""The fault run on the batched path: the same 1,000 records and faults as
``tests/test_fault_run.py``, sent with the operator's ``send`` (packed, SendMessageBatch) to the
validator's queue, through the emulated SQS event sources; then the operator's fix and
``redrive``, which sends each dead letter back to the queue of the stage that failed it.

Nothing is lost and nothing is stored or counted twice; the DLQ ends holding the malformed
records alone, each with its defect named.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

from enricher.enrichment import category_key
from pipeline_tools.dead_letters import peek
from pipeline_tools.operations import redrive, send
from pipeline_tools.stage_queues import QueueInvoker, queue_pipeline
from tests.conftest import queue_pipeline_on_moto, stored_and_counted
from tests.test_fault_run import CATEGORIES, MALFORMED, TOTAL, FaultPlan, _key, make_workload


def test_thousand_records_with_faults_on_the_batched_path(batched_assembly, record_property):
    _, _, template = batched_assembly
    with queue_pipeline_on_moto(batched_assembly) as runner:
        for function in runner.functions.values():
            policy = getattr(function.module, "RETRY", None)
            if policy is not None:
                function.module.RETRY = replace(policy, sleep=lambda seconds: None)
        faults = FaultPlan(runner).install()
        ddb = runner.session.client("dynamodb")
        for record_type, category in CATEGORIES.items():
            ddb.put_item(
                TableName=runner.table,
                Item={**category_key(record_type), "category": {"S": category}},
            )
        urls = {logical: values["Ref"] for logical, values in runner.physical.items()}
        pipeline, queues = queue_pipeline(template, urls, runner.dlq)
        invoker = QueueInvoker(runner.sqs, queues)

        events, reasons = make_workload()
        sent = send(events, invoker, pipeline.entry)
        runner.run()
        in_dlq_after_the_run = len(peek(runner.sqs, runner.dlq, pipeline.failed_stage))
        faults["fixed"] = True  # the operator's fix, then the redrive
        first = redrive(runner.sqs, pipeline, invoker)
        runner.run()
        again = redrive(runner.sqs, pipeline, invoker)
        runner.run()
        stored, counters = stored_and_counted(ddb, runner.table)
        letters = peek(runner.sqs, runner.dlq, pipeline.failed_stage)

    valid = {e["id"]: e for e in events if _key(e) not in reasons}
    expected = Counter(
        (e["type"], datetime.fromisoformat(e["timestamp"]).astimezone(UTC).date().isoformat())
        for e in valid.values()
    )
    record_property(
        "summary",
        f"batched fault run: {TOTAL} in | {len(stored)} stored | {in_dlq_after_the_run} in DLQ, "
        f"{first.redriven} redriven, {len(letters)} left | send calls {invoker.calls} | "
        f"invocations {dict(runner.tally.invocations)}",
    )
    assert sent.sent == TOTAL and not sent.refused
    # every faulted kind happened, and the retries-exhausting ones reached the DLQ first
    assert faults["processor_exhausted"] and faults["validator_crashed"]
    assert faults["enricher_throttled"] and faults["lost_response"]
    assert in_dlq_after_the_run > MALFORMED and first.redriven == in_dlq_after_the_run - MALFORMED
    assert again.redriven == 0
    assert sorted(i["id"]["S"] for i in stored) == sorted(valid)
    assert counters == dict(expected)
    assert len(letters) == MALFORMED
    for letter in letters:
        assert letter.failed_stage == "validator"
        assert reasons[_key(letter.event)] in letter.error
