"""`AlarmThresholds`: when each of the pipeline's alarms fires, and over which window.

Plain data, no CDK: ``PipelineMonitoring`` takes it, and the settings model parses the
``alarms`` block of ``cdk.json`` straight into it. The ``Annotated`` bounds are read by the
settings model (and its JSON Schema) and by ``limits.check_fields`` for any other caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Ge, Le

from constructs_lib.limits import (
    ALARM_EVALUATION_PERIODS,
    ALARM_PERIOD_SECONDS,
    ALARM_PERIOD_STEP_SECONDS,
    LimitError,
    check_fields,
    max_evaluation_range_seconds,
)

Count = Annotated[float, Ge(0)]
Share = Annotated[float, Ge(0.01), Le(1.0)]
Period = Annotated[int, Ge(ALARM_PERIOD_SECONDS[0]), Le(ALARM_PERIOD_SECONDS[1])]
Evaluations = Annotated[int, Ge(ALARM_EVALUATION_PERIODS[0]), Le(ALARM_EVALUATION_PERIODS[1])]


@dataclass(frozen=True)
class AlarmThresholds:
    """Alarm thresholds. Each alarm fires when its metric is *above* the threshold.

    :param errors: function errors per period. :default: 0
    :param throttles: function throttles per period. :default: 0
    :param throttle_evaluation_periods: the periods the throttles alarm looks back over.
        :default: 5
    :param throttle_datapoints_to_alarm: how many of them must have more than ``throttles``
        before it fires: sustained throttling pages, a single throttle does not. :default: 3
    :param duration_p99_timeout_ratio: p99 duration, as a share of the timeout. :default: 0.8
    :param destination_delivery_failures: failed deliveries to a destination. :default: 0
    :param dead_letter_errors: failed writes to the DLQ. :default: 0
    :param provisioned_concurrency_spillover: invocations beyond provisioned concurrency.
        :default: 0
    :param dlq_visible_messages: messages waiting in the DLQ. :default: 0
    :param dlq_oldest_message_seconds: age of the oldest DLQ message. :default: 3600
    :param table_throttled_requests: throttled table requests per period. :default: 0
    :param table_system_errors: DynamoDB system errors per period. :default: 0
    :param period_seconds: the alarms' period, a whole number of minutes: the metrics have
        one-minute resolution, so a shorter period never sees data and bills as a
        high-resolution alarm. :default: 60
    :param evaluation_periods: breaching periods before an alarm fires. :default: 1
    """

    errors: Count = 0
    throttles: Count = 0
    throttle_evaluation_periods: Evaluations = 5
    throttle_datapoints_to_alarm: Evaluations = 3
    duration_p99_timeout_ratio: Share = 0.8
    destination_delivery_failures: Count = 0
    dead_letter_errors: Count = 0
    provisioned_concurrency_spillover: Count = 0
    dlq_visible_messages: Count = 0
    dlq_oldest_message_seconds: Count = 3600
    table_throttled_requests: Count = 0
    table_system_errors: Count = 0
    period_seconds: Period = 60
    evaluation_periods: Evaluations = 1

    def __post_init__(self) -> None:
        check_fields(self)
        low, high = ALARM_PERIOD_SECONDS
        period = self.period_seconds
        if period % ALARM_PERIOD_STEP_SECONDS:
            raise LimitError(
                "period_seconds",
                period,
                f"must be a whole number of minutes from {low} to {high} (the metrics have "
                "one-minute resolution)",
            )
        for name in ("evaluation_periods", "throttle_evaluation_periods"):
            self._require_window(name, getattr(self, name))
        if self.throttle_datapoints_to_alarm > self.throttle_evaluation_periods:
            raise LimitError(
                "throttle_datapoints_to_alarm",
                self.throttle_datapoints_to_alarm,
                "must be from 1 to throttle_evaluation_periods "
                f"({self.throttle_evaluation_periods})",
            )

    def _require_window(self, name: str, evaluations: int) -> None:
        period = self.period_seconds
        window, limit = period * evaluations, max_evaluation_range_seconds(period)
        if window > limit:
            raise LimitError(
                name,
                evaluations,
                f"must keep {name} x period_seconds at most {limit} s "
                f"(CloudWatch's limit for a {period} s period), not {window} s",
            )
