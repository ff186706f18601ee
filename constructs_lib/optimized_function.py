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
from constructs_lib.scaling import ProvisionedConcurrencyScaling, ScheduledCapacity

__all__ = [
    "DeploymentPreference",
    "OptimizedFunction",
    "ProvisionedConcurrencyScaling",
    "ScheduledCapacity",
]


def _require_range(name: str, value: float, low: float, high: float, unit: str = "") -> None:
    if isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}{unit}, got {value!r}")


class OptimizedFunction(Construct):
    """A Lambda function with a ``live`` alias, DLQ, explicit log group and least-privilege role.

    Attributes (read-only after construction): ``function``, ``version``, ``alias``,
    ``log_group``, ``role``, ``dead_letter_queue``, ``scalable_target`` (``None`` without
    auto scaling) and ``deployment`` (``None`` without a deployment preference). Alarms are
    made by whoever monitors it (``PipelineMonitoring`` takes any function or alias and returns
    its alarms), not by this construct.

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
        log_encryption_key: kms.IKey | None = None,
        tracing: lambda_.Tracing = lambda_.Tracing.ACTIVE,
        application_log_level: lambda_.ApplicationLogLevel = lambda_.ApplicationLogLevel.INFO,
        system_log_level: lambda_.SystemLogLevel = lambda_.SystemLogLevel.INFO,
        deployment: DeploymentPreference | None = None,
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
        :param log_encryption_key: a customer-managed KMS key for the log group; its key policy
            must allow the CloudWatch Logs service principal. :default: none (CloudWatch Logs
            encrypts with its own keys)
        :param tracing: :default: ``Tracing.ACTIVE`` (X-Ray). Lambda samples 1 request a
            second plus 5 % of the rest, which is nearly every invocation below a few a second,
            at $5 per million traces; ``Tracing.PASS_THROUGH`` records only what a caller sampled.
        :param application_log_level: the lowest level of the code's lines Lambda keeps. Logs
            are always in Lambda's JSON format, which log-level filtering requires. A line with
            no ``level`` key (an EMF metric line) counts as INFO, so above INFO the metrics go.
            :default: INFO
        :param system_log_level: the lowest level of Lambda's own lines: INFO keeps the START
            and REPORT lines (REPORT has ``maxMemoryUsedMB``, for right-sizing), WARN drops them
            (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html).
            :default: INFO
        :param deployment: shift ``live`` to each new version with CodeDeploy (all at once,
            canary or linear), rolling back on the preference's alarms; more rollback alarms
            can be added with ``deployment.add_rollback_alarm``. :default: none (CloudFormation
            points the alias at the new version at once)
        :param description: :default: none
        """
        super().__init__(scope, construct_id)

        timeout = timeout or Duration.seconds(30)
        max_event_age = max_event_age or Duration.hours(1)
        _require_range("memory_size", memory_size, *limits.MEMORY_MB, " MB")
        _require_range("timeout", timeout.to_seconds(), *limits.TIMEOUT_SECONDS, " seconds")
        _require_range("max_retry_attempts", max_retry_attempts, *limits.MAX_RETRY_ATTEMPTS)
        _require_range(
            "max_event_age", max_event_age.to_seconds(), *limits.MAX_EVENT_AGE_SECONDS, " seconds"
        )
        _require_range("provisioned_concurrency", provisioned_concurrency, *limits.CONCURRENCY)
        if auto_scaling is not None and provisioned_concurrency:
            raise ValueError(
                "auto_scaling and provisioned_concurrency are two owners of the same setting: "
                "give one (auto_scaling.min_capacity is the floor), got provisioned_concurrency="
                f"{provisioned_concurrency} and auto_scaling"
            )
        ceiling = auto_scaling.max_capacity if auto_scaling else provisioned_concurrency
        if reserved_concurrency is not None:
            _require_range("reserved_concurrency", reserved_concurrency, *limits.CONCURRENCY)
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
            encryption_key=log_encryption_key,
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
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=application_log_level,
            system_log_level_v2=system_log_level,
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

        #: The CodeDeploy deployment of ``alias`` (``None`` without a deployment preference).
        self.deployment: SafeDeployment | None = None
        if deployment is not None:
            self.deployment = SafeDeployment(
                self, "Deployment", alias=self.alias, preference=deployment
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
