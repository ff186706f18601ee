"""Monthly cost of the synthesized stack, line by line, against the naive baseline.

Usage::

    python -m pipeline_tools.cost [--workload FILE] [--markdown] [TEMPLATE ...]

With no template it reads ``cdk.out/DataPipeline-{dev,staging,prod}.template.json`` (run
``make synth-all`` first). Everything that drives cost is read from the template: memory,
architecture, provisioned concurrency on aliases (the auto-scaling floor and its schedule),
billing mode, log retention, and the number of alarm metrics and dashboards. The workload
(records a month, durations, sizes) comes from a JSON profile; prices from
``pipeline_tools/data/prices.json`` (date, region and sources inside).

The baseline is the naive stack this project replaces: the same functions at 3008 MB on
x86_64 with no provisioned concurrency, a table provisioned at 5 RCU / 5 WCU, logs that never
expire, no DLQ, no alarms and no dashboard.

Model (what the handlers really do, per record):

* the validator runs for every record; the enricher and processor for the valid ones;
* the enricher reads one small item, eventually consistent: 0.5 read request unit;
* the processor writes the record and its counter in one transaction: transactional writes
  cost double, so ``2 x (ceil(item KB) + 1)`` write request units;
* each failed record costs three SQS requests (Lambda's send, a reader's receive and delete).

Provisioned concurrency is priced at its floor (the auto-scaling minimum, as the schedule sets
it, hour by hour over a week); invocations during hours with provisioned concurrency are priced
at the lower provisioned duration rate, assuming the floor covers the traffic.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from constructs_lib import cron
from pipeline_tools.template import StackTemplate, load_template, ref_id, resources

DATA = Path(__file__).resolve().parent / "data"
PRICES_FILE = DATA / "prices.json"
WORKLOAD_FILE = DATA / "workload.json"
GIB = 1024**3
DAYS_PER_MONTH = 365.25 / 12
MINUTES_PER_WEEK = cron.MINUTES_PER_WEEK
#: Per item, beyond the record itself: keys, attribute names, received/stored times, category.
ITEM_OVERHEAD_BYTES = 200
SQS_REQUESTS_PER_FAILURE = 3
BASELINE_MEMORY_MB = 3008
BASELINE_TABLE_CAPACITY = 5


class CostInputError(ValueError):
    """A workload profile or template that the report cannot price (it says what and why)."""


# --- the workload profile -------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """What the pipeline processes in a month. Defaults: ``pipeline_tools/data/workload.json``."""

    records_per_month: int
    duration_ms: Mapping[str, float]
    record_bytes: int
    log_bytes_per_invocation: int
    log_months: int
    failed_record_ratio: float

    @classmethod
    def load(cls, path: str | Path | None = None) -> Workload:
        """The defaults, with the keys of ``path`` (a JSON object) merged over them."""
        raw: dict[str, Any] = json.loads(WORKLOAD_FILE.read_text())
        if path is not None:
            override = json.loads(Path(path).read_text())
            if not isinstance(override, dict):
                raise CostInputError(f"{path}: the workload profile must be a JSON object")
            unknown = set(override) - set(raw)
            if unknown:
                raise CostInputError(
                    f"{path}: unknown keys {sorted(unknown)}; allowed: {', '.join(raw)}"
                )
            raw = {**raw, **override}
        return cls.from_mapping(raw)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Workload:
        def number(key: str, low: float, high: float, value: Any = None) -> float:
            value = raw[key] if value is None else value
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not low <= value <= high
            ):
                raise CostInputError(
                    f"workload {key} = {value!r}: must be a number from {low} to {high}"
                )
            return float(value)

        durations = raw["duration_ms"]
        if not isinstance(durations, Mapping) or not durations:
            raise CostInputError(
                f"workload duration_ms = {durations!r}: must map stage to milliseconds"
            )
        return cls(
            records_per_month=int(number("records_per_month", 0, 1e12)),
            duration_ms={
                k: number(f"duration_ms.{k}", 1, 900_000, v) for k, v in durations.items()
            },
            record_bytes=int(number("record_bytes", 1, 400_000)),
            log_bytes_per_invocation=int(number("log_bytes_per_invocation", 0, 10_000_000)),
            log_months=int(number("log_months", 1, 120)),
            failed_record_ratio=number("failed_record_ratio", 0, 1),
        )


# --- the stack, as far as cost goes ---------------------------------------------------------


@dataclass(frozen=True)
class FunctionModel:
    stage: str
    memory_mb: int
    architecture: str
    #: Provisioned concurrency: instances on average over a week, and the share of time with any.
    provisioned_average: float = 0.0
    provisioned_share: float = 0.0
    log_retention_days: int | None = None  # None: never expires


@dataclass(frozen=True)
class StackModel:
    name: str
    functions: tuple[FunctionModel, ...]
    table_billing: str = "PAY_PER_REQUEST"
    table_rcu: int = 0
    table_wcu: int = 0
    has_dead_letter_queue: bool = True
    alarm_metrics: int = 0
    dashboards: int = 0


@dataclass(frozen=True)
class LineItem:
    name: str
    usd: float
    detail: str = ""


@dataclass(frozen=True)
class Report:
    stack: StackModel
    baseline: StackModel
    items: tuple[LineItem, ...]
    baseline_items: tuple[LineItem, ...]
    workload: Workload
    prices: Mapping[str, Any] = field(repr=False)

    @property
    def total(self) -> float:
        return sum(i.usd for i in self.items)

    @property
    def baseline_total(self) -> float:
        return sum(i.usd for i in self.baseline_items)

    @property
    def ratio(self) -> float:
        return self.total / self.baseline_total if self.baseline_total else math.inf


def model_from_template(template: Mapping[str, Any], name: str = "stack") -> StackModel:
    """Read everything that drives cost from a synthesized template."""
    stack = StackTemplate.of(template)
    functions = stack.resources("AWS::Lambda::Function")
    groups = stack.resources("AWS::Logs::LogGroup")
    aliases = stack.resources("AWS::Lambda::Alias")
    targets = stack.resources("AWS::ApplicationAutoScaling::ScalableTarget")
    models = []
    for stage in stack.stages.values():
        p = stage.properties
        group_id = ref_id(p.get("LoggingConfig", {}).get("LogGroup"))
        retention = (
            groups[group_id]["Properties"].get("RetentionInDays") if group_id in groups else None
        )
        average, share = 0.0, 0.0
        if stage.alias_id is not None:
            fixed = (
                aliases[stage.alias_id]["Properties"]
                .get("ProvisionedConcurrencyConfig", {})
                .get("ProvisionedConcurrentExecutions", 0)
            )
            target = next(
                (
                    t["Properties"]
                    for t in targets.values()
                    if stage.alias_id in json.dumps(t["Properties"]["ResourceId"])
                ),
                None,
            )
            average, share = provisioned_floor(fixed, target)
        models.append(
            FunctionModel(
                stage=stage.name,
                memory_mb=int(p.get("MemorySize", 128)),
                architecture=(p.get("Architectures") or ["x86_64"])[0],
                provisioned_average=average,
                provisioned_share=share,
                log_retention_days=retention,
            )
        )
    tables = list(resources(template, "AWS::DynamoDB::Table").values())
    if len(tables) != 1:
        raise CostInputError(f"{name}: expected one DynamoDB table, found {len(tables)}")
    table = tables[0]["Properties"]
    throughput = table.get("ProvisionedThroughput", {})
    return StackModel(
        name=name,
        functions=tuple(sorted(models, key=lambda m: m.stage)),
        table_billing=table.get("BillingMode", "PROVISIONED"),
        table_rcu=int(throughput.get("ReadCapacityUnits", 0)),
        table_wcu=int(throughput.get("WriteCapacityUnits", 0)),
        has_dead_letter_queue=any(
            "DeadLetterConfig" in f["Properties"] for f in functions.values()
        ),
        alarm_metrics=sum(
            _alarm_metrics(a["Properties"])
            for a in resources(template, "AWS::CloudWatch::Alarm").values()
        ),
        dashboards=len(resources(template, "AWS::CloudWatch::Dashboard")),
    )


def baseline_of(model: StackModel) -> StackModel:
    """The naive stack with the same functions."""
    return StackModel(
        name=f"{model.name} (naive baseline)",
        functions=tuple(
            replace(
                f,
                memory_mb=BASELINE_MEMORY_MB,
                architecture="x86_64",
                provisioned_average=0.0,
                provisioned_share=0.0,
                log_retention_days=None,
            )
            for f in model.functions
        ),
        table_billing="PROVISIONED",
        table_rcu=BASELINE_TABLE_CAPACITY,
        table_wcu=BASELINE_TABLE_CAPACITY,
        has_dead_letter_queue=False,
        alarm_metrics=0,
        dashboards=0,
    )


def provisioned_floor(fixed: int, target: Mapping[str, Any] | None) -> tuple[float, float]:
    """Provisioned instances on average, and the share of time with any.

    Without auto scaling it is the alias's fixed value all the time. With it, the floor is the
    target's ``MinCapacity``, changed by each scheduled action when it fires; a week is walked
    minute by minute (the schedule repeats weekly).
    """
    if target is None:
        return float(fixed), 1.0 if fixed else 0.0
    actions = target.get("ScheduledActions", [])
    if not actions:
        floor = target["MinCapacity"]
        return float(floor), 1.0 if floor else 0.0
    events = sorted(
        (minute, action["ScalableTargetAction"].get("MinCapacity", target["MinCapacity"]))
        for action in actions
        for minute in _weekly_minutes(action["Schedule"], action.get("ScheduledActionName", "?"))
    )
    capacity = events[-1][1]  # what the last action of the previous week left
    total = covered = 0
    upcoming = iter([*events, (MINUTES_PER_WEEK, None)])
    at, value = next(upcoming)
    for minute in range(MINUTES_PER_WEEK):
        while minute >= at:
            capacity = value if value is not None else capacity
            at, value = next(upcoming)
        total += capacity
        covered += capacity > 0
    return total / MINUTES_PER_WEEK, covered / MINUTES_PER_WEEK


def _weekly_minutes(schedule: str, name: str) -> list[int]:
    """Minutes of the week (Sunday 00:00 = 0) at which a weekly cron expression fires."""
    match = re.fullmatch(r"cron\((.+)\)", schedule.strip())
    try:
        return cron.parse(match.group(1) if match else schedule).weekly_minutes()
    except cron.CronError as error:
        raise CostInputError(
            f"scheduled action {name}: cannot price {schedule!r}: {error}; the cost report "
            "handles weekly schedules: cron(M H ? * DAYS *)"
        ) from None


def _alarm_metrics(alarm: Mapping[str, Any]) -> int:
    """CloudWatch charges an alarm per metric it evaluates (metric math: each metric)."""
    if "Metrics" in alarm:
        return sum(1 for m in alarm["Metrics"] if "MetricStat" in m)
    return 1


# --- pricing --------------------------------------------------------------------------------


def load_prices(path: str | Path = PRICES_FILE) -> dict[str, Any]:
    prices: dict[str, Any] = json.loads(Path(path).read_text())
    for key in ("date", "region", "sources", "lambda", "dynamodb", "sqs", "cloudwatch"):
        if key not in prices:
            raise CostInputError(f"{path}: missing {key!r}")
    return prices


def price(model: StackModel, workload: Workload, prices: Mapping[str, Any]) -> tuple[LineItem, ...]:
    """The monthly line items of ``model`` under ``workload``."""
    lam, ddb, cw = prices["lambda"], prices["dynamodb"], prices["cloudwatch"]
    hours = prices["hours_per_month"]
    records = workload.records_per_month
    valid = records * (1 - workload.failed_record_ratio)
    invocations = {f.stage: records if f.stage == "validator" else valid for f in model.functions}

    duration = allocation = 0.0
    for f in model.functions:
        if f.stage not in workload.duration_ms:
            raise CostInputError(f"workload duration_ms has no entry for stage {f.stage!r}")
        gb = f.memory_mb / 1024
        gb_seconds = invocations[f.stage] * workload.duration_ms[f.stage] / 1000 * gb
        warm = gb_seconds * f.provisioned_share
        duration += (gb_seconds - warm) * lam["duration_per_gb_second"][f.architecture]
        duration += warm * lam["provisioned_duration_per_gb_second"][f.architecture]
        allocation += (
            f.provisioned_average
            * hours
            * 3600
            * gb
            * lam["provisioned_concurrency_per_gb_second"][f.architecture]
        )
    architectures = "/".join(sorted({f.architecture for f in model.functions}))
    memory = ", ".join(f"{f.stage} {f.memory_mb} MB" for f in model.functions)

    item_kb = math.ceil((workload.record_bytes + ITEM_OVERHEAD_BYTES) / 1024)
    write_units = valid * 2 * (item_kb + 1)
    read_units = valid * 0.5
    if model.table_billing == "PAY_PER_REQUEST":
        reads = LineItem(
            "DynamoDB reads",
            read_units / 1e6 * ddb["on_demand_read_request_per_million"],
            f"{read_units:,.0f} RRU on demand (GetItem, eventually consistent)",
        )
        writes = LineItem(
            "DynamoDB writes",
            write_units / 1e6 * ddb["on_demand_write_request_per_million"],
            f"{write_units:,.0f} WRU on demand (transaction: 2 x ({item_kb} + 1) per record)",
        )
    else:
        reads = LineItem(
            "DynamoDB reads",
            model.table_rcu * hours * ddb["provisioned_rcu_hour"],
            f"{model.table_rcu} RCU provisioned, all month",
        )
        writes = LineItem(
            "DynamoDB writes",
            model.table_wcu * hours * ddb["provisioned_wcu_hour"],
            f"{model.table_wcu} WCU provisioned, all month",
        )

    sqs_requests = records * workload.failed_record_ratio * SQS_REQUESTS_PER_FAILURE
    log_gib = {
        f.stage: invocations[f.stage] * workload.log_bytes_per_invocation / GIB
        for f in model.functions
    }
    stored_gib = sum(
        log_gib[f.stage]
        * (
            workload.log_months
            if f.log_retention_days is None
            else min(workload.log_months, f.log_retention_days / DAYS_PER_MONTH)
        )
        for f in model.functions
    )
    retention = sorted(
        {
            "never expires" if f.log_retention_days is None else f"{f.log_retention_days} days"
            for f in model.functions
        }
    )
    pc_hours = sum(f.provisioned_average for f in model.functions) * hours
    total_invocations = sum(invocations.values())
    return (
        LineItem(
            "Lambda requests",
            total_invocations / 1e6 * lam["requests_per_million"],
            f"{total_invocations:,.0f} invocations",
        ),
        LineItem(f"Lambda duration ({architectures})", duration, memory),
        LineItem(
            "Provisioned concurrency",
            allocation,
            f"{pc_hours:,.0f} instance-hours" if pc_hours else "none",
        ),
        reads,
        writes,
        LineItem(
            "SQS requests (DLQ)",
            sqs_requests / 1e6 * prices["sqs"]["requests_per_million"]
            if model.has_dead_letter_queue
            else 0.0,
            f"{sqs_requests:,.0f} requests" if model.has_dead_letter_queue else "no DLQ",
        ),
        LineItem(
            "CloudWatch Logs ingestion",
            sum(log_gib.values()) * cw["logs_ingestion_per_gb"],
            f"{sum(log_gib.values()):.2f} GiB a month",
        ),
        LineItem(
            "CloudWatch Logs storage",
            stored_gib * cw["logs_storage_per_gb_month"],
            f"{stored_gib:.2f} GiB kept ({', '.join(retention)}; "
            f"{workload.log_months} months of logs)",
        ),
        LineItem(
            "CloudWatch alarms",
            model.alarm_metrics * cw["alarm_metric_month"],
            f"{model.alarm_metrics} alarm metrics",
        ),
        LineItem(
            "CloudWatch dashboards",
            model.dashboards * cw["dashboard_month"],
            f"{model.dashboards} dashboards",
        ),
    )


def report(
    template: Mapping[str, Any], name: str, workload: Workload, prices: Mapping[str, Any]
) -> Report:
    model = model_from_template(template, name)
    base = baseline_of(model)
    return Report(
        model, base, price(model, workload, prices), price(base, workload, prices), workload, prices
    )


# --- output ---------------------------------------------------------------------------------


def render(result: Report, markdown: bool = False) -> str:
    w, p = result.workload, result.prices
    title = (
        f"{result.stack.name}: {w.records_per_month:,} records a month, "
        f"{p['region']} prices of {p['date']}"
    )
    rows = [
        (i.name, i.usd, b.usd, i.detail)
        for i, b in zip(result.items, result.baseline_items, strict=True)
    ]
    ratio = f"{result.ratio:.1%}"
    if markdown:
        lines = [
            f"**{title}**",
            "",
            "| line item | this stack | naive baseline | this stack's basis |",
            "| --- | ---: | ---: | --- |",
        ]
        lines += [f"| {n} | ${a:,.2f} | ${b:,.2f} | {d} |" for n, a, b, d in rows]
        lines += [
            f"| **total** | **${result.total:,.2f}** | **${result.baseline_total:,.2f}** | "
            f"**{ratio} of the baseline** |"
        ]
        return "\n".join(lines)
    width = max(len(n) for n, *_ in rows) + 2
    lines = [title, f"{'line item':<{width}}{'this stack':>12}{'baseline':>12}  basis"]
    lines += [f"{n:<{width}}{f'${a:,.2f}':>12}{f'${b:,.2f}':>12}  {d}" for n, a, b, d in rows]
    lines += [
        f"{'total':<{width}}{f'${result.total:,.2f}':>12}{f'${result.baseline_total:,.2f}':>12}",
        f"this stack costs {ratio} of the naive baseline",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_tools.cost", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "templates",
        nargs="*",
        type=Path,
        help="synthesized templates (default: cdk.out/DataPipeline-{dev,staging,prod})",
    )
    parser.add_argument(
        "--workload", type=Path, help=f"workload profile JSON (default: {WORKLOAD_FILE})"
    )
    parser.add_argument("--prices", type=Path, default=PRICES_FILE, help="price file")
    parser.add_argument("--markdown", action="store_true", help="Markdown tables, for the README")
    args = parser.parse_args(argv)
    templates = args.templates or [
        Path(f"cdk.out/DataPipeline-{e}.template.json") for e in ("dev", "staging", "prod")
    ]
    try:
        workload = Workload.load(args.workload)
        prices = load_prices(args.prices)
        outputs = []
        for path in templates:
            name = path.name.removesuffix(".template.json")
            outputs.append(
                render(report(load_template(path), name, workload, prices), args.markdown)
            )
    except (CostInputError, FileNotFoundError, json.JSONDecodeError) as error:
        print(f"cost report: {error}", file=sys.stderr)
        return 1
    print("\n\n".join(outputs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
