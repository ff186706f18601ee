"""End-to-end latency on the batched path, from the batching window and the emulator.

Records arrive at 1 M and 10 M a month (evenly, in virtual time) and go through the real
handlers on moto. The entry stage's five pollers share the arrivals and each batch waits out
the window unless it fills first (``pipeline_tools/runner/event_source.py``,
``QueuePipeline.run_arriving``). Then the batch's records pass the three stages, one
invocation each: the stages after the entry take a packed message as soon as it is sent (a
long poll "returns messages as soon as they become available",
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html),
and each invocation lasts what the bill's duration model gives for its batch
(``pipeline_tools/bill/batching.invocation_ms``: the seed's 100 ms, the measured work a record,
10 ms a DynamoDB request). A record is stored when its batch's processor invocation ends.

The bound the settings give (docs/batching.md): the window, plus each stage's invocation, at
most its timeout. At these volumes no batch fills before the window ends, so the window is most
of the latency.
"""

from __future__ import annotations

import copy
import json

import pytest

from pipeline_tools.bill.batching import invocation_ms
from pipeline_tools.bill.model import model_from_template
from pipeline_tools.bill.workload import SECONDS_PER_MONTH, Workload
from tests.conftest import (
    assembly_of,
    cdk_context,
    docs_text,
    queue_pipeline_on_moto,
    sample_record,
    stored_and_counted,
    synth_app,
)

WINDOW, BATCH = 60, 100


@pytest.fixture(scope="module")
def designed_assembly():
    """dev on the batched path with the window and batch size docs/batching.md prices."""
    settings = copy.deepcopy(cdk_context()["pipeline"])
    settings["dev"]["ingestion"] = {
        "mode": "batched",
        "batch_size": BATCH,
        "batching_window_seconds": WINDOW,
    }
    return assembly_of(synth_app("dev", {"pipeline": settings}))


@pytest.mark.parametrize(("per_month", "records"), [(1_000_000, 300), (10_000_000, 600)])
def test_the_p99_latency_is_within_the_bound_the_settings_give(
    designed_assembly, record_property, per_month, records
):
    _, _, template = designed_assembly
    rate = per_month / SECONDS_PER_MONTH
    bodies = [json.dumps(sample_record(id=f"lat-{i:04d}")) for i in range(records)]
    with queue_pipeline_on_moto(designed_assembly) as runner:
        gathered = runner.run_arriving(bodies, rate, "validator")
        stored, _ = stored_and_counted(runner.session.client("dynamodb"), runner.table)
        invocations = runner.tally.invocations
    assert len(stored) == records  # every record through the chain
    # Each entry batch went on whole: one invocation of every stage a batch.
    batches = invocations["validator"]
    assert invocations["enricher"] == invocations["processor"] == batches
    assert sum(1 / size for _, size in gathered) == pytest.approx(batches)

    workload, stages = Workload.load(), model_from_template(template).functions

    def chain_seconds(size: int) -> float:
        """The three invocations of a batch of ``size`` records, one after another."""
        return sum(invocation_ms(workload, f.stage, f.memory_mb, size) for f in stages) / 1000

    latencies = sorted(wait + chain_seconds(size) for wait, size in gathered)
    waits = sorted(wait for wait, _ in gathered)
    p99, wait_p99 = latencies[int(0.99 * records) - 1], waits[int(0.99 * records) - 1]
    # A poller's batch at this rate: what one of five gets in the window, short of 100.
    assert rate / 5 * WINDOW < BATCH
    assert WINDOW / 2 < wait_p99 <= WINDOW
    (timeout,) = {
        f["Properties"]["Timeout"]
        for f in template["Resources"].values()
        if f["Type"] == "AWS::Lambda::Function" and "pipeline:stage" in f.get("Metadata", {})
    }
    timeouts = len(stages) * timeout
    assert wait_p99 < p99 <= WINDOW + timeouts
    bound = f"{WINDOW} s + {len(stages)} × {timeout} s = {WINDOW + timeouts} s for a record stored"
    assert bound in " ".join(docs_text("batching").split()), bound
    line = (
        f"p99 end-to-end latency at {per_month:,} records a month: {p99:.1f} s "
        f"({wait_p99:.1f} s for the {WINDOW} s window, then the three stages)"
    )
    record_property("summary", line)
    assert line in docs_text("batching"), line
