"""The pipeline stack: wiring only. Every resource's shape lives in ``constructs_lib``.

``producer --async--> validator:live --success--> enricher:live --success--> processor:live``;
every stage's failures, after its retries, go to one shared dead-letter queue. What each stage
is (retries, next stage, table actions, criticality) comes from ``serverless_stack/stages.py``.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Annotations, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sns as sns
from constructs import Construct

from constructs_lib.alarm_topic import AlarmTopic
from constructs_lib.data_table import TTL_ATTRIBUTE, DataTable
from constructs_lib.dead_letter_queue import dead_letter_queue
from constructs_lib.deployment import DeploymentPreference, deployment_config
from constructs_lib.monitoring import PipelineMonitoring
from constructs_lib.optimized_function import OptimizedFunction
from constructs_lib.powertools_layer import powertools_layer
from constructs_lib.release_probe import ReleaseProbe
from constructs_lib.retention import retention_days
from constructs_lib.scaling_pause import ScalingPause
from constructs_lib.scheduled_function import ScheduledFunction
from constructs_lib.stage_queue import Batching, StageQueue
from serverless_stack.config import EnvironmentSettings, PipelineConfig
from serverless_stack.lambda_code import (
    ROLLUP_HANDLER,
    powertools_release,
    rollup_code,
    stage_code,
    stage_handler,
)
from serverless_stack.stages import (
    BY_NAME,
    ENTRY_STAGE,
    STAGE_METADATA_KEY,
    STAGE_TABLE,
    SUPPORT_METADATA_KEY,
    Stage,
)

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURES = {"arm64": lambda_.Architecture.ARM_64, "x86_64": lambda_.Architecture.X86_64}
METRICS_NAMESPACE = "DataPipeline"
TRACING = {"Active": lambda_.Tracing.ACTIVE, "PassThrough": lambda_.Tracing.PASS_THROUGH}

#: Environments whose alarms must reach someone: a synth without a subscriber warns.
WARNED_WITHOUT_SUBSCRIBERS = ("staging", "prod")

#: The DynamoDB API operations the stages call (what the table's alarms watch).
TABLE_OPERATIONS = (dynamodb.Operation.GET_ITEM, dynamodb.Operation.PUT_ITEM)
#: What the count roll-up calls on the table (``lambda_src/pipeline_common/counts.py``).
ROLLUP_TABLE_ACTIONS = (
    "dynamodb:BatchGetItem",
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:UpdateItem",
)
#: How often the roll-up folds the closed hours' count markers.
ROLLUP_EVERY = Duration.hours(1)


class PipelineStack(Stack):
    """Validator, enricher and processor on one table, with one DLQ and one alarm topic."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        deployments: bool = True,
        **kwargs: Any,
    ) -> None:
        """
        :param deployments: CodeDeploy deployment groups on the aliases, as ``deployment`` in
            the settings says. Only the local emulator, which has no CodeDeploy, goes without.
        """
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.settings: EnvironmentSettings = config.settings
        self.deploy_application = (
            codedeploy.LambdaApplication(self, "Deployments") if deployments else None
        )
        self.architecture = ARCHITECTURES[self.settings.architecture]
        #: Records enter through an SQS queue in front of each stage (``ingestion.mode``).
        self.batched = self.settings.ingestion.mode == "batched"
        self._shared_resources()
        #: Stage -> the pre-traffic hook of its deployments: a release probe, and for an
        #: auto-scaled, gradually shifted stage a scaling pause (which probes too).
        self.release_hooks: dict[str, ReleaseProbe] = {}
        #: Stage -> its scaling pause (auto-scaled, gradually shifted stages).
        self.scaling_pauses: dict[str, ScalingPause] = {}
        # Built back to front: each stage's alias is the previous one's on-success destination.
        built: dict[str, OptimizedFunction] = {}
        for stage in reversed(STAGE_TABLE):
            built[stage.name] = self._stage(stage, built.get(stage.next_stage or ""))
        self.stages = {stage.name: built[stage.name] for stage in STAGE_TABLE}
        #: Stage -> the queue in front of it (the batched path only).
        self.stage_queues: dict[str, StageQueue] = self._stage_queues() if self.batched else {}
        for name, function in self.stages.items():
            if BY_NAME[name].table_actions:
                self.table.grant(function.role, *BY_NAME[name].table_actions)
        self.count_rollup = self._count_rollup()
        self._monitor()
        self._outputs()

    def _shared_resources(self) -> None:
        """The table, the DLQ, the alarm topic, the log key and the Powertools layer."""
        settings = self.settings
        # Count markers always expire; records too, with a retention set.
        self.ttl_attribute = TTL_ATTRIBUTE
        self.table = DataTable(
            self,
            "Data",
            removal_policy=RemovalPolicy[settings.table.removal_policy.upper()],
            deletion_protection=settings.table.deletion_protection,
            time_to_live_attribute=self.ttl_attribute,
        ).table
        self.dead_letter_queue = dead_letter_queue(self, "DeadLetterQueue")
        self.alarm_topic = AlarmTopic(
            self,
            "AlarmTopic",
            emails=settings.alarm_emails,
            https_endpoints=settings.alarm_https_endpoints,
        )
        if self.config.environment in WARNED_WITHOUT_SUBSCRIBERS and not settings.alarm_subscribers:
            Annotations.of(self).add_warning_v2(
                "pipeline:no-alarm-subscriber",
                f"pipeline.{self.config.environment}: no alarm subscriber: its alarms notify a "
                "topic nobody reads; set alarm_emails, alarm_https_endpoints or "
                "alarm_topic_arns in cdk.json",
            )
        self.log_key = (
            kms.Key.from_key_arn(self, "LogKey", settings.log_kms_key_arn)
            if settings.log_kms_key_arn
            else None
        )
        self.layer = powertools_layer(
            self,
            "PowertoolsLayer",
            release=powertools_release(),
            runtime=RUNTIME,
            architecture=self.architecture,
        )

    def _stage(self, stage: Stage, next_stage: OptimizedFunction | None) -> OptimizedFunction:
        settings = getattr(self.settings.functions, stage.name)
        hook = self._release_hook(stage)
        function = OptimizedFunction(
            self,
            stage.construct_id,
            function_props=lambda_.FunctionProps(
                code=stage_code(stage.name),
                handler=stage_handler(stage.name, batched=self.batched),
                runtime=RUNTIME,
                architecture=self.architecture,
                memory_size=settings.memory_mb,
                timeout=Duration.seconds(settings.timeout_seconds),
                environment=self._environment(stage),
                layers=[self.layer],
                reserved_concurrent_executions=settings.reserved_concurrency,
                dead_letter_queue=self.dead_letter_queue,
                retry_attempts=stage.retries,
                on_success=destinations.LambdaDestination(next_stage.alias, response_only=False)
                if next_stage and not self.batched
                else None,
                tracing=TRACING[settings.tracing],
                application_log_level_v2=lambda_.ApplicationLogLevel[self.settings.log_level],
                system_log_level_v2=lambda_.SystemLogLevel[self.settings.system_log_level],
                description=f"Pipeline stage: {stage.name}",
            ),
            provisioned_concurrency=settings.auto_scaling or settings.provisioned_concurrency,
            log_retention=retention_days(self.settings.log_retention_days),
            log_encryption_key=self.log_key,
            deployment=self._deployment(hook),
        )
        if isinstance(hook, ScalingPause):
            hook.attach(function, settings.auto_scaling)
            self.scaling_pauses[stage.name] = hook
        elif hook is not None:
            hook.attach(function)
        if hook is not None:
            self.release_hooks[stage.name] = hook
        # The tools that read the synthesized template find each stage by this label.
        function.function.node.default_child.add_metadata(STAGE_METADATA_KEY, stage.name)  # type: ignore[union-attr]
        return function

    def _environment(self, stage: Stage) -> dict[str, str]:
        settings = self.settings
        environment = {
            "POWERTOOLS_SERVICE_NAME": stage.name,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            # Lambda's application log level (AWS_LAMBDA_LOG_LEVEL) wins over this where Lambda
            # sets it; this keeps the same level wherever it does not (the local runner).
            "POWERTOOLS_LOG_LEVEL": settings.log_level,
        }
        if getattr(settings.functions, stage.name).tracing == "PassThrough":
            # No X-Ray SDK work for traces Lambda does not record.
            environment["POWERTOOLS_TRACE_DISABLED"] = "true"
        if stage.table_actions:
            environment["TABLE_NAME"] = self.table.table_name
        if stage.stores_records:
            environment["PAYLOAD_ENCODING"] = settings.payload_encoding
            if settings.record_retention_days:
                environment["RECORD_RETENTION_DAYS"] = str(settings.record_retention_days)
        return environment

    def _stage_queues(self) -> dict[str, StageQueue]:
        """The batched path: a queue in front of each stage's live alias, read in batches; each
        stage told its own queue (for a failed record's retry), the next stage's and the DLQ,
        and granted ``sqs:SendMessage`` on exactly those (``pipeline_common/batch.py``).

        The entry stage gathers records for the batching window; every stage packs what it
        hands on into as few messages as fit, so the stages after it take what arrives at once
        (no window, 10 messages a batch, Lambda's most without one): the window is paid once.
        """
        ingestion = self.settings.ingestion
        entry = Batching(
            batch_size=ingestion.batch_size,
            batching_window=Duration.seconds(ingestion.batching_window_seconds),
            max_concurrency=ingestion.max_concurrency,
            mapping_metrics=ingestion.mapping_metrics,
        )
        packed = Batching(
            batch_size=10,
            max_concurrency=ingestion.max_concurrency,
            mapping_metrics=ingestion.mapping_metrics,
        )
        queues = {
            name: StageQueue(
                self,
                BY_NAME[name].queue_id,
                alias=function.alias,
                role=function.role,
                timeout=function.function.timeout or Duration.seconds(3),
                dead_letter_queue=self.dead_letter_queue,
                batching=entry if name == ENTRY_STAGE.name else packed,
            )
            for name, function in self.stages.items()
        }
        for name, function in self.stages.items():
            stage, own = BY_NAME[name], queues[name].queue
            variables = {
                "STAGE_RETRIES": str(stage.retries),
                "STAGE_QUEUE_URL": own.queue_url,
                "DEAD_LETTER_QUEUE_URL": self.dead_letter_queue.queue_url,
            }
            own.grant(function.role, "sqs:SendMessage")
            if stage.next_stage:
                following = queues[stage.next_stage].queue
                variables |= {"NEXT_QUEUE_URL": following.queue_url, "NEXT_STAGE": stage.next_stage}
                following.grant(function.role, "sqs:SendMessage")
            for key, value in variables.items():
                function.function.add_environment(key, value)
        return queues

    def _count_rollup(self) -> ScheduledFunction:
        """The hourly roll-up that folds closed hours' count markers into each day's totals."""
        rollup = ScheduledFunction(
            self,
            "CountRollup",
            function_props=lambda_.FunctionProps(
                code=rollup_code(),
                handler=ROLLUP_HANDLER,
                runtime=RUNTIME,
                architecture=self.architecture,
                environment={
                    "TABLE_NAME": self.table.table_name,
                    "POWERTOOLS_SERVICE_NAME": "rollup",
                    "POWERTOOLS_LOG_LEVEL": self.settings.log_level,
                },
                layers=[self.layer],
                dead_letter_queue=self.dead_letter_queue,
                application_log_level_v2=lambda_.ApplicationLogLevel[self.settings.log_level],
                system_log_level_v2=lambda_.SystemLogLevel[self.settings.system_log_level],
                description="Folds each closed hour's count markers into its days' totals",
            ),
            schedule=events.Schedule.rate(ROLLUP_EVERY),
            log_retention=retention_days(self.settings.log_retention_days),
            log_encryption_key=self.log_key,
        )
        self.table.grant(rollup.role, *ROLLUP_TABLE_ACTIONS)
        rollup.function.node.default_child.add_metadata(SUPPORT_METADATA_KEY, "count-rollup")  # type: ignore[union-attr]
        return rollup

    def _pauses_scaling(self, stage: Stage) -> bool:
        """An auto-scaled alias that shifts gradually: its scaling pauses for each deployment."""
        return (
            getattr(self.settings.functions, stage.name).auto_scaling is not None
            and self.deploy_application is not None
            and self.settings.deployment.gradual
        )

    def _release_hook(self, stage: Stage) -> ReleaseProbe | None:
        """The stage's pre-traffic hook: every deployed stage's new version is probed before it
        takes traffic; an auto-scaled, gradually shifted one also pauses its scaling."""
        if self.deploy_application is None:
            return None
        pauses = self._pauses_scaling(stage)
        kind, role = (ScalingPause, "scaling-pause") if pauses else (ReleaseProbe, "release-probe")
        hook = kind(
            self,
            f"{stage.construct_id}{kind.__name__}",
            # The hook's code, handler and runtime are the ones the constructs ship.
            function_props=lambda_.FunctionOptions(
                architecture=self.architecture,
                dead_letter_queue=self.dead_letter_queue,
            ),
            log_retention=retention_days(self.settings.log_retention_days),
            log_encryption_key=self.log_key,
        )
        hook.function.node.default_child.add_metadata(SUPPORT_METADATA_KEY, role)  # type: ignore[union-attr]
        return hook

    def _deployment(self, hook: ReleaseProbe | None) -> DeploymentPreference | None:
        if self.deploy_application is None:
            return None
        return DeploymentPreference(
            config=deployment_config(self.settings.deployment.config),
            application=self.deploy_application,
            pre_traffic_hook=hook.function if hook else None,
        )

    def _monitor(self) -> None:
        """Alarms per stage on the live alias every caller invokes, the rollback alarms of each
        deployment (on the new version alone), then the DLQ and the table."""
        self.monitoring = PipelineMonitoring(
            self,
            "Monitoring",
            alarm_action=[self.alarm_topic, *self._existing_topics()],
            thresholds=self.settings.alarms,
            dashboard=self.settings.dashboard,
        )
        self.alarms = {
            name: self.monitoring.monitor_function(
                BY_NAME[name].construct_id,
                function,
                critical=BY_NAME[name].critical,
                reads_queue=self.batched,
            )
            for name, function in self.stages.items()
        }
        self.rollup_alarms = [
            *self.monitoring.monitor_function("CountRollup", self.count_rollup.handler),
            self.monitoring.monitor_schedule(
                "CountRollup", self.count_rollup.handler, every=ROLLUP_EVERY
            ),
        ]
        signals = self.settings.deployment.rollback_on
        for name, function in self.stages.items():
            if function.deployment is None or not signals:
                continue
            rollback = self.monitoring.monitor_new_version(
                BY_NAME[name].construct_id,
                function,
                metrics_namespace=METRICS_NAMESPACE,
                service=name,
                signals=signals,
            )
            for signal in signals:
                function.deployment.add_rollback_alarm(rollback[signal])
        self.monitoring.monitor_dead_letter_queue(self.dead_letter_queue)
        for name, stage_queue in self.stage_queues.items():
            self.monitoring.monitor_stage_queue(
                BY_NAME[name].construct_id,
                stage_queue.queue,
                oldest_seconds=self.settings.ingestion.oldest_message_alarm_seconds,
                failed_invokes=stage_queue.metric_failed_invoke_events(self.monitoring.period)
                if stage_queue.mapping_metrics
                else None,
            )
        self.monitoring.monitor_table(self.table, operations=TABLE_OPERATIONS)

    def _existing_topics(self) -> list[cloudwatch_actions.SnsAction]:
        """The caller's own topics that every alarm notifies too (``alarm_topic_arns``)."""
        return [
            cloudwatch_actions.SnsAction(sns.Topic.from_topic_arn(self, f"AlarmsAlso{i}", arn))
            for i, arn in enumerate(self.settings.alarm_topic_arns)
        ]

    def _outputs(self) -> None:
        entry = self.stages[ENTRY_STAGE.name]
        CfnOutput(self, "TableName", value=self.table.table_name)
        if self.batched:
            CfnOutput(
                self,
                "IngestQueueUrl",
                value=self.stage_queues[ENTRY_STAGE.name].queue.queue_url,
                description=f"Send records here: SendMessageBatch to {ENTRY_STAGE.name}'s queue",
            )
        else:
            CfnOutput(
                self,
                "IngestFunctionArn",
                value=entry.alias.function_arn,
                description=f"Send records here: async invoke of {ENTRY_STAGE.name}:live",
            )
        last = self.stages[STAGE_TABLE[-1].name]
        CfnOutput(self, "ProcessorFunctionArn", value=last.alias.function_arn)
        CfnOutput(self, "DlqUrl", value=self.dead_letter_queue.queue_url)
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic.topic_arn)
        # The log groups have generated names (not /aws/lambda/<function>): read them here.
        for name, function in self.stages.items():
            CfnOutput(
                self,
                f"{BY_NAME[name].construct_id}LogGroupName",
                value=function.log_group.log_group_name,
                description=f"aws logs tail <this> --follow: the {name}'s logs",
            )
