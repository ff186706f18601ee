"""The batched bill's per-record work (``pipeline_tools/bench/batch_work.py``): measured from
the real batch handlers on their real path, kept for the bill, and scaled to each function's
memory as Lambda allocates CPU (one vCPU at 1,769 MB,
https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html).

No figure here is timed: the timing is ``make bench``'s. These tests check that what it times
is each stage's whole batch path, and that the bill uses what it wrote.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from pipeline_tools.bench import batch_work
from pipeline_tools.bill import batching
from pipeline_tools.bill.workload import CostInputError
from serverless_stack.stages import STAGES
from tests.conftest import ROOT, assembly_of, docs_text


def test_each_stage_runs_its_whole_batch_path_with_every_call_answered(stacks, monkeypatch):
    """A batch of 101 fresh records: none fails, and each stage makes the calls its batch
    makes on AWS: the validator and the enricher one SendMessageBatch of the packed records,
    the enricher one GetItem per record type (10, the cache of the batch), the processor its
    batch marker and a conditional put per record."""
    calls: Counter[tuple[str, str]] = Counter()
    answers = batch_work._answers

    def counted(operation, params):
        calls[(stage, operation)] += 1
        return answers(operation, params)

    monkeypatch.setattr(batch_work, "_answers", counted)
    directory, name, _ = assembly_of(stacks["prod"])
    with batch_work.stages_answered_at_once(directory, name) as batches:
        assert set(batches) == set(STAGES)
        for stage, batch in batches.items():
            assert batch(101)() == {"batchItemFailures": []}, stage
    assert dict(calls) == {
        ("validator", "SendMessageBatch"): 1,
        ("enricher", "GetItem"): 10,
        ("enricher", "SendMessageBatch"): 1,
        ("processor", "PutItem"): 1 + 101,
    }


def test_the_bill_takes_the_measured_work_scaled_to_the_functions_memory():
    found = json.loads(batch_work.WORK_FILE.read_text())
    assert set(found) == set(STAGES)
    core = found["processor"]["core_ms"]
    assert core > 0
    # Below 1,769 MB a function has that share of a vCPU: 512 MB runs 1769 / 512 times slower.
    # The processor's one conditional put a record adds 10 ms (DYNAMODB_REQUEST_MS).
    assert batching.per_record_ms("processor", 512) == pytest.approx(core * 1769 / 512 + 10)
    assert batching.per_record_ms("processor", 3008) == pytest.approx(core + 10)
    validator = found["validator"]["core_ms"]
    assert batching.per_record_ms("validator", 1769) == pytest.approx(validator)


def test_a_stage_without_a_figure_stops_the_bill_naming_it(tmp_path, monkeypatch):
    partial = tmp_path / "batch_work.json"
    partial.write_text(json.dumps({"validator": {"core_ms": 0.1, "memory_mb": 512}}))
    monkeypatch.setattr(batching, "WORK_FILE", partial)
    with pytest.raises(CostInputError, match="no figure for processor: run make bench"):
        batching.per_record_ms("processor", 512)


def test_benchmarks_and_the_batching_page_quote_the_kept_figures():
    found = json.loads(batch_work.WORK_FILE.read_text())
    section = "\n".join(batch_work.render(found))
    assert section in (ROOT / "BENCHMARKS.md").read_text()
    page = " ".join(docs_text("batching").split())
    scaled = {s: batching.at_memory(f["core_ms"], int(f["memory_mb"])) for s, f in found.items()}
    assert (
        f"about {scaled['validator']:.2f} ms a record for the validator, "
        f"{scaled['enricher']:.2f} ms for the enricher and {scaled['processor']:.2f} ms for the "
        "processor" in page
    )
