"""The batched path's bill (``ingestion.mode: batched``), priced from a stack's template and its
code's measured usage, beside the per-record bill.

What a month of records causes when each stage reads an SQS queue in batches, by these rules
and assumptions (AWS's rule where there is one):

* **Arrivals.** Records arrive evenly over the month, one a message: a producer sending each
  record as it comes (``pipeline send`` packs a file into fewer messages, which only lowers the
  bill).
* **The entry stage's batches.** Lambda polls a standard queue with five concurrent batches
  while traffic is low (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html:
  "five batches at a time", "as few as 2"; five is the dearer case). Each gathers for the
  batching window, so a batch holds ``min(batch_size, max(1, rate x window / 5))`` messages.
* **Later stages.** A stage packs what it hands on into messages of at most 64 KiB
  (``lambda_src/pipeline_common/messages.py``); at these rates each reaches the next stage
  alone, so the next stage is invoked once per such message.
* **Duration.** An invocation of ``b`` records takes the seed's single-record duration
  (``duration_ms``) plus ``per_record_ms`` for each further record: the stage's own work, as
  ``make bench`` measures it from the real batch handlers on one core
  (``pipeline_tools/bench/batch_work.py``, kept in ``data/batch_work.json``) and scaled to the
  function's memory (Lambda gives one vCPU at 1,769 MB, less in proportion below it,
  https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html), and 10 ms for each
  DynamoDB request it makes a record (DynamoDB answers in single-digit milliseconds, https://aws.amazon.com/dynamodb/features/;
  ``DYNAMODB_REQUEST_MS``).
* **SQS requests** (a request per 64 KB chunk of a call, https://aws.amazon.com/sqs/pricing/):
  the producer's ``SendMessageBatch`` calls (10 messages each); per stage batch, its
  ``ReceiveMessage`` and ``DeleteMessageBatch`` calls (10 messages each) and one
  ``SendMessageBatch`` of its packed output; and the pollers' empty long polls: five a queue,
  each waiting SQS's longest 20 s (``WaitTimeSeconds``), all month (the bound: as if idle).
* **Logs.** Each batch invocation logs what a per-record invocation logs, as measured (Lambda's
  START, END and REPORT lines and one EMF line; a refused record's lines as measured).
* **Writes.** A valid record's put, as measured; the processor's markers are one per batch
  (``pipeline_common/counts.py``), a write unit per KB of the records it lists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline_tools import runtime_source
from pipeline_tools.bill.model import QueueBatching, StackModel, model_from_template
from pipeline_tools.bill.naive import baseline_of
from pipeline_tools.bill.pricing import (
    DYNAMODB_REQUEST_MS,
    SQS_REQUESTS_PER_FAILURE,
    SWEEP,
    Bill,
    LineItem,
    _cloudwatch_items,
    _log_items,
    _rollup_item,
    _table_items,
    capacity_item,
    price,
    traces_item,
    traces_recorded,
)
from pipeline_tools.bill.usage import CodeUsage
from pipeline_tools.bill.workload import SECONDS_PER_MONTH, CostInputError, Workload
from pipeline_tools.runner.event_source import START_BATCHES
from serverless_stack.stages import BY_NAME, STAGE_TABLE, STORING_STAGE

#: Concurrent batches of a queue while traffic is low: the emulator's own rule.
POLLERS = START_BATCHES
#: SQS's longest long poll (``WaitTimeSeconds``).
LONG_POLL_SECONDS = 20
#: A message's most bytes, and a batch call's most messages: the stages' own format.
MESSAGES = runtime_source.load("pipeline_common/messages.py")
MESSAGE_BYTES = MESSAGES.MESSAGE_BYTES
BATCH_MESSAGES = MESSAGES.BATCH_ENTRIES
#: Each stage's own work a record on one core, besides its DynamoDB requests, as ``make bench``
#: measured it (``pipeline_tools/bench/batch_work.py``).
WORK_FILE = Path(__file__).resolve().parents[1] / "data" / "batch_work.json"
#: Lambda's memory for one vCPU.
ONE_VCPU_MB = 1769


def at_memory(core_ms: float, memory_mb: int) -> float:
    """``core_ms`` of work on a full core, as a function of ``memory_mb`` runs it."""
    return core_ms * max(1.0, ONE_VCPU_MB / memory_mb)


def stage_work_ms(stage: str, memory_mb: int) -> float:
    """The measured work a record adds to ``stage``'s batch, at ``memory_mb``."""
    work = json.loads(WORK_FILE.read_text())
    if stage not in work:
        raise CostInputError(f"{WORK_FILE}: no figure for {stage}: run make bench")
    return at_memory(float(work[stage]["core_ms"]), memory_mb)


#: DynamoDB requests a record makes at a stage on the batched path: one per table action the
#: stage calls (the enricher's GetItem of its category, the processor's conditional put; the
#: processor's markers are its batch's).
#: A batch marker's bytes: its keys and expiry, and each listed ``<day>#<type>#<id>``.
MARKER_BASE_BYTES, MARKER_BYTES_PER_ID = 120, 48


@dataclass(frozen=True)
class Flow:
    """A month on the batched path: invocations and records a batch, per stage; SQS requests."""

    invocations: dict[str, float]
    records_per_batch: dict[str, float]
    sqs_requests: float
    idle_polls: float


def flow(workload: Workload, batching: QueueBatching) -> Flow:
    """Invocations, batch sizes and SQS requests of ``workload`` (module docstring); with
    one queue (``batching.queues``), the design weighed beside it: a queue in front of the
    entry stage, the batch carried on by asynchronous invocations (no SQS requests after it)."""
    queues = batching.queues
    records = workload.records_per_month
    valid = records * (1 - workload.failed_record_ratio)
    rate = records / SECONDS_PER_MONTH
    entry = min(batching.batch_size, max(1.0, rate * batching.window_seconds / POLLERS))
    batches = records / entry
    # What a validator batch hands on: its valid records, packed.
    packed_bytes = entry * (1 - workload.failed_record_ratio) * workload.record_bytes
    messages_a_batch = max(1, math.ceil(packed_bytes / MESSAGE_BYTES))
    invocations = {STAGE_TABLE[0].name: batches}
    sizes = {STAGE_TABLE[0].name: entry}
    for stage in STAGE_TABLE[1:]:
        invocations[stage.name] = batches * messages_a_batch
        sizes[stage.name] = valid / invocations[stage.name]
    producer = records / BATCH_MESSAGES
    per_batch = {
        s.name: 2 * math.ceil((entry if s == STAGE_TABLE[0] else 1) / BATCH_MESSAGES)
        + (messages_a_batch if s.next_stage else 0)
        for s in STAGE_TABLE[:queues]
    }
    if queues == 1:
        per_batch[STAGE_TABLE[0].name] -= messages_a_batch  # it invokes the next stage instead
    served = producer + sum(invocations[s] * per_batch[s] for s in per_batch)
    idle = POLLERS * queues * SECONDS_PER_MONTH / LONG_POLL_SECONDS
    return Flow(invocations, sizes, served, idle)


def lookups_per_record(workload: Workload, records_a_batch: float) -> float:
    """The enricher reads a type's category once a batch: its reads a record."""
    return min(float(workload.record_types), records_a_batch) / records_a_batch


def batched_usage(usage: CodeUsage, flow_: Flow, workload: Workload) -> tuple[CodeUsage, CodeUsage]:
    """The code's usage on the batched path: for the table (a record's put, its share of its
    batch's markers, its share of the enricher's reads) and for the roll-up (which still
    checks each listed record)."""
    processor = flow_.records_per_batch[STORING_STAGE.name]
    (reader,) = [s for s in STAGE_TABLE if "dynamodb:GetItem" in s.table_actions]
    enricher = flow_.records_per_batch[reader.name]
    marker_bytes = MARKER_BASE_BYTES + MARKER_BYTES_PER_ID * processor
    marker_units = math.ceil(marker_bytes / 1024)
    record_units = usage.write_units - usage.marker_items  # each per-record marker: 1 unit
    table = replace(
        usage,
        read_units=usage.read_units * lookups_per_record(workload, enricher),
        write_units=record_units + marker_units / processor,
        marker_items=1 / processor,
        marker_item_bytes=marker_bytes,
    )
    rollup = replace(usage, marker_items=1.0, marker_item_bytes=marker_bytes / processor)
    return table, rollup


def price_batched(
    model: StackModel, usage: CodeUsage, workload: Workload, prices: Mapping[str, Any]
) -> Bill:
    """The monthly line items of ``model``, a stack on the batched path (``model.batching``),
    running code that consumes ``usage`` a record (module docstring)."""
    if model.batching is None:
        raise ValueError(f"{model.name}: its stages read no queues")
    month = flow(workload, model.batching)
    table_usage, rollup_usage = batched_usage(usage, month, workload)
    failed = workload.records_per_month * workload.failed_record_ratio
    sqs = month.sqs_requests + month.idle_polls + failed * SQS_REQUESTS_PER_FAILURE
    items = (
        *_lambda_items(model, workload, prices, month),
        *_table_items(model, table_usage, workload, prices),
        _rollup_item(model, rollup_usage, workload, prices),
        LineItem(
            "SQS requests (stage queues and DLQ)",
            sqs / 1e6 * prices["sqs"]["requests_per_million"],
            f"{sqs:,.0f} requests: {month.sqs_requests:,.0f} sends, receives and deletes, "
            f"{month.idle_polls:,.0f} empty long polls",
        ),
        *_log_items(model, usage, workload, prices, month.invocations),
        *_cloudwatch_items(model, usage, prices),
    )
    return Bill(model, items)


def invocation_ms(workload: Workload, stage: str, memory_mb: int, records: float) -> float:
    """An invocation of ``stage`` with ``records`` records (module docstring, "Duration"): the
    seed's single-record duration, and what each further record adds."""
    lookups = lookups_per_record(workload, records)
    extra = per_record_ms(stage, memory_mb, lookups) * max(0.0, records - 1)
    return workload.duration_ms[stage] + extra


def per_record_ms(stage: str, memory_mb: int, lookups: float = 1.0) -> float:
    """What each record after the first adds to an invocation (module docstring): the stage's
    measured work at ``memory_mb``, and a request per table action the stage calls; a read (the
    enricher's category) only ``lookups`` of one a record."""
    actions = BY_NAME[stage].table_actions
    requests = sum(lookups if action == "dynamodb:GetItem" else 1.0 for action in actions)
    return stage_work_ms(stage, memory_mb) + DYNAMODB_REQUEST_MS * requests


def _lambda_items(
    model: StackModel, workload: Workload, prices: Mapping[str, Any], month: Flow
) -> tuple[LineItem, ...]:
    """Requests, duration (on demand and on provisioned instances) and allocation."""
    lam, hours = prices["lambda"], prices["hours_per_month"]
    duration = allocation = instance_hours = 0.0
    for f in model.functions:
        ms = invocation_ms(workload, f.stage, f.memory_mb, month.records_per_batch[f.stage])
        seconds, gb = ms / 1000, f.memory_mb / 1024
        invocations = month.invocations[f.stage]
        average, share = f.capacity.instances(invocations / SECONDS_PER_MONTH * seconds)
        gb_seconds = invocations * seconds * gb
        duration += gb_seconds * (1 - share) * lam["duration_per_gb_second"][f.architecture]
        duration += gb_seconds * share * lam["provisioned_duration_per_gb_second"][f.architecture]
        allocation += (
            average
            * hours
            * 3600
            * gb
            * lam["provisioned_concurrency_per_gb_second"][f.architecture]
        )
        instance_hours += average * hours
    total = sum(month.invocations.values())
    sizes = ", ".join(f"{s} {b:,.1f}" for s, b in month.records_per_batch.items())
    traced = {
        f.stage: traces_recorded(month.invocations[f.stage], prices)
        for f in model.functions
        if f.tracing == "Active"
    }
    return (
        LineItem(
            "Lambda requests",
            total / 1e6 * lam["requests_per_million"],
            f"{total:,.0f} invocations",
        ),
        LineItem("Lambda duration", duration, f"records a batch: {sizes}"),
        capacity_item(allocation, instance_hours),
        traces_item(traced, prices),
    )


# --- the designs weighed (docs/batching.md) ---------------------------------------------------

#: The defaults the designs are priced at: ``ingestion``'s batch size and window.
DESIGN_BATCHING = QueueBatching(batch_size=100, window_seconds=60, queues=len(STAGE_TABLE))
#: Where ``make synth-all`` writes them: prod on the per-record path, and prod as configured.
PER_RECORD_TEMPLATE = Path("cdk.out/per-record/DataPipeline-prod.template.json")
BATCHED_TEMPLATE = Path("cdk.out/DataPipeline-prod.template.json")


@dataclass(frozen=True)
class Priced:
    """A stack to price: its model, and its code's usage as deployed and as the naive stack
    would run it (``pipeline_tools.bill.usage.measure``)."""

    model: StackModel
    usage: CodeUsage
    naive_usage: CodeUsage


def as_batched(model: StackModel, batching: QueueBatching = DESIGN_BATCHING) -> StackModel:
    """``model``, a per-record stack, with its stages reading ``batching.queues`` queues in
    batches: the same functions and settings, and an age alarm on each queue."""
    return replace(model, batching=batching, alarm_metrics=model.alarm_metrics + batching.queues)


def designs(
    per_record: Priced, batched: Priced, workload: Workload, prices: Mapping[str, Any]
) -> list[tuple[int, float, float, float, float]]:
    """(records a month, naive, per record, a queue per stage, one queue in front) bills,
    record storage aside, at the sweep (``SWEEP``): the naive stack and the per-record one
    from ``per_record``'s template, a queue per stage from ``batched``'s (the stack as it is
    synthesized), and one queue in front as ``per_record`` with the same entry batching."""
    entry = batched.model.batching
    if per_record.model.batching is not None or entry is None:
        raise CostInputError(
            f"designs: {per_record.model.name} must take the per-record path and "
            f"{batched.model.name} the batched one"
        )
    front = as_batched(per_record.model, replace(entry, queues=1))
    rows = []
    for volume in SWEEP:
        load = workload.at(volume)
        naive = price(baseline_of(per_record.model), per_record.naive_usage, load, prices)
        today = price(per_record.model, per_record.usage, load, prices)
        every = price_batched(batched.model, batched.usage, load, prices)
        one = price_batched(front, per_record.usage, load, prices)
        rows.append((volume, naive.compared, today.compared, every.compared, one.compared))
    return rows


def render_designs(
    rows: list[tuple[int, float, float, float, float]], name: str, batching: QueueBatching
) -> str:
    """The designs' bills as a Markdown table, each with its share of the naive stack's."""
    lines = [
        f"**{name}: the designs' monthly bills, record storage aside (entry batches of up to "
        f"{batching.batch_size} messages, a {batching.window_seconds:g} s window)**",
        "",
        "| records a month | naive stack | per record | a queue per stage | one queue in front |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for volume, naive, *bills in rows:
        cells = " | ".join(f"${b:,.2f} ({b / naive:.1%})" for b in bills)
        lines.append(f"| {volume:,} | ${naive:,.2f} | {cells} |")
    return "\n".join(lines)


def priced(path: Path, workload: Workload) -> Priced:
    """The stack of the template at ``path``, its code metered (quietly: ``make cost`` has
    said it meters prod)."""
    from pipeline_tools.bill.usage import measure
    from pipeline_tools.template import load_template

    name = path.name.removesuffix(".template.json")
    template = load_template(path)
    usage, naive_usage = measure(path.parent, name, template, workload, quiet=True)
    return Priced(model_from_template(template, name), usage, naive_usage)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline_tools.bill.batching [PER_RECORD_TEMPLATE BATCHED_TEMPLATE]``: the
    designs weighed for prod (default: what ``make synth-all`` writes)."""
    import sys

    from pipeline_tools.bill.pricing import load_prices

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (0, 2):
        print("batched bill: give both templates (per record, batched) or neither", file=sys.stderr)
        return 2
    paths = [Path(a) for a in args] or [PER_RECORD_TEMPLATE, BATCHED_TEMPLATE]
    workload = Workload.load()
    try:
        per_record, batched = (priced(path, workload) for path in paths)
        rows = designs(per_record, batched, workload, load_prices())
    except (OSError, ValueError, CostInputError) as error:
        print(f"batched bill: {error}", file=sys.stderr)
        return 1
    assert batched.model.batching is not None  # designs() checked it
    print(render_designs(rows, batched.model.name, batched.model.batching))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
