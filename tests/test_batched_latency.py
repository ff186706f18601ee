"""End-to-end latency on the batched path, from the batching window and the emulator.

Records arrive at 1 M and 10 M a month (evenly, in virtual time) and go through the real
handlers on moto. The entry stage's five pollers share the arrivals and each batch waits out
the window unless it fills first (``pipeline_tools/runner/event_source.py``,
``QueuePipeline.run_arriving``); the stages after it take packed messages at once. So a record
waits at most the window, the bound the settings give (docs/batching.md), and at these volumes
no batch fills before it: the window is the latency.
"""

from __future__ import annotations

import copy
import json

import pytest

from pipeline_tools.bill.workload import SECONDS_PER_MONTH
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
def test_the_p99_latency_is_within_the_window(
    designed_assembly, record_property, per_month, records
):
    rate = per_month / SECONDS_PER_MONTH
    bodies = [json.dumps(sample_record(id=f"lat-{i:04d}")) for i in range(records)]
    with queue_pipeline_on_moto(designed_assembly) as runner:
        waits = runner.run_arriving(bodies, rate, "validator")
        stored, _ = stored_and_counted(runner.session.client("dynamodb"), runner.table)
    assert len(stored) == records  # every record through the chain
    p99 = sorted(waits)[int(0.99 * records) - 1]
    # A poller's batch at this rate: what one of five gets in the window, short of 100.
    assert rate / 5 * WINDOW < BATCH
    assert WINDOW / 2 < p99 <= WINDOW
    line = f"p99 latency at {per_month:,} records a month: {p99:.1f} s (window {WINDOW} s)"
    record_property("summary", line)
    assert line in docs_text("batching"), line
