"""`PipelineMonitoring`: the alarms and dashboard an on-call engineer needs.

Every alarm watches what actually runs: the invocation alarms use the ``live`` alias's metrics
(dimensions ``FunctionName`` and ``Resource=<function>:live``), so they see the invocations that
provisioned concurrency serves. Every alarm notifies one alarm action (an ``AlarmTopic``, or any
``IAlarmAction``), as AWS Control Tower's CT.CLOUDWATCH.PR.1 requires, and missing data counts as
not breaching (a quiet pipeline is a healthy one).

The metrics of Lambda's asynchronous event queue (``DeadLetterErrors``,
``DestinationDeliveryFailures``) are alarmed on the function's ``FunctionName`` dimension alone.
AWS documents that dimension, for every Lambda metric, as the aggregate of all versions and
aliases of a function (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics.html,
"By Function Name"); it does not document which queue metrics also carry ``Resource`` (the
CloudWatch metric catalog behind aws-cdk-lib's ``LambdaMetrics`` lists ``Resource`` for these
two, and no dimension at all for ``AsyncEvents*``), and an alarm on a dimension set that is never
published sits in OK for ever. Every invoke path of this stack targets ``live``, so the
function-wide figure is the alias's figure. ``AsyncEventsDropped`` is not alarmed: it counts
events dropped after all attempts *including* those delivered to the DLQ
(https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html#async-invocation-metrics),
which the DLQ-depth alarm already reports, and a failed DLQ write shows as ``DeadLetterErrors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from constructs_lib.alarm_thresholds import AlarmThresholds
from constructs_lib.optimized_function import OptimizedFunction
from constructs_lib.version_alarms import REGRESSIONS_METRIC, VERSION_DIMENSION, version_checks

__all__ = ["REGRESSIONS_METRIC", "VERSION_DIMENSION", "AlarmThresholds", "PipelineMonitoring"]

GT = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
#: Actions an alarm may have per state (PutMetricAlarm, AlarmActions: "Maximum number of 5
#: items", https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html).
MAX_ALARM_ACTIONS = 5
BATCH_FAILED = "batches failed whole and return to the queue: read the stage's log group"


class PipelineMonitoring(Construct):
    """Alarms per function, queue and table, all to one topic, and a stage-by-stage dashboard.

    Call ``monitor_function`` for each stage in pipeline order, then ``monitor_dead_letter_queue``
    and ``monitor_table``; each adds its alarms (to ``alarms``, and a function's to its own
    ``alarms``) and its row of dashboard widgets.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alarm_action: cloudwatch.IAlarmAction | Sequence[cloudwatch.IAlarmAction],
        thresholds: AlarmThresholds | None = None,
        dashboard: bool = True,
        dashboard_name: str | None = None,
    ) -> None:
        """
        :param alarm_action: every alarm's action, e.g. an ``AlarmTopic`` (whose policy then
            lets exactly these alarms publish), or several (at most 5: CloudWatch's limit of
            actions per alarm state, PutMetricAlarm ``AlarmActions``).
        :param thresholds: :default: ``AlarmThresholds()``
        :param dashboard: make the dashboard (CloudWatch bills $3 a month for each).
            :default: True
        :param dashboard_name: :default: ``<stack name>-pipeline``
        """
        super().__init__(scope, construct_id)
        self.thresholds = thresholds or AlarmThresholds()
        self.period = Duration.seconds(self.thresholds.period_seconds)
        self._actions = list(alarm_action) if isinstance(alarm_action, Sequence) else [alarm_action]
        if not 1 <= len(self._actions) <= MAX_ALARM_ACTIONS:
            raise ValueError(
                f"alarm_action: 1 to {MAX_ALARM_ACTIONS} actions, got {len(self._actions)}"
            )
        self.alarms: list[cloudwatch.Alarm] = []
        self.dashboard: cloudwatch.Dashboard | None = None
        if dashboard:
            self.dashboard = cloudwatch.Dashboard(
                self,
                "Dashboard",
                dashboard_name=dashboard_name or f"{Stack.of(self).stack_name}-pipeline",
            )
            self.dashboard.add_widgets(
                cloudwatch.TextWidget(markdown="# Pipeline, stage by stage", width=24, height=1)
            )

    def monitor_function(
        self,
        label: str,
        target: OptimizedFunction | lambda_.IFunction,
        *,
        critical: bool = False,
        reads_queue: bool = False,
    ) -> list[cloudwatch.Alarm]:
        """Alarm on one function; return the alarms made.

        Errors, throttles and p99 duration on what callers invoke (an ``OptimizedFunction``'s
        ``live`` alias, or the function itself); destination and DLQ delivery failures on the
        function. What the function does decides the rest: without retries every error goes
        straight to the DLQ, whose depth alarm reports it, so no ``Errors`` alarm (it would
        notify twice); without an on-success destination, no ``DestinationDeliveryFailures``
        alarm (it could never fire). A plain function gets both.

        :param critical: alarm on provisioned-concurrency spillover even where none is
            configured yet (a function with provisioned concurrency always gets it).
        :param reads_queue: an SQS event source mapping invokes it (``StageQueue``): an error
            is a batch failed whole, back in the queue after its visibility timeout
            (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html), so
            ``Errors`` alarms; no ``DeadLetterErrors`` (no event of its arrives asynchronously).
        """
        invoked, function = _invoked_and_function(target)
        timeout_ms = (
            _timeout(function).to_milliseconds() * self.thresholds.duration_p99_timeout_ratio
        )
        checks = [
            (name, metric, threshold, BATCH_FAILED if reads_queue and name == "Errors" else text)
            for name, metric, threshold, text in self._function_checks(
                invoked, function, timeout_ms
            )
        ]
        if isinstance(target, OptimizedFunction):
            skipped = {
                "Errors": target.retry_attempts == 0 and not reads_queue,
                "DeadLetterErrors": reads_queue,
                "DestinationDeliveryFailures": target.on_success is None,
                "ProvisionedConcurrencySpillover": not (
                    critical or target.has_provisioned_concurrency
                ),
            }
        else:
            skipped = {"ProvisionedConcurrencySpillover": not critical}
        # One throttle is ordinary at a burst's edge (Lambda retries throttled async events):
        # only throttling in several of the last periods pages.
        sustained: dict[str, dict[str, Any]] = {
            "Throttles": {
                "evaluation_periods": self.thresholds.throttle_evaluation_periods,
                "datapoints_to_alarm": self.thresholds.throttle_datapoints_to_alarm,
            }
        }
        alarms = [
            self._alarm(f"{label}{name}", metric, threshold, meaning, **sustained.get(name, {}))
            for name, metric, threshold, meaning in checks
            if not skipped.get(name, False)
        ]
        self._function_widgets(label, invoked, timeout_ms)
        return alarms

    def _function_checks(
        self, invoked: lambda_.IFunction, function: lambda_.IFunction, timeout_ms: float
    ) -> list[tuple[str, cloudwatch.IMetric, float, str]]:
        """Each function alarm: its name, metric, threshold and what it means, in order."""
        t = self.thresholds
        return [
            (
                "Errors",
                invoked.metric_errors(period=self.period, statistic="Sum"),
                t.errors,
                "invocations failed: read the stage's log group for the error",
            ),
            (
                "Throttles",
                invoked.metric_throttles(period=self.period, statistic="Sum"),
                t.throttles,
                "invocations were throttled in most of the last periods: raise reserved or "
                "provisioned concurrency",
            ),
            (
                "DurationP99",
                invoked.metric_duration(period=self.period, statistic="p99"),
                timeout_ms,
                f"p99 duration above {t.duration_p99_timeout_ratio:.0%} of the timeout",
            ),
            (
                "DeadLetterErrors",
                self._function_metric(function, "DeadLetterErrors"),
                t.dead_letter_errors,
                "failed events could not be written to the DLQ: they are lost",
            ),
            (
                "DestinationDeliveryFailures",
                self._function_metric(function, "DestinationDeliveryFailures"),
                t.destination_delivery_failures,
                "the next stage could not be invoked",
            ),
            # Spillover is the harm (cold starts). High utilization alone is what auto scaling
            # aims for: it is on the dashboard, not an alarm.
            (
                "ProvisionedConcurrencySpillover",
                self._metric(invoked, "ProvisionedConcurrencySpilloverInvocations"),
                t.provisioned_concurrency_spillover,
                "invocations ran beyond provisioned concurrency (cold starts)",
            ),
        ]

    def _function_widgets(self, label: str, invoked: lambda_.IFunction, timeout_ms: float) -> None:
        self._widgets(
            self._graph(f"{label}: invocations", [invoked.metric_invocations(period=self.period)]),
            self._graph(
                f"{label}: errors and throttles",
                [
                    invoked.metric_errors(period=self.period),
                    invoked.metric_throttles(period=self.period),
                ],
            ),
            self._graph(
                f"{label}: duration p99 (ms)",
                [invoked.metric_duration(period=self.period, statistic="p99")],
                annotation=(timeout_ms, "alarm"),
            ),
            self._graph(
                f"{label}: provisioned concurrency utilization (max)",
                [self._metric(invoked, "ProvisionedConcurrencyUtilization", "Maximum")],
            ),
        )

    def monitor_new_version(
        self,
        label: str,
        target: OptimizedFunction,
        *,
        metrics_namespace: str,
        service: str,
        signals: Sequence[str] = ("errors", "duration"),
    ) -> dict[str, cloudwatch.Alarm]:
        """Rollback alarms on the version ``target``'s alias runs, made anew for each version.

        ``errors`` watches the stage's own ``Regressions`` metric (EMF in ``metrics_namespace``,
        dimensions ``service`` and ``FunctionVersion``: the errors its code did not expect);
        ``duration`` the p99 ``Duration`` on Lambda's ``ExecutedVersion`` dimension
        (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics.html, "Using
        dimensions"). The alias's own metrics would mix the old version's traffic in. Each
        alarm's name carries the version, so a deploy replaces it (``AlarmName`` changes
        require replacement) and it starts with no state: an alarm the previous version left
        in ALARM cannot stop the next deployment.
        """
        checks = version_checks(
            target, metrics_namespace, service, period=self.period, thresholds=self.thresholds
        )
        unknown = [s for s in signals if s not in checks]
        if unknown:
            raise ValueError(f"signals: {unknown} are not version alarms; use {list(checks)}")
        stack_name = Stack.of(self).stack_name
        version = target.version.version
        return {
            signal: self._alarm(
                f"{label}{checks[signal][0]}",
                *checks[signal][1:],
                alarm_name=f"{stack_name}-{label}{checks[signal][0]}-v{version}",
            )
            for signal in signals
        }

    def alarm(self, name: str) -> cloudwatch.Alarm:
        """The alarm made under ``name`` (e.g. ``ValidatorThrottles``)."""
        found = [a for a in self.alarms if a.node.id == name]
        if not found:
            raise KeyError(f"no alarm {name!r}; made: {[a.node.id for a in self.alarms]}")
        return found[0]

    def monitor_dead_letter_queue(self, queue: sqs.IQueue) -> None:
        """Any visible message, and the age of the oldest one."""
        t = self.thresholds
        visible = queue.metric_approximate_number_of_messages_visible(
            period=self.period, statistic="Maximum"
        )
        oldest = queue.metric_approximate_age_of_oldest_message(
            period=self.period, statistic="Maximum"
        )
        self._alarm(
            "DeadLetterQueueNotEmpty",
            visible,
            t.dlq_visible_messages,
            "records failed after their retries and wait in the DLQ",
        )
        self._alarm(
            "DeadLetterQueueOldMessage",
            oldest,
            t.dlq_oldest_message_seconds,
            "a failed record has waited too long for a replay",
        )
        self._widgets(
            self._graph("DLQ: visible messages", [visible], width=12),
            self._graph("DLQ: age of oldest message (s)", [oldest], width=12),
        )

    def monitor_stage_queue(
        self,
        name: str,
        queue: sqs.IQueue,
        *,
        oldest_seconds: float,
        failed_invokes: cloudwatch.IMetric | None = None,
    ) -> None:
        """The age of a stage queue's oldest message: the stage falls behind, or is stopped.

        :param failed_invokes: the queue's mapping's ``FailedInvokeEventCount``
            (``StageQueue.metric_failed_invoke_events``), where the mapping sends its event
            counts: it alarms above the ``errors`` threshold. :default: none; the function's
            ``Errors`` and ``Throttles`` alarms and this age alarm cover the mapping's failures
        """
        oldest = queue.metric_approximate_age_of_oldest_message(
            period=self.period, statistic="Maximum"
        )
        self._alarm(f"{name}QueueOldMessage", oldest, oldest_seconds, f"records wait for {name}")
        graphs = [self._graph(f"{name} queue: age of oldest message (s)", [oldest], width=12)]
        if failed_invokes is not None:
            self._alarm(
                f"{name}MappingFailedInvokes",
                failed_invokes,
                self.thresholds.errors,
                f"{name}'s event source mapping could not invoke the function with messages, "
                "or the function reported them failed: read the mapping's state and the "
                "stage's log group",
            )
            graphs.append(self._graph(f"{name} mapping: failed invoke events", [failed_invokes]))
        self._widgets(*graphs)

    def monitor_table(
        self, table: dynamodb.ITable, *, operations: Sequence[dynamodb.Operation]
    ) -> None:
        """Throttled requests and system errors of the ``operations`` the code calls."""
        t = self.thresholds
        throttled = self._sum_over_operations(table, "ThrottledRequests", operations)
        errors = self._sum_over_operations(table, "SystemErrors", operations)
        self._alarm(
            "TableThrottledRequests",
            throttled,
            t.table_throttled_requests,
            "DynamoDB throttled requests of the pipeline",
        )
        self._alarm(
            "TableSystemErrors",
            errors,
            t.table_system_errors,
            "DynamoDB returned system errors (HTTP 500)",
        )
        self._widgets(
            self._graph(
                "Table: consumed capacity units",
                [
                    table.metric_consumed_read_capacity_units(period=self.period),
                    table.metric_consumed_write_capacity_units(period=self.period),
                ],
                width=12,
            ),
            self._graph("Table: throttled requests", [throttled]),
            self._graph("Table: system errors", [errors]),
        )

    def _widgets(self, *widgets: cloudwatch.IWidget) -> None:
        """A row of the dashboard, when there is one."""
        if self.dashboard is not None:
            self.dashboard.add_widgets(*widgets)

    def monitor_schedule(
        self,
        label: str,
        target: OptimizedFunction | lambda_.IFunction,
        *,
        every: Duration,
        missed_runs: int = 3,
    ) -> cloudwatch.Alarm:
        """Alarm when a function run ``every`` so long has not run ``missed_runs`` times in a
        row (a disabled rule, a deleted target): its ``Invocations`` is summed per ``every``,
        and a period without one is breaching. Lambda publishes a function's metrics only when
        it is invoked (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics.html),
        so silence is missing data, which this alarm treats as a missed run
        (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html#alarms-and-missing-data).
        """
        invoked, _ = _invoked_and_function(target)
        return self._alarm(
            f"{label}NotRunning",
            invoked.metric_invocations(period=every, statistic="Sum"),
            1,
            f"no run in the last {missed_runs} scheduled periods: check the schedule rule",
            evaluation_periods=missed_runs,
            silence_breaches=True,
        )

    def _alarm(
        self,
        name: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        meaning: str,
        *,
        alarm_name: str | None = None,
        evaluation_periods: int | None = None,
        datapoints_to_alarm: int | None = None,
        silence_breaches: bool = False,
    ) -> cloudwatch.Alarm:
        """An alarm above ``threshold``; with ``silence_breaches``, one *below* it, for which
        missing data breaches too."""
        alarm = cloudwatch.Alarm(
            self,
            name,
            metric=metric,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
            if silence_breaches
            else GT,
            evaluation_periods=evaluation_periods or self.thresholds.evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING
            if silence_breaches
            else cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"{name}: {meaning}.",
            alarm_name=alarm_name,
        )
        alarm.add_alarm_action(*self._actions)
        self.alarms.append(alarm)
        return alarm

    def _sum_over_operations(
        self, table: dynamodb.ITable, metric_name: str, operations: Sequence[dynamodb.Operation]
    ) -> cloudwatch.MathExpression:
        """``metric_name`` summed over ``operations``; a quiet operation counts as 0, so one
        operation's silence never hides another's throttles (a plain ``a + b`` would)."""
        names = [_api_name(operation) for operation in operations]
        metrics = {
            name.lower(): table.metric(
                metric_name,
                dimensions_map={"TableName": table.table_name, "Operation": name},
                statistic="Sum",
                period=self.period,
            )
            for name in names
        }
        return cloudwatch.MathExpression(
            expression=" + ".join(f"FILL({name}, 0)" for name in metrics),
            using_metrics=metrics,
            label=f"{metric_name} ({', '.join(names)})",
            period=self.period,
        )

    def _metric(
        self, target: lambda_.IFunction, metric_name: str, statistic: str = "Sum"
    ) -> cloudwatch.Metric:
        return target.metric(metric_name, period=self.period, statistic=statistic)

    def _function_metric(self, function: lambda_.IFunction, metric_name: str) -> cloudwatch.Metric:
        """A metric of Lambda's async event queue, on ``FunctionName`` alone (module docstring)."""
        return cloudwatch.Metric(
            namespace="AWS/Lambda",
            metric_name=metric_name,
            dimensions_map={"FunctionName": function.function_name},
            period=self.period,
            statistic="Sum",
        )

    def _graph(
        self,
        title: str,
        metrics: list[cloudwatch.IMetric],
        *,
        width: int = 6,
        annotation: tuple[float, str] | None = None,
    ) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(
            title=title,
            left=metrics,
            width=width,
            height=6,
            left_annotations=[
                cloudwatch.HorizontalAnnotation(value=annotation[0], label=annotation[1])
            ]
            if annotation
            else None,
        )


def _api_name(operation: dynamodb.Operation) -> str:
    """``Operation.PUT_ITEM`` -> ``PutItem`` (the metric's dimension)."""
    return "".join(word.capitalize() for word in operation.name.split("_"))


def _invoked_and_function(
    target: OptimizedFunction | lambda_.IFunction,
) -> tuple[lambda_.IFunction, lambda_.IFunction]:
    """What callers invoke, and the function behind it."""
    if isinstance(target, OptimizedFunction):
        return target.alias, target.function
    return target, target


def _timeout(function: lambda_.IFunction) -> Duration:
    """The function's timeout where the construct knows it (a ``Function``), else Lambda's 3 s."""
    return getattr(function, "timeout", None) or Duration.seconds(3)
