"""The stack, as far as cost goes: what drives each line, read from the synthesized template."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from constructs_lib import cron
from pipeline_tools.bill.workload import SECONDS_PER_MONTH, CostInputError
from pipeline_tools.template import StackTemplate, Stage, ref_id, referenced, resources
from serverless_stack.stages import SUPPORT_METADATA_KEY

MINUTES_PER_WEEK = cron.MINUTES_PER_WEEK


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
class QueueBatching:
    """The batched path (``ingestion.mode: batched``): the entry stage's event source mapping
    (messages a batch, its window in seconds) and how many stage queues there are."""

    batch_size: int
    window_seconds: float
    queues: int


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
    #: How the stages read their queues; None: the per-record path (asynchronous invokes).
    batching: QueueBatching | None = None
    #: Metrics the event source mappings send because their ``MetricsConfig`` names
    #: ``EventCount`` (``ingestion.mapping_metrics``).
    event_source_metrics: int = 0


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
        batching=_batching_of(stack),
        event_source_metrics=_event_source_metrics(stack),
    )


#: What an SQS event source mapping sends when its ``MetricsConfig`` names ``EventCount``:
#: PolledEventCount, InvokedEventCount, FilteredOutEventCount, FailedInvokeEventCount and
#: DeletedEventCount, one of each per mapping (its ``EventSourceMappingUUID``), PolledEventCount
#: even on an empty poll; the group's other metrics are the stream and Kafka sources' (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html#event-source-mapping-metrics;
#: the construct's ``EVENT_COUNT_METRICS``, held equal by a test). Lambda's metrics page calls
#: the metrics it sends by itself free and says nothing of these opt-in ones
#: (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics.html), so the bill takes
#: the dearer reading: each is priced as a CloudWatch metric, all month.
SQS_EVENT_COUNT_METRICS = 5


def _event_source_metrics(stack: StackTemplate) -> int:
    """The metrics the stack's event source mappings send by their ``MetricsConfig``."""
    return sum(
        SQS_EVENT_COUNT_METRICS
        for m in stack.resources("AWS::Lambda::EventSourceMapping").values()
        if "EventCount" in m["Properties"].get("MetricsConfig", {}).get("Metrics", [])
    )


def _batching_of(stack: StackTemplate) -> QueueBatching | None:
    """The entry stage's SQS event source mapping, if the stages read queues: the stage no
    other stage hands on to (``NEXT_STAGE``)."""
    mappings = stack.resources("AWS::Lambda::EventSourceMapping")
    if not mappings:
        return None
    following = {
        s.properties.get("Environment", {}).get("Variables", {}).get("NEXT_STAGE")
        for s in stack.stages.values()
    }
    (entry,) = [s for name, s in stack.stages.items() if name not in following]
    (mapping,) = [
        m["Properties"]
        for m in mappings.values()
        if entry.alias_id in referenced(m["Properties"]["FunctionName"])
    ]
    return QueueBatching(
        batch_size=int(mapping.get("BatchSize", 10)),
        window_seconds=float(mapping.get("MaximumBatchingWindowInSeconds", 0)),
        queues=len(mappings),
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
