"""The bill: each line the stack causes, priced from the list prices, and the break-even."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_tools.bill.model import StackModel
from pipeline_tools.bill.naive import BASELINE_TABLE_CAPACITY, BASELINE_UTILIZATION
from pipeline_tools.bill.usage import CodeUsage
from pipeline_tools.bill.workload import (
    DATA,
    DAYS_PER_MONTH,
    SECONDS_PER_MONTH,
    CostInputError,
    Workload,
)
from serverless_stack.stages import ENTRY_STAGE

PRICES_FILE = DATA / "prices.json"
GB = 1024**3
SQS_REQUESTS_PER_FAILURE = 3  # Lambda's send, an operator's receive and delete
SWEEP = (1_000_000, 10_000_000, 100_000_000)
#: Where the break-even point is looked for (records a month).
BREAK_EVEN_RANGE = (1_000, 1_000_000_000)
#: The line left out of the comparison: the same records, stored on both sides.
RECORD_STORAGE = "DynamoDB storage"
COUNT_STORAGE = "DynamoDB count storage"
ROLLUP_LINE = "Count roll-up"
#: DynamoDB typically deletes an expired item within two days of its expiry
#: (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateTimeToLive.html):
#: a marker is stored for its life and this long again.
TTL_DELETION_DAYS = 2
#: A day's total item (``COUNTS#<day>`` / ``<type>``, its count and ``folded_to``), with
#: DynamoDB's 100 bytes of item overhead.
TOTAL_ITEM_BYTES = 160
#: DynamoDB reads 4 KB a read unit, strongly consistent: ``BatchGetItem`` rounds each item up,
#: ``Query`` the sum of a page's items
#: (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html).
READ_UNIT_BYTES = 4096
#: What one roll-up run is assumed to spend besides its requests (start, logging), and per
#: DynamoDB request: DynamoDB answers in single-digit milliseconds
#: (https://aws.amazon.com/dynamodb/features/), 10 ms leaves room for the SDK and the network.
ROLLUP_RUN_MS = 200
DYNAMODB_REQUEST_MS = 10
#: Bytes a roll-up run logs: Lambda's START, END and REPORT lines and its one JSON line.
ROLLUP_LOG_BYTES = 1200
#: prod's targets, as shares of the naive stack's (record storage out of both), at 1 M, 10 M
#: and 100 M records a month (batched ingestion's at 10 M and 100 M: docs/batching.md).
COST_TARGETS = {1_000_000: 0.80, 10_000_000: 0.15, 100_000_000: 0.12}


@dataclass(frozen=True)
class LineItem:
    name: str
    usd: float
    detail: str = ""


@dataclass(frozen=True)
class Bill:
    model: StackModel
    items: tuple[LineItem, ...]

    @property
    def total(self) -> float:
        return sum(i.usd for i in self.items)

    @property
    def compared(self) -> float:
        """The total without record storage (the same data on both sides)."""
        return sum(i.usd for i in self.items if i.name != RECORD_STORAGE)


@dataclass(frozen=True)
class Report:
    stack: Bill
    baseline: Bill
    workload: Workload
    prices: Mapping[str, Any] = field(repr=False)

    @property
    def ratio(self) -> float:
        """This stack's bill as a share of the naive one's, record storage left out of both."""
        return self.stack.compared / self.baseline.compared if self.baseline.compared else math.inf


# --- pricing --------------------------------------------------------------------------------


def load_prices(path: str | Path = PRICES_FILE) -> dict[str, Any]:
    prices: dict[str, Any] = json.loads(Path(path).read_text())
    for key in ("date", "region", "sources", "lambda", "dynamodb", "sqs", "cloudwatch", "xray"):
        if key not in prices:
            raise CostInputError(f"{path}: missing {key!r}")
    return prices


def traces_recorded(invocations: float, prices: Mapping[str, Any]) -> float:
    """Traces a month from Lambda's fixed sampling: 1 a second, then 5 % of the rest
    (https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html), traffic spread evenly."""
    xray = prices["xray"]
    rate = invocations / SECONDS_PER_MONTH
    reservoir = xray["sampling_reservoir_per_second"]
    per_second = min(rate, reservoir) + xray["sampling_rate"] * max(0.0, rate - reservoir)
    return per_second * SECONDS_PER_MONTH


def price(
    model: StackModel, usage: CodeUsage, workload: Workload, prices: Mapping[str, Any]
) -> Bill:
    """The monthly line items of ``model`` running code that consumes ``usage``."""
    failed = workload.records_per_month * workload.failed_record_ratio
    # Every record enters the first stage; only the valid ones go on.
    invocations = {
        f.stage: workload.records_per_month
        if f.stage == ENTRY_STAGE.name
        else workload.records_per_month - failed
        for f in model.functions
    }
    items = (
        *_lambda_items(model, workload, prices, invocations),
        *_table_items(model, usage, workload, prices),
        _rollup_item(model, usage, workload, prices),
        _dead_letter_item(model, failed, prices),
        *_log_items(model, usage, workload, prices, invocations),
        *_cloudwatch_items(model, usage, prices),
    )
    return Bill(model, items)


def _lambda_items(
    model: StackModel,
    workload: Workload,
    prices: Mapping[str, Any],
    invocations: Mapping[str, float],
) -> tuple[LineItem, ...]:
    """Requests, duration (on demand and on provisioned instances), allocation, traces."""
    lam, hours = prices["lambda"], prices["hours_per_month"]
    duration = allocation = instance_hours = 0.0
    for f in model.functions:
        if f.stage not in workload.duration_ms:
            raise CostInputError(f"workload duration_ms has no entry for stage {f.stage!r}")
        seconds = workload.duration_ms[f.stage] / 1000
        gb = f.memory_mb / 1024
        concurrency = invocations[f.stage] / SECONDS_PER_MONTH * seconds
        average, share = f.capacity.instances(concurrency)
        gb_seconds = invocations[f.stage] * seconds * gb
        warm = gb_seconds * share
        duration += (gb_seconds - warm) * lam["duration_per_gb_second"][f.architecture]
        duration += warm * lam["provisioned_duration_per_gb_second"][f.architecture]
        rate = lam["provisioned_concurrency_per_gb_second"][f.architecture]
        allocation += average * hours * 3600 * gb * rate
        instance_hours += average * hours
    architectures = "/".join(sorted({f.architecture for f in model.functions}))
    memory = ", ".join(f"{f.stage} {f.memory_mb} MB" for f in model.functions)
    traced = {
        f.stage: traces_recorded(invocations[f.stage], prices)
        for f in model.functions
        if f.tracing == "Active"
    }
    total = sum(invocations.values())
    return (
        LineItem(
            "Lambda requests",
            total / 1e6 * lam["requests_per_million"],
            f"{total:,.0f} invocations",
        ),
        LineItem(f"Lambda duration ({architectures})", duration, memory),
        capacity_item(allocation, instance_hours),
        traces_item(traced, prices),
    )


def capacity_item(allocation: float, instance_hours: float) -> LineItem:
    """Provisioned concurrency's allocation, and the instance-hours it is for."""
    return LineItem(
        "Provisioned concurrency",
        allocation,
        f"{instance_hours:,.0f} instance-hours at this load" if instance_hours else "none",
    )


def traces_item(traced: Mapping[str, float], prices: Mapping[str, Any]) -> LineItem:
    """The traces X-Ray records a month, by the stages that trace (``Active``)."""
    total = sum(traced.values())
    return LineItem(
        "X-Ray traces",
        total / 1e6 * prices["xray"]["traces_recorded_per_million"],
        f"{total:,.0f} traces ({', '.join(traced) or 'no function'} Active)",
    )


def _table_requests(
    model: StackModel, usage: CodeUsage, valid: float, prices: Mapping[str, Any]
) -> tuple[LineItem, LineItem]:
    """DynamoDB reads and writes: on demand as measured, or provisioned for the average rate."""
    ddb, hours = prices["dynamodb"], prices["hours_per_month"]
    write_units, read_units = valid * usage.write_units, valid * usage.read_units
    if model.table_billing == "PAY_PER_REQUEST":
        return (
            LineItem(
                "DynamoDB reads",
                read_units / 1e6 * ddb["on_demand_read_request_per_million"],
                f"{read_units:,.0f} RRU on demand ({usage.read_units:g} a record, measured)",
            ),
            LineItem(
                "DynamoDB writes",
                write_units / 1e6 * ddb["on_demand_write_request_per_million"],
                f"{write_units:,.0f} WRU on demand ({usage.write_units:g} a record, measured)",
            ),
        )
    wcu = model.table_wcu or _provisioned_units(write_units)
    rcu = model.table_rcu or _provisioned_units(read_units)
    return (
        LineItem(
            "DynamoDB reads",
            rcu * hours * ddb["provisioned_rcu_hour"],
            f"{rcu} RCU provisioned, all month",
        ),
        LineItem(
            "DynamoDB writes",
            wcu * hours * ddb["provisioned_wcu_hour"],
            f"{wcu} WCU provisioned, all month",
        ),
    )


def _table_items(
    model: StackModel, usage: CodeUsage, workload: Workload, prices: Mapping[str, Any]
) -> tuple[LineItem, ...]:
    """Requests, the records' and the counts' storage, and their recovery, at the workload's
    age (``workload.month``)."""
    ddb = prices["dynamodb"]
    valid = workload.records_per_month - workload.records_per_month * workload.failed_record_ratio
    retention_days = model.record_retention_days if usage.items_expire else None
    kept_months = (
        workload.month
        if retention_days is None
        else min(workload.month, retention_days / DAYS_PER_MONTH)
    )
    item_bytes = usage.item_bytes + ddb["item_overhead_bytes"]
    table_gb = valid * kept_months * item_bytes / GB
    kept = (
        f"kept {retention_days} days)"
        if retention_days
        else f"{workload.month} months, never expire)"
    )
    count_gb, count_basis = _count_storage(model, usage, workload, prices)
    recovered = table_gb + count_gb
    return (
        *_table_requests(model, usage, valid, prices),
        LineItem(
            RECORD_STORAGE,
            table_gb * ddb["storage_gb_month"],
            f"{table_gb:.2f} GB ({item_bytes:.0f} B an item, " + kept,
        ),
        LineItem(COUNT_STORAGE, count_gb * ddb["storage_gb_month"], count_basis),
        LineItem(
            "DynamoDB point-in-time recovery",
            recovered * ddb["pitr_gb_month"] if model.point_in_time_recovery else 0.0,
            f"{recovered:.2f} GB: records {table_gb:.2f}, counts {count_gb:.2f}"
            if model.point_in_time_recovery
            else "off",
        ),
    )


def _count_storage(
    model: StackModel, usage: CodeUsage, workload: Workload, prices: Mapping[str, Any]
) -> tuple[float, str]:
    """GB the counts keep at the workload's age, and how.

    Both stacks keep a total item per day and type, a day's worth more each day (a few MB in
    ten years). The markers (``pipeline_common/counts.py``) are on top: with the TTL attribute,
    each is kept its life and DynamoDB's deletion delay, so their storage is a fixed number of
    days' worth; without it, every marker ever written stays.
    """
    totals_gb = workload.days * workload.record_types * TOTAL_ITEM_BYTES / GB
    totals = f"{workload.days * workload.record_types:,.0f} day totals"
    if model.naive or not usage.marker_items:
        return totals_gb, f"{totals_gb * 1e3:.2f} MB: {totals} (one counter per type and day)"
    valid = workload.records_per_month * (1 - workload.failed_record_ratio)
    marker_bytes = usage.marker_item_bytes + prices["dynamodb"]["item_overhead_bytes"]
    marker_days = (
        min(workload.days, count_layout().MARKER_DAYS + TTL_DELETION_DAYS)
        if usage.markers_expire
        else workload.days
    )
    markers = valid * usage.marker_items * marker_days / DAYS_PER_MONTH
    lived = (
        f"kept {marker_days:g} days: {count_layout().MARKER_DAYS} and TTL's deletion delay"
        if usage.markers_expire
        else f"{workload.month} months, never expire"
    )
    return (
        totals_gb + markers * marker_bytes / GB,
        f"{markers * marker_bytes / GB:.2f} GB of markers ({usage.marker_items:g} a record, "
        f"{marker_bytes:.0f} B each, {lived}) and {totals}",
    )


def count_layout() -> Any:
    """The counts' runtime module (``lambda_src/pipeline_common/counts.py``)."""
    from pipeline_tools.counts import layout

    return layout()


def _rollup_item(
    model: StackModel, usage: CodeUsage, workload: Workload, prices: Mapping[str, Any]
) -> LineItem:
    """The hourly roll-up, everything it causes: its invocations and duration, its DynamoDB
    reads (each hour's markers by ``Query``, their records by strongly consistent
    ``BatchGetItem``) and writes (a total per type, the watermark), and its logs."""
    rollup = model.rollup
    if rollup is None:
        return LineItem(ROLLUP_LINE, 0.0, "no roll-up: counts are kept as counters")
    layout, ddb, lam = count_layout(), prices["dynamodb"], prices["lambda"]
    valid = workload.records_per_month * (1 - workload.failed_record_ratio)
    markers = valid * usage.marker_items / rollup.runs_per_month  # one hour's
    marker_bytes = usage.marker_item_bytes + ddb["item_overhead_bytes"]
    record_units = math.ceil((usage.item_bytes + ddb["item_overhead_bytes"]) / READ_UNIT_BYTES)
    query_pages = layout.SHARDS * max(
        1, math.ceil(markers / layout.SHARDS * marker_bytes / READ_UNIT_BYTES)
    )
    batches = math.ceil(markers / layout.BATCH_GET_KEYS)
    read_units = markers * record_units + query_pages + 1  # and the watermark's GetItem
    write_units = workload.record_types + 1  # a total per type, the watermark
    requests = 1 + query_pages + batches + write_units
    seconds = (ROLLUP_RUN_MS + requests * DYNAMODB_REQUEST_MS) / 1000
    runs = rollup.runs_per_month
    log_gb = runs * ROLLUP_LOG_BYTES / GB
    log_months = (
        workload.month
        if rollup.log_retention_days is None
        else min(workload.month, rollup.log_retention_days / DAYS_PER_MONTH)
    )
    cw = prices["cloudwatch"]
    usd = (
        runs * lam["requests_per_million"] / 1e6
        + runs
        * seconds
        * rollup.memory_mb
        / 1024
        * lam["duration_per_gb_second"][rollup.architecture]
        + runs * read_units * ddb["on_demand_read_request_per_million"] / 1e6
        + runs * write_units * ddb["on_demand_write_request_per_million"] / 1e6
        + log_gb * (cw["logs_ingestion_per_gb"] + log_months * cw["logs_storage_per_gb_month"])
    )
    return LineItem(
        ROLLUP_LINE,
        usd,
        f"{runs:,.0f} runs of {rollup.memory_mb} MB, {seconds:.1f} s each "
        f"({requests:,} requests at {DYNAMODB_REQUEST_MS} ms, assumed); "
        f"{runs * read_units:,.0f} RRU, {runs * write_units:,.0f} WRU",
    )


def _dead_letter_item(model: StackModel, failed: float, prices: Mapping[str, Any]) -> LineItem:
    requests = failed * SQS_REQUESTS_PER_FAILURE if model.has_dead_letter_queue else 0.0
    return LineItem(
        "SQS requests (DLQ)",
        requests / 1e6 * prices["sqs"]["requests_per_million"],
        f"{requests:,.0f} requests" if model.has_dead_letter_queue else "no DLQ",
    )


def _log_items(
    model: StackModel,
    usage: CodeUsage,
    workload: Workload,
    prices: Mapping[str, Any],
    invocations: Mapping[str, float],
) -> tuple[LineItem, LineItem]:
    """Log ingestion as measured per invocation (and per rejected record), and its storage."""
    cw = prices["cloudwatch"]
    failed = workload.records_per_month * workload.failed_record_ratio
    log_gb = {
        f.stage: (
            invocations[f.stage] * usage.log_bytes.get(f.stage, 0.0)
            + (failed * usage.failed_log_bytes if f.stage == ENTRY_STAGE.name else 0.0)
        )
        / GB
        for f in model.functions
    }
    stored_gb = sum(
        log_gb[f.stage]
        * (
            workload.month
            if f.log_retention_days is None
            else min(workload.month, f.log_retention_days / DAYS_PER_MONTH)
        )
        for f in model.functions
    )
    retention = sorted(
        {
            "kept for ever" if f.log_retention_days is None else f"{f.log_retention_days} days"
            for f in model.functions
        }
    )
    measured = ", ".join(f"{s} {b:.0f} B" for s, b in sorted(usage.log_bytes.items()))
    return (
        LineItem(
            "CloudWatch Logs ingestion",
            sum(log_gb.values()) * cw["logs_ingestion_per_gb"],
            f"{sum(log_gb.values()):.2f} GB a month (measured: {measured} an invocation)",
        ),
        LineItem(
            "CloudWatch Logs storage",
            stored_gb * cw["logs_storage_per_gb_month"],
            f"{stored_gb:.2f} GB kept ({', '.join(retention)})",
        ),
    )


def _cloudwatch_items(
    model: StackModel, usage: CodeUsage, prices: Mapping[str, Any]
) -> tuple[LineItem, LineItem, LineItem]:
    """Custom metrics, alarms (standard, high-resolution, composite) and dashboards."""
    cw = prices["cloudwatch"]
    metrics = 0 if model.naive else usage.custom_metrics
    metrics_described = f"{metrics} EMF metrics (measured)"
    if model.event_source_metrics:
        metrics += model.event_source_metrics
        metrics_described += f", {model.event_source_metrics} event source mapping metrics"
    described = f"{model.alarm_metrics} alarm metrics"
    if model.high_resolution_alarm_metrics:
        described += f", {model.high_resolution_alarm_metrics} high-resolution"
    if model.composite_alarms:
        described += f", {model.composite_alarms} composite"
    return (
        LineItem(
            "CloudWatch custom metrics",
            metrics * cw["custom_metric_month"],
            metrics_described,
        ),
        LineItem(
            "CloudWatch alarms",
            model.alarm_metrics * cw["alarm_metric_month"]
            + model.high_resolution_alarm_metrics * cw["high_resolution_alarm_metric_month"]
            + model.composite_alarms * cw["composite_alarm_month"],
            described,
        ),
        LineItem(
            "CloudWatch dashboards",
            model.dashboards * cw["dashboard_month"],
            f"{model.dashboards} dashboards",
        ),
    )


def _provisioned_units(units_per_month: float) -> int:
    """Capacity units that carry ``units_per_month`` at 70 % utilisation, at least 5."""
    per_second = units_per_month / SECONDS_PER_MONTH
    return max(BASELINE_TABLE_CAPACITY, math.ceil(per_second / BASELINE_UTILIZATION))


def break_even(
    bills: Callable[[int], Report],
    low: int = BREAK_EVEN_RANGE[0],
    high: int = BREAK_EVEN_RANGE[1],
) -> int | None:
    """The smallest monthly volume (to 1 %) from which this stack is not dearer than the naive
    one (record storage left out), or ``None`` if it never is up to ``high``. Bisection on a log
    scale: it assumes one crossing, as a bill of fixed costs plus a smaller slope has."""
    if bills(high).ratio > 1:
        return None
    if bills(low).ratio <= 1:
        return low
    while high / low > 1.01:
        middle = int(math.sqrt(low * high))
        low, high = (low, middle) if bills(middle).ratio <= 1 else (middle, high)
    return high
