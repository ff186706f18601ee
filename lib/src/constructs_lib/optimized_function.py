"""`OptimizedFunction`: one Lambda function done right, reusable in any stack.

It takes the Lambda function's own props (``lambda_.FunctionProps``), merges them over its
defaults and adds what naive stacks leave out:

* memory is a required, explicit choice (no 3008 MB "just in case");
* every caller goes through a ``live`` alias on a published version; the async invoke settings
  and the provisioned concurrency sit on that alias, where they are used;
* asynchronous failures land in an SQS dead-letter queue instead of vanishing;
* logs go to an explicit log group with a finite retention;
* the execution role holds no AWS-managed policy: its log permissions name its own log group.

It never grants data-plane access (tables, buckets, ...): the stack that wires constructs
together does, with the exact actions the code calls.
"""

from __future__ import annotations

import inspect
from typing import Any

from aws_cdk import Duration, RemovalPolicy, TimeZone
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from constructs_lib import limits
from constructs_lib.dead_letter_queue import dead_letter_queue as new_dead_letter_queue
from constructs_lib.deployment import DeploymentPreference, SafeDeployment
from constructs_lib.paths import stack_path
from constructs_lib.scaling import ProvisionedConcurrencyScaling, ScheduledCapacity

__all__ = [
    "DeploymentPreference",
    "OptimizedFunction",
    "ProvisionedConcurrencyScaling",
    "ScheduledCapacity",
]

#: What the construct sets where ``function_props`` does not: arm64 is about 20 % cheaper per
#: GB-second; PassThrough records only traces a caller sampled (Active traces nearly every
#: invocation at low volume, at $5 per million); the JSON log format is what log-level
#: filtering requires.
DEFAULTS: dict[str, Any] = {
    "architecture": lambda_.Architecture.ARM_64,
    "timeout": Duration.seconds(30),
    "tracing": lambda_.Tracing.PASS_THROUGH,
    "logging_format": lambda_.LoggingFormat.JSON,
    "application_log_level_v2": lambda_.ApplicationLogLevel.INFO,
    "system_log_level_v2": lambda_.SystemLogLevel.INFO,
}
#: The async invoke settings: the construct puts them on the alias, which every caller invokes.
ALIAS_DEFAULTS: dict[str, Any] = {
    "retry_attempts": 2,
    "max_event_age": Duration.seconds(limits.DEFAULT_MAX_EVENT_AGE_SECONDS),
}
ALIAS_PROPS = (*ALIAS_DEFAULTS, "on_success", "on_failure")
#: Props the construct makes itself, with what to use instead.
OWNED_PROPS = {
    "role": "the construct makes a least-privilege role: grant to .role",
    "log_group": "the construct makes the log group: set log_retention and log_encryption_key",
    "log_retention": "the construct makes the log group: pass log_retention to OptimizedFunction",
}
_FIELDS = tuple(inspect.signature(lambda_.FunctionProps.__init__).parameters)[1:]


def props_of(function_props: lambda_.FunctionOptions) -> dict[str, Any]:
    """The props a caller set, by name (a jsii struct keeps unset props as ``None``);
    ``FunctionOptions`` (no ``code``, ``handler`` or ``runtime``) or ``FunctionProps``."""
    values = {name: getattr(function_props, name, None) for name in _FIELDS}
    return {name: value for name, value in values.items() if value is not None}


class OptimizedFunction(Construct):
    """A Lambda function with a ``live`` alias, DLQ, explicit log group and least-privilege role.

    Attributes: ``function``, ``version``, ``alias``, ``log_group``, ``role``,
    ``dead_letter_queue``, ``retry_attempts``, ``on_success``, ``has_provisioned_concurrency``,
    ``scalable_target`` (``None`` without auto scaling) and ``deployment`` (``None`` without a
    deployment preference).
    Alarms are made by whoever monitors it (``PipelineMonitoring``). Every invoke path should
    target ``alias``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function_props: lambda_.FunctionProps,
        provisioned_concurrency: int | ProvisionedConcurrencyScaling = 0,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_WEEK,
        log_encryption_key: kms.IKey | None = None,
        deployment: DeploymentPreference | None = None,
    ) -> None:
        """
        :param function_props: merged over :data:`DEFAULTS`; ``memory_size`` is required. The
            async invoke props go to the alias (:data:`ALIAS_DEFAULTS`); without a
            ``dead_letter_queue``, the function gets its own.
        :param provisioned_concurrency: a fixed value on the ``live`` alias, or an auto-scaling
            target that alone owns it (docs/deployments.md). :default: 0 (none)
        :param log_retention: :default: one week
        :param log_encryption_key: a KMS key for the log group. :default: CloudWatch Logs' own
        :param deployment: shift ``live`` with CodeDeploy. :default: none (it moves at once)
        """
        super().__init__(scope, construct_id)
        given = props_of(function_props)
        alias_props = {**ALIAS_DEFAULTS, **{k: given.pop(k) for k in ALIAS_PROPS if k in given}}
        self._check(given, alias_props, provisioned_concurrency)
        self.retry_attempts: int = alias_props["retry_attempts"]
        self.has_provisioned_concurrency = provisioned_concurrency != 0
        self.on_success: lambda_.IDestination | None = alias_props.get("on_success")
        self.log_group = self._log_group(log_retention, log_encryption_key)
        self.role = self._role()
        queue = given.pop("dead_letter_queue", None)
        self.dead_letter_queue: sqs.IQueue = queue or new_dead_letter_queue(self, "DeadLetterQueue")
        self.function = lambda_.Function(
            self,
            "Function",
            **{**DEFAULTS, **given},
            role=self.role,
            log_group=self.log_group,
            dead_letter_queue=self.dead_letter_queue,
        )
        self.version = self.function.current_version
        fixed = provisioned_concurrency if isinstance(provisioned_concurrency, int) else 0
        self.alias = lambda_.Alias(
            self,
            "LiveAlias",
            alias_name="live",
            version=self.version,
            provisioned_concurrent_executions=fixed or None,
            **alias_props,
        )
        self.deployment = (
            SafeDeployment(self, "Deployment", alias=self.alias, preference=deployment)
            if deployment is not None
            else None
        )
        self.scalable_target = self._scale(provisioned_concurrency)

    @staticmethod
    def _check(
        given: dict[str, Any],
        alias_props: dict[str, Any],
        provisioned_concurrency: int | ProvisionedConcurrencyScaling,
    ) -> None:
        """What a direct caller can get wrong, refused with the argument's name."""
        for name, instead in OWNED_PROPS.items():
            if name in given:
                raise limits.LimitError(name, given[name], f"is not taken: {instead}")
        if given.get("logging_format", lambda_.LoggingFormat.JSON) != lambda_.LoggingFormat.JSON:
            raise limits.LimitError(
                "logging_format", given["logging_format"], "must be JSON: log levels need it"
            )
        if "memory_size" not in given:
            raise limits.LimitError(
                "memory_size", None, "is required: size it from Max Memory Used plus headroom"
            )
        limits.check("memory_size", given["memory_size"], limits.MEMORY_MB, " MB")
        timeout = given.get("timeout", DEFAULTS["timeout"]).to_seconds()
        limits.check("timeout", timeout, limits.TIMEOUT_SECONDS, " seconds")
        limits.check("retry_attempts", alias_props["retry_attempts"], limits.MAX_RETRY_ATTEMPTS)
        age = alias_props["max_event_age"].to_seconds()
        limits.check("max_event_age", age, limits.MAX_EVENT_AGE_SECONDS, " seconds")
        ceiling = (
            provisioned_concurrency.max_capacity
            if isinstance(provisioned_concurrency, ProvisionedConcurrencyScaling)
            else provisioned_concurrency
        )
        limits.check("provisioned_concurrency", ceiling, limits.CONCURRENCY)
        reserved = given.get("reserved_concurrent_executions")
        if reserved is not None:
            limits.check(
                "reserved_concurrent_executions", reserved, (ceiling, limits.CONCURRENCY[1])
            )

    def _log_group(
        self, retention: logs.RetentionDays, encryption_key: kms.IKey | None
    ) -> logs.LogGroup:
        """Destroyed with the stack: its logs expire within the retention anyway."""
        return logs.LogGroup(
            self,
            "LogGroup",
            retention=retention,
            removal_policy=RemovalPolicy.DESTROY,
            encryption_key=encryption_key,
        )

    def _role(self) -> iam.Role:
        """No AWS-managed policy (AWSLambdaBasicExecutionRole grants logs:* on every group):
        the role writes to its own log group; tracing and the DLQ add their own statements."""
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of {stack_path(self)}",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        return role

    def _scale(
        self, scaling: int | ProvisionedConcurrencyScaling
    ) -> lambda_.IScalableFunctionAttribute | None:
        if not isinstance(scaling, ProvisionedConcurrencyScaling):
            return None
        target = self.alias.add_auto_scaling(
            min_capacity=scaling.min_capacity, max_capacity=scaling.max_capacity
        )
        target.scale_on_utilization(utilization_target=scaling.utilization_target)
        for action in scaling.schedule:
            target.scale_on_schedule(
                action.name,
                schedule=appscaling.Schedule.expression(f"cron({action.cron})"),
                min_capacity=action.min_capacity,
                max_capacity=action.max_capacity,
                time_zone=TimeZone.of(action.time_zone) if action.time_zone else None,
            )
        return target
