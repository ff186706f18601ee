"""The pipeline stack: wiring only. Every resource's shape lives in ``constructs_lib``.

``producer --async--> validator:live --success--> enricher:live --success--> processor:live``;
every stage's failures, after its retries, go to one shared dead-letter queue.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from constructs import Construct

from constructs_lib.alarm_topic import AlarmTopic
from constructs_lib.data_table import TTL_ATTRIBUTE, DataTable
from constructs_lib.dead_letter_queue import dead_letter_queue
from constructs_lib.deployment import DeploymentPreference, deployment_config
from constructs_lib.monitoring import PipelineMonitoring
from constructs_lib.optimized_function import OptimizedFunction
from constructs_lib.powertools_layer import powertools_layer
from constructs_lib.retention import retention_days
from constructs_lib.scaling_pause import ScalingPause
from serverless_stack.config import (
    DLQ_RETENTION_DAYS,
    MAX_EVENT_AGE_SECONDS,
    FunctionSettings,
    PipelineConfig,
)
from serverless_stack.lambda_code import (
    SCALING_PAUSE_HANDLER,
    powertools_release,
    scaling_pause_code,
    stage_code,
    stage_handler,
)
from serverless_stack.stages import STAGE_METADATA_KEY, STAGES, SUPPORT_METADATA_KEY

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURES = {"arm64": lambda_.Architecture.ARM_64, "x86_64": lambda_.Architecture.X86_64}
METRICS_NAMESPACE = "DataPipeline"
TRACING = {"Active": lambda_.Tracing.ACTIVE, "PassThrough": lambda_.Tracing.PASS_THROUGH}

#: The DynamoDB actions each stage's code calls, and nothing more. The processor puts a record
#: and its count marker (``processor/storage.py``).
TABLE_ACTIONS: dict[str, tuple[str, ...]] = {
    "validator": (),
    "enricher": ("dynamodb:GetItem",),
    "processor": ("dynamodb:PutItem",),
}

#: Each stage's on-success destination.
NEXT_STAGE = {"validator": "enricher", "enricher": "processor"}
#: Async retries per stage. Validation is deterministic: a retry would fail the same way.
RETRIES = {"validator": 0, "enricher": 2, "processor": 2}

#: The DynamoDB API operations the stages call (what the table's alarms watch).
TABLE_OPERATIONS = (dynamodb.Operation.GET_ITEM, dynamodb.Operation.PUT_ITEM)


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
        settings = config.settings
        self.deploy_application = (
            codedeploy.LambdaApplication(self, "Deployments") if deployments else None
        )
        self.architecture = ARCHITECTURES[settings.architecture]

        # TTL only where the processor writes it: with a record retention set.
        self.ttl_attribute = TTL_ATTRIBUTE if settings.record_retention_days else None
        data = DataTable(
            self,
            "Data",
            removal_policy=RemovalPolicy[settings.table.removal_policy.upper()],
            deletion_protection=settings.table.deletion_protection,
            time_to_live_attribute=self.ttl_attribute,
        )
        self.table = data.table
        self.dead_letter_queue = dead_letter_queue(
            self, "DeadLetterQueue", retention=Duration.days(DLQ_RETENTION_DAYS)
        )
        self.alarm_topic = AlarmTopic(self, "AlarmTopic", emails=settings.alarm_emails)
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

        #: Stage -> the scaling pause of its deployments (auto-scaled, gradually shifted stages).
        self.scaling_pauses: dict[str, ScalingPause] = {}
        # Built back to front: each stage's alias is the next one's on-success destination.
        self.stages: dict[str, OptimizedFunction] = {}
        for name in reversed(STAGES):
            following = self.stages[NEXT_STAGE[name]] if name in NEXT_STAGE else None
            self.stages[name] = self._stage(
                name, getattr(settings.functions, name), retries=RETRIES[name], next_stage=following
            )
        self.stages = {name: self.stages[name] for name in STAGES}
        self.validator = self.stages["validator"]
        self.enricher = self.stages["enricher"]
        self.processor = self.stages["processor"]

        for name, stage in self.stages.items():
            if TABLE_ACTIONS[name]:
                self.table.grant(stage.role, *TABLE_ACTIONS[name])

        self.monitoring = PipelineMonitoring(
            self,
            "Monitoring",
            alarm_action=self.alarm_topic,
            thresholds=settings.alarms,
            dashboard=settings.dashboard,
        )
        # Alarms per stage, on the live alias that every caller invokes. The processor is the
        # critical stage: its provisioned-concurrency spillover is watched in every environment
        # (with none configured, that alarm stays OK on no data).
        self.alarms = {
            name: self.monitoring.monitor_function(
                name.capitalize(),
                stage.alias,
                provisioned_concurrency=name == "processor",
                retries=RETRIES[name] > 0,
                destination=name in NEXT_STAGE,
            )
            for name, stage in self.stages.items()
        }
        # Each stage's deployment rolls back on its own alarms on the new version: the errors
        # its code did not expect, and its p99 duration.
        signals = settings.deployment.rollback_on
        for name, stage in self.stages.items():
            if stage.deployment is None or not signals:
                continue
            rollback = self.monitoring.monitor_new_version(
                name.capitalize(),
                stage.alias,
                metrics_namespace=METRICS_NAMESPACE,
                service=name,
                signals=signals,
            )
            for signal in signals:
                stage.deployment.add_rollback_alarm(rollback[signal])
        self.monitoring.monitor_dead_letter_queue(self.dead_letter_queue)
        self.monitoring.monitor_table(self.table, operations=TABLE_OPERATIONS)

        CfnOutput(self, "TableName", value=self.table.table_name)
        CfnOutput(
            self,
            "IngestFunctionArn",
            value=self.validator.alias.function_arn,
            description="Send records here: async invoke of validator:live",
        )
        CfnOutput(self, "ProcessorFunctionArn", value=self.processor.alias.function_arn)
        CfnOutput(self, "DlqUrl", value=self.dead_letter_queue.queue_url)
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic.topic_arn)
        # The log groups have generated names (not /aws/lambda/<function>): read them here.
        for name, stage in self.stages.items():
            CfnOutput(
                self,
                f"{name.capitalize()}LogGroupName",
                value=stage.log_group.log_group_name,
                description=f"aws logs tail <this> --follow: the {name}'s logs",
            )

    def _stage(
        self,
        name: str,
        settings: FunctionSettings,
        *,
        retries: int,
        next_stage: OptimizedFunction | None = None,
    ) -> OptimizedFunction:
        log_level = self.config.settings.log_level
        environment = {
            "POWERTOOLS_SERVICE_NAME": name,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            # Lambda's application log level (AWS_LAMBDA_LOG_LEVEL) wins over this where Lambda
            # sets it; this keeps the same level wherever it does not (the local runner).
            "POWERTOOLS_LOG_LEVEL": log_level,
        }
        if settings.tracing == "PassThrough":
            # No X-Ray SDK work for traces Lambda does not record.
            environment["POWERTOOLS_TRACE_DISABLED"] = "true"
        if TABLE_ACTIONS[name]:
            environment["TABLE_NAME"] = self.table.table_name
        if name == "processor":
            environment["PAYLOAD_ENCODING"] = self.config.settings.payload_encoding
        if name == "processor" and self.ttl_attribute:
            environment["RECORD_TTL_ATTRIBUTE"] = self.ttl_attribute
            environment["RECORD_RETENTION_DAYS"] = str(self.config.settings.record_retention_days)
        # An auto-scaled alias that shifts gradually: its scaling pauses for each deployment.
        pause = (
            ScalingPause(
                self,
                f"{name.capitalize()}ScalingPause",
                code=scaling_pause_code(),
                handler=SCALING_PAUSE_HANDLER,
                runtime=RUNTIME,
                architecture=self.architecture,
                dead_letter_queue=self.dead_letter_queue,
                log_retention=retention_days(self.config.settings.log_retention_days),
                log_encryption_key=self.log_key,
            )
            if settings.auto_scaling is not None
            and self.deploy_application is not None
            and self.config.settings.deployment.gradual
            else None
        )
        stage = OptimizedFunction(
            self,
            name.capitalize(),
            code=stage_code(name),
            handler=stage_handler(name),
            memory_size=settings.memory_mb,
            timeout=Duration.seconds(settings.timeout_seconds),
            environment=environment,
            runtime=RUNTIME,
            architecture=self.architecture,
            layers=[self.layer],
            provisioned_concurrency=settings.provisioned_concurrency,
            auto_scaling=settings.auto_scaling,
            reserved_concurrency=settings.reserved_concurrency,
            dead_letter_queue=self.dead_letter_queue,
            max_retry_attempts=retries,
            max_event_age=Duration.seconds(MAX_EVENT_AGE_SECONDS),
            on_success=destinations.LambdaDestination(next_stage.alias, response_only=False)
            if next_stage
            else None,
            log_retention=retention_days(self.config.settings.log_retention_days),
            log_encryption_key=self.log_key,
            tracing=TRACING[settings.tracing],
            application_log_level=lambda_.ApplicationLogLevel[log_level],
            system_log_level=lambda_.SystemLogLevel[self.config.settings.system_log_level],
            deployment=DeploymentPreference(
                config=deployment_config(self.config.settings.deployment.config),
                application=self.deploy_application,
                pre_traffic_hook=pause.function if pause else None,
            )
            if self.deploy_application is not None
            else None,
            description=f"Pipeline stage: {name}",
        )
        if pause is not None and settings.auto_scaling is not None:
            pause.attach(stage, settings.auto_scaling)
            pause.function.node.default_child.add_metadata(SUPPORT_METADATA_KEY, "scaling-pause")  # type: ignore[union-attr]
            self.scaling_pauses[name] = pause
        # The tools that read the synthesized template find each stage by this label.
        stage.function.node.default_child.add_metadata(STAGE_METADATA_KEY, name)  # type: ignore[union-attr]
        return stage
