"""The complete monthly bill of the synthesized stack, line by line, against the naive stack.

Usage::

    python -m pipeline_tools.cost [--workload FILE] [--records-per-month N] [--sweep]
                                  [--chart PNG] [--markdown] [TEMPLATE ...]

With no template it reads ``cdk.out/DataPipeline-{dev,staging,prod}.template.json`` (``make
cost`` synthesizes them first). Every line the stack causes is priced: what drives cost from the
template (memory, tracing, logs, provisioned concurrency and its scaling, recovery, alarms,
dashboards), what the code consumes as ``pipeline_tools/meter.py`` measures it, the volume of
``pipeline_tools/data/workload.json``, and the list prices of ``pipeline_tools/data/prices.json``
(docs/cost.md says what each line counts). CodeDeploy has no charge for Lambda
(https://aws.amazon.com/codedeploy/pricing/).

The naive stack is the one this project replaces (:func:`baseline_of`). Record storage is the
same data on both sides, so the comparison (``ratio``) leaves it out of both.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from constructs_lib import cron
from pipeline_tools.template import StackTemplate, Stage, load_template, ref_id, resources
from serverless_stack.stages import ENTRY_STAGE, SUPPORT_METADATA_KEY

DATA = Path(__file__).resolve().parent / "data"
PRICES_FILE = DATA / "prices.json"
WORKLOAD_FILE = DATA / "workload.json"
GB = 1024**3
DAYS_PER_MONTH = 365.25 / 12
SECONDS_PER_MONTH = DAYS_PER_MONTH * 86400
MINUTES_PER_WEEK = cron.MINUTES_PER_WEEK
SQS_REQUESTS_PER_FAILURE = 3  # Lambda's send, an operator's receive and delete
BASELINE_MEMORY_MB = 3008
BASELINE_TABLE_CAPACITY = 5
BASELINE_UTILIZATION = 0.7
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
REMOVED_WORKLOAD_KEYS = {
    "log_bytes_per_invocation": "removed: log bytes are measured from the code now",
    "log_months": "renamed to months (everything that accumulates: logs, records)",
}


class CostInputError(ValueError):
    """A workload profile or template that the report cannot price (it says what and why)."""


# --- the workload profile -------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """What the pipeline processes in a month. Defaults: ``pipeline_tools/data/workload.json``.

    :param months: the stack's ages, in months, the report prices (each a bill of its own).
    :param month: the age this workload prices. :default: the last of ``months``
    :param record_types: the record types a day holds (one count total each).
    """

    records_per_month: int
    duration_ms: Mapping[str, float]
    record_bytes: int
    months: tuple[int, ...]
    failed_record_ratio: float
    record_types: int = 10
    month: int = 0

    def __post_init__(self) -> None:
        if not self.month:
            object.__setattr__(self, "month", self.months[-1])

    @classmethod
    def load(cls, path: str | Path | None = None) -> Workload:
        """The defaults, with the keys of ``path`` (a JSON object) merged over them."""
        raw: dict[str, Any] = json.loads(WORKLOAD_FILE.read_text())
        if path is not None:
            override = json.loads(Path(path).read_text())
            if not isinstance(override, dict):
                raise CostInputError(f"{path}: the workload profile must be a JSON object")
            for key in override:
                if key in REMOVED_WORKLOAD_KEYS:
                    raise CostInputError(f"{path}: {key} {REMOVED_WORKLOAD_KEYS[key]}")
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
        months = raw["months"] if isinstance(raw["months"], list) else [raw["months"]]
        ages = tuple(int(number("months", 1, 120, m)) for m in months)
        if not ages or list(ages) != sorted(set(ages)):
            raise CostInputError(
                f"workload months = {raw['months']!r}: must be ages in months from 1 to 120, "
                "in increasing order, e.g. [1, 12, 36]"
            )
        return cls(
            records_per_month=int(number("records_per_month", 0, 1e12)),
            duration_ms={
                k: number(f"duration_ms.{k}", 1, 900_000, v) for k, v in durations.items()
            },
            record_bytes=int(number("record_bytes", 200, 32_000)),
            months=ages,
            failed_record_ratio=number("failed_record_ratio", 0, 1),
            record_types=int(number("record_types", 1, 100_000, raw.get("record_types", 10))),
        )

    def at(self, records_per_month: int, month: int | None = None) -> Workload:
        """The same workload at another volume, and at another age if given."""
        return replace(self, records_per_month=records_per_month, month=month or self.month)

    @property
    def days(self) -> float:
        """The stack's age in days."""
        return self.month * DAYS_PER_MONTH


# --- what the code consumes (measured) ------------------------------------------------------


@dataclass(frozen=True)
class CodeUsage:
    """What the code consumes, per record and per invocation (``pipeline_tools/meter.py``).

    :param write_units: DynamoDB write units per valid record (every stage together).
    :param read_units: DynamoDB read units per valid record.
    :param log_bytes: stage -> bytes CloudWatch ingests per invocation of a valid record.
    :param failed_log_bytes: bytes ingested per failed record (its validator invocation).
    :param item_bytes: size of a stored record item.
    :param items_expire: whether stored items carry the TTL attribute.
    :param custom_metrics: distinct EMF metrics the code emits.
    :param marker_items: the other items written per record (its count markers).
    :param marker_item_bytes: the size of one of them.
    :param markers_expire: whether the markers carry the TTL attribute.
    """

    write_units: float
    read_units: float
    log_bytes: Mapping[str, float]
    failed_log_bytes: float
    item_bytes: float
    items_expire: bool
    custom_metrics: int
    marker_items: float = 0.0
    marker_item_bytes: float = 0.0
    markers_expire: bool = False


def measure(
    assembly_dir: Path, stack_name: str, template: Mapping[str, Any], workload: Workload
) -> tuple[CodeUsage, CodeUsage]:
    """Meter the stack's code as deployed, and as the naive stack would run it (text logs at
    INFO, plain JSON payloads)."""
    from pipeline_tools.meter import meter

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def usage(naive: bool) -> CodeUsage:
        found = meter(
            assembly_dir,
            stack_name,
            record_bytes=workload.record_bytes,
            progress=progress,
            template=naive_settings(template) if naive else template,
        )
        per_record = found.records
        return CodeUsage(
            write_units=sum(u.write_units for u in found.valid.values()) / per_record,
            read_units=sum(u.read_units for u in found.valid.values()) / per_record,
            log_bytes={s: u.per_invocation(u.log_bytes) for s, u in found.valid.items()},
            failed_log_bytes=sum(u.log_bytes for u in found.invalid.values())
            / max(1, found.invalid_records),
            item_bytes=found.item_bytes,
            items_expire=found.items_expire,
            custom_metrics=len(found.metrics),
            marker_items=found.marker_items_per_record,
            marker_item_bytes=found.marker_item_bytes,
            markers_expire=found.markers_expire,
        )

    return usage(False), usage(True)


def naive_settings(template: Mapping[str, Any]) -> dict[str, Any]:
    """``template`` as the naive stack runs the same code: Lambda's default logging (text format,
    no levels, Powertools at INFO) and the payload stored as plain JSON."""
    naive = copy.deepcopy(dict(template))
    for resource in naive["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function":
            props = resource["Properties"]
            group = props.get("LoggingConfig", {}).get("LogGroup")
            props["LoggingConfig"] = {"LogGroup": group} if group else {}
            variables = props.get("Environment", {}).get("Variables", {})
            if "POWERTOOLS_LOG_LEVEL" in variables:
                variables["POWERTOOLS_LOG_LEVEL"] = "INFO"
            if "PAYLOAD_ENCODING" in variables:
                variables["PAYLOAD_ENCODING"] = "json"
    return naive


# --- the stack, as far as cost goes ---------------------------------------------------------


@dataclass(frozen=True)
class Capacity:
    """Provisioned concurrency over a week: (minute of the week, minimum, maximum) changes."""

    changes: tuple[tuple[int, int, int], ...] = ()
    fixed: int = 0
    utilization_target: float | None = None

    def instances(self, concurrency: float) -> tuple[float, float]:
        """Instances on average, and the share of the week with any, at ``concurrency``.

        With a scalable target, the capacity is what target tracking asks for
        (``ceil(concurrency / target)``), held between the minimum and maximum in force.
        """
        if not self.changes:
            return float(self.fixed), 1.0 if self.fixed else 0.0
        demand = (
            math.ceil(concurrency / self.utilization_target - 1e-9)
            if self.utilization_target
            else 0
        )
        low, high = self.changes[-1][1:]  # what the previous week's last action left
        total = covered = 0
        upcoming = iter([*self.changes, (MINUTES_PER_WEEK, low, high)])
        at, next_low, next_high = next(upcoming)
        for minute in range(MINUTES_PER_WEEK):
            while minute >= at:
                low, high = next_low, next_high
                at, next_low, next_high = next(upcoming)
            capacity = min(max(demand, low), high)
            total += capacity
            covered += capacity > 0
        return total / MINUTES_PER_WEEK, covered / MINUTES_PER_WEEK


@dataclass(frozen=True)
class FunctionModel:
    stage: str
    memory_mb: int
    architecture: str
    tracing: str = "PassThrough"
    capacity: Capacity = field(default_factory=Capacity)
    log_retention_days: int | None = None  # None: never expires


@dataclass(frozen=True)
class RollupModel:
    """The scheduled count roll-up: its memory, architecture and runs a month."""

    memory_mb: int
    architecture: str
    runs_per_month: float
    log_retention_days: int | None = None


@dataclass(frozen=True)
class StackModel:
    name: str
    functions: tuple[FunctionModel, ...]
    table_billing: str = "PAY_PER_REQUEST"
    table_rcu: int = 0
    table_wcu: int = 0
    point_in_time_recovery: bool = False
    has_dead_letter_queue: bool = True
    alarm_metrics: int = 0
    high_resolution_alarm_metrics: int = 0
    composite_alarms: int = 0
    dashboards: int = 0
    #: Days a stored record is kept (the processor's RECORD_RETENTION_DAYS); None: for ever.
    record_retention_days: int | None = None
    naive: bool = False
    rollup: RollupModel | None = None


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


def _function_model(stack: StackTemplate, stage: Stage) -> FunctionModel:
    """One stage's memory, architecture, tracing, warm capacity and log retention."""
    groups = stack.resources("AWS::Logs::LogGroup")
    p = stage.properties
    group_id = ref_id(p.get("LoggingConfig", {}).get("LogGroup"))
    retention = (
        groups[group_id]["Properties"].get("RetentionInDays") if group_id in groups else None
    )
    capacity = Capacity()
    if stage.alias_id is not None:
        alias = stack.resources("AWS::Lambda::Alias")[stage.alias_id]["Properties"]
        fixed = alias.get("ProvisionedConcurrencyConfig", {}).get(
            "ProvisionedConcurrentExecutions", 0
        )
        targets = stack.resources("AWS::ApplicationAutoScaling::ScalableTarget")
        target_id, target = next(
            (
                (i, t["Properties"])
                for i, t in targets.items()
                if stage.alias_id in json.dumps(t["Properties"]["ResourceId"])
            ),
            (None, None),
        )
        policies = stack.resources("AWS::ApplicationAutoScaling::ScalingPolicy")
        capacity = capacity_of(fixed, target, _utilization_target(policies, target_id))
    return FunctionModel(
        stage=stage.name,
        memory_mb=int(p.get("MemorySize", 128)),
        architecture=(p.get("Architectures") or ["x86_64"])[0],
        tracing=p.get("TracingConfig", {}).get("Mode", "PassThrough"),
        capacity=capacity,
        log_retention_days=retention,
    )


def model_from_template(template: Mapping[str, Any], name: str = "stack") -> StackModel:
    """Read everything that drives cost from a synthesized template."""
    stack = StackTemplate.of(template)
    functions = stack.resources("AWS::Lambda::Function")
    models = [_function_model(stack, stage) for stage in stack.stages.values()]
    tables = list(resources(template, "AWS::DynamoDB::Table").values())
    if len(tables) != 1:
        raise CostInputError(f"{name}: expected one DynamoDB table, found {len(tables)}")
    table = tables[0]["Properties"]
    throughput = table.get("ProvisionedThroughput", {})
    alarms = [a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values()]
    return StackModel(
        name=name,
        functions=tuple(sorted(models, key=lambda m: m.stage)),
        table_billing=table.get("BillingMode", "PROVISIONED"),
        table_rcu=int(throughput.get("ReadCapacityUnits", 0)),
        table_wcu=int(throughput.get("WriteCapacityUnits", 0)),
        point_in_time_recovery=bool(
            table.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")
        ),
        has_dead_letter_queue=any(
            "DeadLetterConfig" in f["Properties"] for f in functions.values()
        ),
        alarm_metrics=sum(_alarm_metrics(a) for a in alarms if not _high_resolution(a)),
        high_resolution_alarm_metrics=sum(_alarm_metrics(a) for a in alarms if _high_resolution(a)),
        composite_alarms=len(resources(template, "AWS::CloudWatch::CompositeAlarm")),
        dashboards=len(resources(template, "AWS::CloudWatch::Dashboard")),
        record_retention_days=_retention_days_of(stack),
        rollup=_rollup_model(stack),
    )


def _rollup_model(stack: StackTemplate) -> RollupModel | None:
    """The function labelled ``count-rollup`` and the schedule of the rule that invokes it."""
    functions = stack.resources("AWS::Lambda::Function")
    found = [
        (i, f["Properties"])
        for i, f in functions.items()
        if f.get("Metadata", {}).get(SUPPORT_METADATA_KEY) == "count-rollup"
    ]
    if not found:
        return None
    function_id, p = found[0]
    aliases = {
        i
        for i, a in stack.resources("AWS::Lambda::Alias").items()
        if ref_id(a["Properties"]["FunctionName"]) == function_id
    }
    schedules = [
        r["Properties"]["ScheduleExpression"]
        for r in stack.resources("AWS::Events::Rule").values()
        if "ScheduleExpression" in r["Properties"]
        and any(
            ref_id(t["Arn"]) in aliases | {function_id} for t in r["Properties"].get("Targets", [])
        )
    ]
    if len(schedules) != 1:
        raise CostInputError(f"{function_id}: expected one schedule, found {len(schedules)}")
    groups = stack.resources("AWS::Logs::LogGroup")
    group_id = ref_id(p.get("LoggingConfig", {}).get("LogGroup"))
    return RollupModel(
        memory_mb=int(p.get("MemorySize", 128)),
        architecture=(p.get("Architectures") or ["x86_64"])[0],
        runs_per_month=SECONDS_PER_MONTH / _rate_seconds(schedules[0]),
        log_retention_days=groups.get(group_id or "", {})
        .get("Properties", {})
        .get("RetentionInDays"),
    )


def _rate_seconds(expression: str) -> float:
    """Seconds between runs of an EventBridge ``rate(N unit)`` schedule."""
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    if match is None:
        raise CostInputError(f"cannot price the schedule {expression!r}: expected rate(N unit)")
    unit = {"minute": 60, "hour": 3600, "day": 86400}[match.group(2).rstrip("s")]
    return int(match.group(1)) * unit


def _retention_days_of(stack: StackTemplate) -> int | None:
    """The processor's ``RECORD_RETENTION_DAYS``: how long records stay (with TTL on)."""
    for stage in stack.stages.values():
        variables = stage.properties.get("Environment", {}).get("Variables", {})
        if variables.get("RECORD_RETENTION_DAYS") is not None:
            return int(variables["RECORD_RETENTION_DAYS"])
    return None


def baseline_of(model: StackModel) -> StackModel:
    """The naive stack: the same functions at 3008 MB on x86_64, no provisioned concurrency; a
    table provisioned for the volume at 70 % (never below 5 RCU / 5 WCU) holding a counter item
    per type and day; text logs at INFO kept for ever; no tracing, custom metrics, alarms,
    dashboard or DLQ."""
    return StackModel(
        name=f"{model.name} (naive)",
        functions=tuple(
            replace(
                f,
                memory_mb=BASELINE_MEMORY_MB,
                architecture="x86_64",
                tracing="PassThrough",
                capacity=Capacity(),
                log_retention_days=None,
            )
            for f in model.functions
        ),
        table_billing="PROVISIONED",
        has_dead_letter_queue=False,
        record_retention_days=None,
        naive=True,
    )


def capacity_of(
    fixed: int, target: Mapping[str, Any] | None, utilization_target: float | None = None
) -> Capacity:
    """The provisioned concurrency of an alias: its fixed value, or its scalable target's range
    changed by each scheduled action when it fires (the schedule repeats weekly)."""
    if target is None:
        return Capacity(fixed=fixed)
    low, high = target["MinCapacity"], target["MaxCapacity"]
    actions = target.get("ScheduledActions", [])
    changes = sorted(
        (
            minute,
            action["ScalableTargetAction"].get("MinCapacity", low),
            action["ScalableTargetAction"].get("MaxCapacity", high),
        )
        for action in actions
        for minute in _weekly_minutes(action["Schedule"], action.get("ScheduledActionName", "?"))
    )
    return Capacity(
        changes=tuple(changes) or ((0, low, high),), utilization_target=utilization_target
    )


def _utilization_target(policies: Mapping[str, Any], target_id: str | None) -> float | None:
    for policy in policies.values():
        p = policy["Properties"]
        if target_id and ref_id(p.get("ScalingTargetId")) == target_id:
            tracking = p.get("TargetTrackingScalingPolicyConfiguration", {})
            if "TargetValue" in tracking:
                return float(tracking["TargetValue"])
    return None


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


def _high_resolution(alarm: Mapping[str, Any]) -> bool:
    """An alarm with a period under 60 s bills at the high-resolution price."""
    periods = [alarm.get("Period", 60)] + [
        m["MetricStat"].get("Period", 60) for m in alarm.get("Metrics", []) if "MetricStat" in m
    ]
    return min(periods) < 60


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
        LineItem(
            "Provisioned concurrency",
            allocation,
            f"{instance_hours:,.0f} instance-hours at this load" if instance_hours else "none",
        ),
        LineItem(
            "X-Ray traces",
            sum(traced.values()) / 1e6 * prices["xray"]["traces_recorded_per_million"],
            f"{sum(traced.values()):,.0f} traces ({', '.join(traced) or 'no function'} Active)",
        ),
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
    described = f"{model.alarm_metrics} alarm metrics"
    if model.high_resolution_alarm_metrics:
        described += f", {model.high_resolution_alarm_metrics} high-resolution"
    if model.composite_alarms:
        described += f", {model.composite_alarms} composite"
    return (
        LineItem(
            "CloudWatch custom metrics",
            metrics * cw["custom_metric_month"],
            f"{metrics} EMF metrics (measured)",
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


def report(
    template: Mapping[str, Any],
    name: str,
    workload: Workload,
    prices: Mapping[str, Any],
    usage: CodeUsage,
    naive_usage: CodeUsage,
) -> Report:
    model = model_from_template(template, name)
    return Report(
        price(model, usage, workload, prices),
        price(baseline_of(model), naive_usage, workload, prices),
        workload,
        prices,
    )


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


# --- output ---------------------------------------------------------------------------------


def render(result: Report, markdown: bool = False) -> str:
    w, p = result.workload, result.prices
    title = (
        f"{result.stack.model.name}: {w.records_per_month:,} records a month, month {w.month} "
        f"of the stack's life, {p['region']} list prices of {p['date']}"
    )
    rows = [
        (i.name, i.usd, b.usd, i.detail)
        for i, b in zip(result.stack.items, result.baseline.items, strict=True)
    ]
    summary = (
        f"{result.ratio:.1%} of the naive stack without record storage "
        f"(${result.stack.compared:,.2f} against ${result.baseline.compared:,.2f})"
    )
    if markdown:
        lines = [
            f"**{title}**",
            "",
            "| line item | this stack | naive stack | this stack's basis |",
            "| --- | ---: | ---: | --- |",
        ]
        lines += [f"| {n} | ${a:,.2f} | ${b:,.2f} | {d} |" for n, a, b, d in rows]
        lines += [
            f"| **total** | **${result.stack.total:,.2f}** | **${result.baseline.total:,.2f}** "
            f"| **{summary}** |"
        ]
        return "\n".join(lines)
    width = max(len(n) for n, *_ in rows) + 2
    lines = [title, f"{'line item':<{width}}{'this stack':>12}{'naive':>12}  basis"]
    lines += [f"{n:<{width}}{f'${a:,.2f}':>12}{f'${b:,.2f}':>12}  {d}" for n, a, b, d in rows]
    lines += [
        f"{'total':<{width}}{f'${result.stack.total:,.2f}':>12}"
        f"{f'${result.baseline.total:,.2f}':>12}",
        f"this stack costs {summary}",
    ]
    return "\n".join(lines)


def render_sweep(name: str, results: Sequence[Report], even: int | None, markdown: bool) -> str:
    """The bill by volume, at each age priced."""
    header = f"{name}: the bill by volume and age (record storage left out of both sides)"
    rows = [
        (
            f"{r.workload.records_per_month:,}",
            f"{r.workload.month}",
            f"${r.stack.compared:,.2f}",
            f"${r.baseline.compared:,.2f}",
            f"{r.ratio:.1%}",
        )
        for r in results
    ]
    if even is None:
        verdict = "break-even: none up to 1,000,000,000 records a month"
    elif even <= BREAK_EVEN_RANGE[0]:
        verdict = f"break-even: none needed, this stack is the cheaper one from {even:,} records"
    else:
        verdict = f"break-even: from {even:,} records a month this stack is the cheaper one"
    verdict += f" (month {results[0].workload.month})" if results else ""
    if markdown:
        lines = [
            f"**{header}**",
            "",
            "| records a month | month | this stack | naive stack | ratio |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join([*lines, "", verdict])
    lines = [header, f"{'records':>15}{'month':>7}{'this stack':>14}{'naive':>14}{'ratio':>9}"]
    lines += [f"{a:>15}{m:>7}{b:>14}{c:>14}{d:>9}" for a, m, b, c, d in rows]
    return "\n".join([*lines, verdict])


#: Why a line of this stack's bill changes with the stack's age, for the lines that can.
GROWS_BECAUSE = {
    RECORD_STORAGE: "the records kept: up to their retention, or all without one",
    COUNT_STORAGE: "markers fill their 9 days; then a total item a day and type",
    "DynamoDB point-in-time recovery": "follows the table's size",
    "CloudWatch Logs storage": "logs kept up to their retention, or for ever without one",
}


def by_age(results: Sequence[Report]) -> dict[str, str]:
    """How each line of this stack's bill that changes with age changes: ``grows`` when it is
    still dearer at the last age than at the one before, ``fills`` when it rose only before."""

    def risen(a: LineItem, b: LineItem) -> bool:
        return b.usd - a.usd > 0.005

    first, before, last = (r.stack.items for r in (results[0], results[-2], results[-1]))
    changes = {}
    for a, b, c in zip(first, before, last, strict=True):
        if risen(b, c):
            changes[a.name] = "grows"
        elif risen(a, c):
            changes[a.name] = "fills, then flat"
    return changes


def render_ages(name: str, results: Sequence[Report], markdown: bool) -> str:
    """This stack's bill line by line at each age priced, what grows and why, and the naive
    stack's for comparison."""
    months = [r.workload.month for r in results]
    header = (
        f"{name}: the bill by the stack's age, {results[0].workload.records_per_month:,} "
        "records a month"
    )
    changes = by_age(results) if len(results) > 1 else {}
    rows = [
        (
            item.name,
            [f"${r.stack.items[i].usd:,.2f}" for r in results],
            f"{changes[item.name]}: {GROWS_BECAUSE.get(item.name, 'see its basis')}"
            if item.name in changes
            else "",
        )
        for i, item in enumerate(results[0].stack.items)
    ]
    rows += [
        ("total, record storage aside", [f"${r.stack.compared:,.2f}" for r in results], ""),
        (
            "naive stack, record storage aside",
            [f"${r.baseline.compared:,.2f}" for r in results],
            "",
        ),
        ("ratio", [f"{r.ratio:.1%}" for r in results], ""),
    ]
    if markdown:
        lines = [
            f"**{header}**",
            "",
            "| line item | " + " | ".join(f"month {m}" for m in months) + " | with age |",
            "| --- | " + " | ".join("---:" for _ in months) + " | --- |",
        ]
        lines += [f"| {n} | " + " | ".join(v) + f" | {g} |" for n, v, g in rows]
        return "\n".join(lines)
    width = max(len(n) for n, *_ in rows) + 2
    lines = [header, f"{'line item':<{width}}" + "".join(f"{f'month {m}':>12}" for m in months)]
    lines += [f"{n:<{width}}" + "".join(f"{x:>12}" for x in v) + f"  {g}" for n, v, g in rows]
    return "\n".join(lines)


#: The bill's targets, as shares of the naive stack's (record storage out of both): at 1 M and
#: 10 M records a month, and never above it (100 M stands for "from 1 M up").
COST_TARGETS = {1_000_000: 0.80, 10_000_000: 0.40, 100_000_000: 1.0}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_tools.cost", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "templates",
        nargs="*",
        type=Path,
        help="synthesized templates, in their cloud assembly (default: "
        "cdk.out/DataPipeline-{dev,staging,prod})",
    )
    parser.add_argument(
        "--workload", type=Path, help=f"workload profile JSON (default: {WORKLOAD_FILE})"
    )
    parser.add_argument(
        "--records-per-month", type=int, help="the volume to price (default: the workload's)"
    )
    parser.add_argument(
        "--sweep", action="store_true", help=f"also price {', '.join(f'{v:,}' for v in SWEEP)}"
    )
    parser.add_argument("--chart", type=Path, help="write a PNG chart of the last template")
    parser.add_argument("--prices", type=Path, default=PRICES_FILE, help="price file")
    parser.add_argument(
        "--markdown",
        action="store_true",
        default=os.environ.get("MARKDOWN", "") not in ("", "0"),
        help="Markdown tables, for the docs (also MARKDOWN=1)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    templates = args.templates or [
        Path(f"cdk.out/DataPipeline-{e}.template.json") for e in ("dev", "staging", "prod")
    ]
    try:
        workload = Workload.load(args.workload)
        if args.records_per_month is not None:
            if args.records_per_month < 1:
                raise CostInputError(
                    f"--records-per-month = {args.records_per_month}: must be 1 or more"
                )
            workload = workload.at(args.records_per_month)
        prices = load_prices(args.prices)
        outputs = []
        for path in templates:
            name = path.name.removesuffix(".template.json")
            template = load_template(path)
            usage, naive = measure(path.parent, name, template, workload)

            def bill(
                volume: int,
                month: int | None = None,
                t: Mapping[str, Any] = template,
                n: str = name,
                u: CodeUsage = usage,
                b: CodeUsage = naive,
            ) -> Report:
                return report(t, n, workload.at(volume, month), prices, u, b)

            def first_month(volume: int) -> Report:
                return bill(volume, workload.months[0])

            outputs.append(render(bill(workload.records_per_month), args.markdown))
            if len(workload.months) > 1:
                ages = [bill(workload.records_per_month, m) for m in workload.months]
                outputs.append(render_ages(name, ages, args.markdown))
            if args.sweep:
                results = [bill(v, m) for v in SWEEP for m in workload.months]
                outputs.append(render_sweep(name, results, break_even(first_month), args.markdown))
            if args.chart and path == templates[-1]:
                from pipeline_tools.cost_chart import chart

                chart(
                    [bill(v) for v in COST_TARGETS],
                    args.chart,
                    break_even(first_month),
                    workload.months[0],
                )
                print(f"chart: {args.chart}", file=sys.stderr)
    except (CostInputError, FileNotFoundError, json.JSONDecodeError) as error:
        print(f"cost report: {error}", file=sys.stderr)
        return 1
    print("\n\n".join(outputs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
