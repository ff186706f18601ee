"""`OptimizedFunction`: one Lambda function done right, reusable in any stack.

It fixes, in one place, what naive serverless stacks get wrong per function:

* memory is a required, explicit choice (no 3008 MB "just in case");
* every caller goes through a ``live`` alias on a published version, and provisioned
  concurrency sits on that alias, where it is used: either a fixed value on the alias, or an
  Application Auto Scaling target (utilization tracking, optional schedule) that alone owns it;
* asynchronous failures land in an SQS dead-letter queue instead of vanishing;
* logs go to an explicit log group with a finite retention;
* the execution role holds no AWS-managed policy: its log permissions name its own log group,
  and everything else is granted by the caller at the wiring site.

The construct never grants data-plane access (tables, buckets, ...): the stack that wires
constructs together decides that, with the exact actions the code calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aws_cdk import Duration, RemovalPolicy, TimeZone
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from constructs_lib.dead_letter_queue import dead_letter_queue as new_dead_letter_queue

#: Lambda's own limits, used to reject impossible values at synth instead of at deploy.
MEMORY_RANGE_MB = (128, 10240)
TIMEOUT_RANGE_SECONDS = (1, 900)
MAX_RETRY_ATTEMPTS_RANGE = (0, 2)
MAX_EVENT_AGE_RANGE_SECONDS = (60, 21600)


@dataclass(frozen=True)
class ScheduledCapacity:
    """One scheduled change of the alias's provisioned-concurrency range.

    ``cron`` is an Application Auto Scaling cron expression *without* the ``cron(...)``
    wrapper and with six fields (minute hour day-of-month month day-of-week year), for
    example ``"0 8 ? * MON-FRI *"``. Times are UTC unless ``time_zone`` is given.
    """

    name: str
    cron: str
    min_capacity: int
    max_capacity: int
    time_zone: str | None = None


@dataclass(frozen=True)
class ProvisionedConcurrencyScaling:
    """Application Auto Scaling of the ``live`` alias's provisioned concurrency.

    :param min_capacity: the floor the alias never scales below (at least 1); registering the
        target raises the alias's provisioned concurrency to it (Application Auto Scaling,
        ``RegisterScalableTarget``).
    :param max_capacity: the ceiling (at least ``min_capacity``).
    :param utilization_target: the target of ``ProvisionedConcurrencyUtilization``
        (0.1 to 0.9). :default: 0.7
    :param schedule: optional scheduled changes of the range (business hours up, nights down).
    """

    min_capacity: int
    max_capacity: int
    utilization_target: float = 0.7
    schedule: Sequence[ScheduledCapacity] = field(default_factory=tuple)


def _require_range(name: str, value: float, low: float, high: float, unit: str = "") -> None:
    if isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}{unit}, got {value!r}")


class OptimizedFunction(Construct):
    """A Lambda function with a ``live`` alias, DLQ, explicit log group and least-privilege role.

    Attributes (read-only after construction): ``function``, ``version``, ``alias``,
    ``log_group``, ``role``, ``dead_letter_queue``, ``scalable_target`` (``None`` without
    auto scaling) and ``alarms`` (empty until a monitoring construct adds to it).

    Every invoke path should target ``alias``: its async invoke config carries the retry
    attempts, maximum event age and destinations, and its provisioned concurrency only
    serves invocations of the alias.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        handler: str,
        memory_size: int,
        timeout: Duration | None = None,
        environment: Mapping[str, str] | None = None,
        runtime: lambda_.Runtime | None = None,
        architecture: lambda_.Architecture | None = None,
        layers: Sequence[lambda_.ILayerVersion] = (),
        provisioned_concurrency: int = 0,
        auto_scaling: ProvisionedConcurrencyScaling | None = None,
        reserved_concurrency: int | None = None,
        dead_letter_queue: sqs.IQueue | None = None,
        max_retry_attempts: int = 2,
        max_event_age: Duration | None = None,
        on_success: lambda_.IDestination | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_WEEK,
        log_removal_policy: RemovalPolicy = RemovalPolicy.DESTROY,
        tracing: lambda_.Tracing = lambda_.Tracing.ACTIVE,
        description: str | None = None,
    ) -> None:
        """Create the function and everything around it.

        :param code: the deployment package, e.g. ``lambda_.Code.from_asset("lambda_src/x")``.
        :param handler: the handler in ``module.function`` form.
        :param memory_size: MB, from 128 to 10240. Required: size it from observed usage
            (``Max Memory Used`` in the REPORT log lines) plus headroom, never by habit.
        :param timeout: :default: 30 seconds (1 s to 15 min).
        :param environment: environment variables. :default: none
        :param runtime: :default: ``Runtime.PYTHON_3_14`` (the latest Python runtime)
        :param architecture: :default: ``Architecture.ARM_64`` (about 20 % cheaper per GB-s)
        :param layers: Lambda layers. :default: none
        :param provisioned_concurrency: a fixed provisioned concurrency on the ``live`` alias.
            :default: 0 (the alias exists, without provisioned concurrency)
        :param auto_scaling: provisioned concurrency owned by an auto-scaling target on the
            alias instead (its ``min_capacity`` is the floor). Not together with a fixed
            ``provisioned_concurrency``: a fixed value on the alias beside a schedule that scales
            it to 0 makes CloudFormation updates fail with
            ``ProvisionedConcurrencyConfigNotFoundException`` (aws-cdk issue 29992), and each
            redeploy would reset a scaled value. :default: none
        :param reserved_concurrency: reserved concurrency of the function, at least the
            provisioned concurrency it must hold. :default: none
        :param dead_letter_queue: an existing queue for failed async events. :default: a
            queue of its own, SQS-managed encryption, SSL only, 14-day retention
        :param max_retry_attempts: async retries on the alias (0 to 2). :default: 2
        :param max_event_age: how long an async event may wait (1 min to 6 h). :default: 1 hour
        :param on_success: destination of successful async invocations of the alias.
            :default: none
        :param log_retention: :default: one week
        :param log_removal_policy: what happens to the log group when the stack goes.
            :default: destroy
        :param tracing: :default: ``Tracing.ACTIVE`` (X-Ray)
        :param description: :default: none
        """
        super().__init__(scope, construct_id)

        timeout = timeout or Duration.seconds(30)
        max_event_age = max_event_age or Duration.hours(1)
        _require_range("memory_size", memory_size, *MEMORY_RANGE_MB, " MB")
        _require_range("timeout", timeout.to_seconds(), *TIMEOUT_RANGE_SECONDS, " seconds")
        _require_range("max_retry_attempts", max_retry_attempts, *MAX_RETRY_ATTEMPTS_RANGE)
        _require_range(
            "max_event_age", max_event_age.to_seconds(), *MAX_EVENT_AGE_RANGE_SECONDS, " seconds"
        )
        if isinstance(provisioned_concurrency, bool) or provisioned_concurrency < 0:
            raise ValueError(
                f"provisioned_concurrency must be 0 or more, got {provisioned_concurrency!r}"
            )
        if auto_scaling is not None:
            _validate_auto_scaling(auto_scaling, provisioned_concurrency)
        ceiling = auto_scaling.max_capacity if auto_scaling else provisioned_concurrency
        if reserved_concurrency is not None:
            _require_range("reserved_concurrency", reserved_concurrency, 0, 1000)
            if 0 < reserved_concurrency < ceiling:
                owner = "auto_scaling.max_capacity" if auto_scaling else "provisioned_concurrency"
                raise ValueError(
                    f"reserved_concurrency ({reserved_concurrency}) must be at least "
                    f"{owner} ({ceiling})"
                )

        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            retention=log_retention,
            removal_policy=log_removal_policy,
        )

        # No AWS-managed policy (AWSLambdaBasicExecutionRole grants logs:* on every group):
        # the role may write to its own log group only. Tracing and the DLQ add their own
        # narrow statements when the function is created.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of {self.node.path}",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )

        self.dead_letter_queue: sqs.IQueue = dead_letter_queue or new_dead_letter_queue(
            self, "DeadLetterQueue"
        )

        self.function = lambda_.Function(
            self,
            "Function",
            code=code,
            handler=handler,
            runtime=runtime or lambda_.Runtime.PYTHON_3_14,
            architecture=architecture or lambda_.Architecture.ARM_64,
            memory_size=memory_size,
            timeout=timeout,
            environment=dict(environment or {}),
            layers=list(layers),
            role=self.role,
            log_group=self.log_group,
            tracing=tracing,
            dead_letter_queue=self.dead_letter_queue,
            reserved_concurrent_executions=reserved_concurrency,
            description=description,
        )

        self.version = self.function.current_version
        self.alias = lambda_.Alias(
            self,
            "LiveAlias",
            alias_name="live",
            version=self.version,
            provisioned_concurrent_executions=provisioned_concurrency or None,
            retry_attempts=max_retry_attempts,
            max_event_age=max_event_age,
            on_success=on_success,
        )

        self.scalable_target: lambda_.IScalableFunctionAttribute | None = None
        if auto_scaling is not None:
            self.scalable_target = self.alias.add_auto_scaling(
                min_capacity=auto_scaling.min_capacity,
                max_capacity=auto_scaling.max_capacity,
            )
            self.scalable_target.scale_on_utilization(
                utilization_target=auto_scaling.utilization_target
            )
            for action in auto_scaling.schedule:
                self.scalable_target.scale_on_schedule(
                    action.name,
                    schedule=appscaling.Schedule.expression(f"cron({action.cron})"),
                    min_capacity=action.min_capacity,
                    max_capacity=action.max_capacity,
                    time_zone=TimeZone.of(action.time_zone) if action.time_zone else None,
                )

        self.alarms: list[cloudwatch.IAlarm] = []


def _validate_auto_scaling(scaling: ProvisionedConcurrencyScaling, provisioned: int) -> None:
    if provisioned:
        raise ValueError(
            "auto_scaling and provisioned_concurrency are two owners of the same setting: give "
            f"one (auto_scaling.min_capacity is the floor), got provisioned_concurrency="
            f"{provisioned} and auto_scaling"
        )
    _require_range("auto_scaling.min_capacity", scaling.min_capacity, 1, 10000)
    _require_range("auto_scaling.max_capacity", scaling.max_capacity, scaling.min_capacity, 10000)
    _require_range("auto_scaling.utilization_target", scaling.utilization_target, 0.1, 0.9)
    for action in scaling.schedule:
        label = f"auto_scaling.schedule[{action.name!r}]"
        if len(action.cron.split()) != 6:
            raise ValueError(
                f"{label}.cron must have six fields (minute hour day month weekday year), "
                f"got {action.cron!r}"
            )
        _require_range(f"{label}.min_capacity", action.min_capacity, 0, 10000)
        _require_range(f"{label}.max_capacity", action.max_capacity, action.min_capacity, 10000)
