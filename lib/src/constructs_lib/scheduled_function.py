"""`ScheduledFunction`: an ``OptimizedFunction`` that an EventBridge schedule runs.

The rule invokes the ``live`` alias asynchronously, as any caller does, so the function's
retries, maximum event age and dead-letter queue apply to each run
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-run-lambda-schedule.html). This
project's count roll-up runs this way every hour (``lambda_src/rollup``).

Use: ``ScheduledFunction(scope, id, function_props=..., schedule=Schedule.rate(...))``, then grant
its ``role`` what its code calls.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from constructs_lib.optimized_function import OptimizedFunction, props_of

__all__ = ["SCHEDULED_DEFAULTS", "ScheduledFunction"]

#: The function's props where the caller gives none.
SCHEDULED_DEFAULTS: dict[str, Any] = {
    "memory_size": 256,
    "timeout": Duration.minutes(5),
    "tracing": lambda_.Tracing.PASS_THROUGH,
}


class ScheduledFunction(Construct):
    """A function run on a schedule.

    Attributes: ``handler`` (the ``OptimizedFunction``), ``function``, ``role`` and ``rule``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function_props: lambda_.FunctionProps,
        schedule: events.Schedule,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_WEEK,
        log_encryption_key: kms.IKey | None = None,
    ) -> None:
        """
        :param function_props: the function's props, merged over :data:`SCHEDULED_DEFAULTS`.
        :param schedule: when it runs, e.g. ``Schedule.rate(Duration.hours(1))``.
        :param log_retention: its log retention. :default: 7 days
        :param log_encryption_key: a KMS key for its logs. :default: none
        """
        super().__init__(scope, construct_id)
        self.handler = OptimizedFunction(
            self,
            "Function",
            function_props=lambda_.FunctionProps(
                **{**SCHEDULED_DEFAULTS, **props_of(function_props)}
            ),
            log_retention=log_retention,
            log_encryption_key=log_encryption_key,
        )
        self.function = self.handler.function
        self.role = self.handler.role
        self.rule = events.Rule(
            self,
            "Schedule",
            schedule=schedule,
            targets=[targets.LambdaFunction(self.handler.alias)],
        )
