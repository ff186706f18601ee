"""Security and compliance gates at synth, and every acknowledgment.

Three rule sets run as CDK policy-validation plugins on every synth, and any unacknowledged
finding fails it: cdk-nag 3's AwsSolutions and Serverless packs, and AWS Control Tower's
proactive controls (``CfnGuardValidator`` of ``cdklabs-cdk-validator-cfnguard``, the controls'
own cfn-guard rules; an account enrolled in them runs the same rules as CloudFormation hooks and
refuses a stack that fails one). The stack fixes findings wherever a fix exists (latest runtime,
no managed policies, SSL-only and encrypted queues, DLQs, tracing, log retention, PITR, an
action on every alarm); a control that costs money is a setting; what remains is acknowledged
here, in one place, each on one specific resource and one specific finding, with the reason.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.resources
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, ServerlessChecks
from cdklabs.cdk_validator_cfnguard import CfnGuardValidator
from constructs import IConstruct

from constructs_lib.optimized_function import OptimizedFunction
from serverless_stack.config import PipelineConfig
from serverless_stack.stack import PipelineStack
from serverless_stack.stages import STAGES

#: The rule packs run at every synth.
RULE_PACKS = (AwsSolutionsChecks, ServerlessChecks)
#: The plugin name of AWS Control Tower's proactive controls, as findings are acknowledged.
CONTROL_TOWER = "cdk-validator-cfnguard"


@dataclass(frozen=True)
class Acknowledgment:
    """One accepted finding: where (a function of the stack), which rule, and why."""

    name: str
    target: Callable[[PipelineStack], IConstruct]
    #: The finding's id, or a function of the stack for ids that name a logical ID.
    rule: str | Callable[[PipelineStack], str]
    reason: str
    #: Whether the finding arises in this stack (settings can remove it). :default: always
    applies: Callable[[PipelineStack], bool] = lambda stack: True

    def rule_in(self, stack: PipelineStack) -> str:
        """The finding's id in ``stack``."""
        return self.rule if isinstance(self.rule, str) else self.rule(stack)


def _role_policy(stage: str) -> Callable[[PipelineStack], IConstruct]:
    def find(stack: PipelineStack) -> IConstruct:
        function: OptimizedFunction = stack.stages[stage]
        policy = function.role.node.find_child("DefaultPolicy")
        return policy.node.default_child  # type: ignore[return-value]

    return find


def _deployment_policy(stack: PipelineStack, stage: str) -> IConstruct:
    deployment = stack.stages[stage].deployment
    assert deployment is not None
    return deployment.role.node.find_child("DefaultPolicy").node.default_child  # type: ignore[return-value]


def _qualifiers_of(stack: PipelineStack, stage: str) -> str:
    """cdk-nag's finding id for a grant on ``<function ARN>:*``."""
    function = stack.stages[stage].function.node.default_child
    return f"AwsSolutions::AwsSolutions-IAM5[Resource::<{stack.get_logical_id(function)}.Arn>:*]"  # type: ignore[arg-type]


def _scalable_targets(stack: PipelineStack) -> str:
    """cdk-nag's id for a grant on the account's scalable targets: partition, region and account
    are tokens in an environment-agnostic stack, literals in a pipeline stage's stack."""
    if cdk.Token.is_unresolved(stack.account):
        where = "<AWS::Partition>:application-autoscaling:<AWS::Region>:<AWS::AccountId>"
    else:
        where = f"aws:application-autoscaling:{stack.region}:{stack.account}"
    return f"AwsSolutions::AwsSolutions-IAM5[Resource::arn:{where}:scalable-target/*]"


def _async_config(stage: str) -> Callable[[PipelineStack], IConstruct]:
    def find(stack: PipelineStack) -> IConstruct:
        return stack.stages[stage].alias.node.find_child("EventInvokeConfig").node.default_child  # type: ignore[return-value]

    return find


XRAY_REASON = (
    "X-Ray's PutTraceSegments and PutTelemetryRecords support no resource-level permissions "
    "(the service authorization reference lists '*' only); this statement holds those two "
    "actions alone, added by Lambda active tracing. Every other statement names its resource."
)
HOOK_STAR_REASON = (
    "Two kinds of action that the Service Authorization Reference lists with no resource type, "
    "so only '*' matches them: X-Ray's PutTraceSegments and PutTelemetryRecords (added by "
    "Lambda's tracing setting), and codedeploy:PutLifecycleEventHookExecutionStatus, the "
    "hook's report to CodeDeploy (also granted on its deployment group, as aws-cdk-lib and "
    "AWS's tutorial scope it). Every other statement of the hook names its resource."
)
PASS_THROUGH_REASON = (
    "Tracing is a per-stage setting (functions.<stage>.tracing), PassThrough by default: Lambda "
    "samples 1 request a second plus 5 %, so at this pipeline's rates nearly every invocation "
    "is a $5-per-million trace, the largest line of the bill "
    "(https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html, "
    "https://aws.amazon.com/xray/pricing/). Errors, throttles and durations are alarmed on from "
    "Lambda's free metrics; a caller that samples a request is still traced."
)
PROVISIONED_CONCURRENCY_READ_REASON = (
    "CodeDeploy reads the provisioned concurrency of the alias it shifts and of the versions it "
    "shifts between; Lambda authorises that read against the qualified ARN of a version or an "
    "alias (https://docs.aws.amazon.com/lambda/latest/dg/lambda-api-permissions-ref.html), and a "
    "new version exists with every deploy. The grant is this one read-only action on this one "
    "function's qualifiers; the AWS-managed policy it replaces grants it on '*'."
)
UNDELIVERED_REASON = (
    "This queue is the dead-letter queue of the alarm topic's e-mail subscriptions (their "
    "RedrivePolicy): an alarm notification SNS could not deliver ends here, kept 14 days. It is "
    "the end of that chain, so it has no dead-letter queue of its own."
)
FAILURE_DESTINATION_REASON = (
    "Async failures go to the function's dead-letter queue (DeadLetterConfig, checked by "
    "Serverless-LambdaDLQ), the pipeline's single failure path: each failed record lands once, "
    "with Lambda's ErrorCode and ErrorMessage. An on-failure destination as well would deliver "
    "every failure twice."
)


def _release_hook_findings(
    stage: str,
) -> list[tuple[str, Callable[[PipelineStack], IConstruct], Any, str, bool]]:
    """The findings on ``stage``'s release hook: (concern, target, finding id, reason, whether
    only a scaling pause has it)."""

    def policy(stack: PipelineStack) -> IConstruct:
        role = stack.release_hooks[stage].hook.role
        return role.node.find_child("DefaultPolicy").node.default_child  # type: ignore[return-value]

    def async_config(stack: PipelineStack) -> IConstruct:
        alias = stack.release_hooks[stage].hook.alias
        return alias.node.find_child("EventInvokeConfig").node.default_child  # type: ignore[return-value]

    def function(stack: PipelineStack) -> IConstruct:
        return stack.release_hooks[stage].function.node.default_child  # type: ignore[return-value]

    return [
        (
            "autoscaling",
            policy,
            _scalable_targets,
            "Application Auto Scaling's RegisterScalableTarget on this account's scalable "
            "targets in this region: a target's ARN ends in an id that CloudFormation does not "
            "return (its only attribute is the resource id). The statement holds that one "
            "action; the Lambda actions registering a Lambda target needs name the alias.",
            True,
        ),
        ("xray", policy, "AwsSolutions::AwsSolutions-IAM5[Resource::*]", HOOK_STAR_REASON, False),
        (
            "failure-destination",
            async_config,
            "Serverless::Serverless-LambdaAsyncFailureDestination",
            FAILURE_DESTINATION_REASON,
            False,
        ),
        (
            "tracing",
            function,
            "Serverless::Serverless-LambdaTracing",
            "The release hook makes a few API calls per deployment (the probe, the scaling "
            "pause) and one every scheduled check; a trace would add an X-Ray charge and "
            "nothing an operator needs that its log line lacks.",
            False,
        ),
    ]


def _rollup(part: str) -> Callable[[PipelineStack], IConstruct]:
    """The count roll-up's ``policy``, ``async-config``, ``function`` or ``rule``."""

    def find(stack: PipelineStack) -> IConstruct:
        rollup = stack.count_rollup
        construct = {
            "policy": lambda: rollup.role.node.find_child("DefaultPolicy"),
            "async-config": lambda: rollup.handler.alias.node.find_child("EventInvokeConfig"),
            "function": lambda: rollup.function,
            "rule": lambda: rollup.rule,
        }[part]()
        return construct.node.default_child  # type: ignore[return-value]

    return find


ROLLUP_FINDINGS = (
    ("policy", "AwsSolutions::AwsSolutions-IAM5[Resource::*]", XRAY_REASON),
    (
        "async-config",
        "Serverless::Serverless-LambdaAsyncFailureDestination",
        FAILURE_DESTINATION_REASON,
    ),
    (
        "function",
        "Serverless::Serverless-LambdaTracing",
        "The roll-up runs once an hour and makes a few DynamoDB calls per closed hour; a trace "
        "would add an X-Ray charge and nothing an operator needs that its log line and its "
        "errors alarm lack.",
    ),
    (
        "rule",
        "Serverless::Serverless-EventBusDLQ",
        "A run EventBridge cannot deliver (it retries for 24 hours) loses nothing: each run "
        "folds every closed hour after the watermark, so the next run does that hour's work. "
        "The function's own failures go to its dead-letter queue and its errors alarm.",
    ),
)


def _undelivered_queue(stack: PipelineStack) -> IConstruct:
    queue = stack.alarm_topic.undelivered
    assert queue is not None
    return queue.node.default_child  # type: ignore[return-value]


ACKNOWLEDGMENTS: tuple[Acknowledgment, ...] = (
    *(
        Acknowledgment(
            f"{stage}-xray",
            _role_policy(stage),
            "AwsSolutions::AwsSolutions-IAM5[Resource::*]",
            XRAY_REASON,
        )
        for stage in STAGES
    ),
    *(
        Acknowledgment(
            f"{stage}-failure-destination",
            _async_config(stage),
            "Serverless::Serverless-LambdaAsyncFailureDestination",
            FAILURE_DESTINATION_REASON,
        )
        for stage in STAGES
    ),
    *(
        Acknowledgment(
            f"{stage}-pass-through-tracing",
            lambda stack, stage=stage: stack.stages[stage].function.node.default_child,  # type: ignore[misc]
            "Serverless::Serverless-LambdaTracing",
            PASS_THROUGH_REASON,
            applies=lambda stack, stage=stage: (  # type: ignore[misc]
                getattr(stack.config.settings.functions, stage).tracing == "PassThrough"
            ),
        )
        for stage in STAGES
    ),
    *(
        Acknowledgment(
            f"{stage}-deployment-provisioned-concurrency-read",
            lambda stack, stage=stage: _deployment_policy(stack, stage),  # type: ignore[misc]
            lambda stack, stage=stage: _qualifiers_of(stack, stage),  # type: ignore[misc]
            PROVISIONED_CONCURRENCY_READ_REASON,
            applies=lambda stack, stage=stage: stack.stages[stage].deployment is not None,  # type: ignore[misc]
        )
        for stage in STAGES
    ),
    *(
        Acknowledgment(
            f"{stage}-{'scaling-pause' if pause_only else 'release-hook'}-{concern}",
            target,
            rule,
            reason,
            applies=(
                (lambda stack, stage=stage: stage in stack.scaling_pauses)  # type: ignore[misc]
                if pause_only
                else (lambda stack, stage=stage: stage in stack.release_hooks)  # type: ignore[misc]
            ),
        )
        for stage in STAGES
        for concern, target, rule, reason, pause_only in _release_hook_findings(stage)
    ),
    *(
        Acknowledgment(f"count-rollup-{part}", _rollup(part), rule, reason)
        for part, rule, reason in ROLLUP_FINDINGS
    ),
    Acknowledgment(
        "dlq-redrive",
        lambda stack: stack.dead_letter_queue.node.default_child,  # type: ignore[arg-type,return-value]
        "Serverless::Serverless-SQSRedrivePolicy",
        "This queue is the dead-letter queue: it is the end of the redrive chain. Its messages "
        "are kept 14 days, alarmed on, and replayed by invoking a stage's live alias.",
    ),
    *(
        Acknowledgment(
            f"undelivered-notifications-{rule.rsplit('-', 1)[1].lower()}",
            _undelivered_queue,
            rule,
            UNDELIVERED_REASON,
            applies=lambda stack: stack.alarm_topic.undelivered is not None,
        )
        for rule in (
            "AwsSolutions::AwsSolutions-SQS3",
            "Serverless::Serverless-SQSRedrivePolicy",
        )
    ),
)


@dataclass(frozen=True)
class ControlExemption:
    """A Control Tower proactive control this stack does not meet, disabled with its reason.

    Control Tower's rules are disabled by rule (``disabled_rules``), not acknowledged per
    resource: aws-cdk-lib recomputes a plugin's conclusion once any of its findings is
    acknowledged, from severities this plugin does not set, so one acknowledgment would pass
    every other finding of it. Each exemption applies only while the settings leave the control
    unmet.
    """

    rule: str
    control: str
    reason: str
    applies: Callable[[PipelineConfig], bool] = lambda config: True


CONTROL_TOWER_EXEMPTIONS: tuple[ControlExemption, ...] = (
    ControlExemption(
        "ct-cloudwatch-pr-2",
        "CT.CLOUDWATCH.PR.2: log groups keep logs at least a year",
        "Retention is the setting log_retention_days, 7 days by default: a valid record writes "
        "no log line in prod, and a dead-lettered record carries its reason in the DLQ message. "
        "An account that enforces the control sets 365 (priced by `make cost`).",
        applies=lambda config: config.settings.log_retention_days < 365,
    ),
    ControlExemption(
        "ct-cloudwatch-pr-3",
        "CT.CLOUDWATCH.PR.3: log groups are encrypted with a KMS key",
        "The key is the setting log_kms_key_arn, none by default: CloudWatch Logs encrypts every "
        "log group at rest, and the logs carry record ids, never payloads. An account that "
        "enforces the control names its customer-managed key ($1 a month, plus KMS requests).",
        applies=lambda config: not config.settings.log_kms_key_arn,
    ),
    ControlExemption(
        "ct-lambda-pr-3",
        "CT.LAMBDA.PR.3: functions run in a customer-managed VPC",
        "The stages call only DynamoDB's regional endpoint; their destinations and DLQ writes "
        "are made by the Lambda service, not from the function. A VPC would add ENIs, subnets "
        "and endpoints the stack does not own; it is not offered yet, so an account that "
        "enforces this control cannot deploy the stack.",
    ),
    ControlExemption(
        "ct-sqs-pr-1",
        "CT.SQS.PR.1: every queue has a dead-letter queue",
        "The only queue is the functions' dead-letter queue, the end of the redrive chain; the "
        "rule reads it as a work queue (it does not recognise a Lambda DLQ). Its messages are "
        "kept 14 days, alarmed on, and replayed by invoking a stage's live alias.",
    ),
)


def control_tower_exemptions(
    config: PipelineConfig, *, skip: frozenset[str] = frozenset()
) -> list[ControlExemption]:
    """The exemptions that apply to ``config`` (``skip`` names rules to leave enforced)."""
    return [e for e in CONTROL_TOWER_EXEMPTIONS if e.rule not in skip and e.applies(config)]


#: Where the plugin's package keeps Control Tower's rules.
_RULES_IN_PACKAGE = "package/rules/control-tower/cfn-guard/"
_RESOURCE_TYPE = re.compile(r"AWS::[A-Za-z0-9]+::[A-Za-z0-9]+")


@functools.cache
def control_tower_rules() -> dict[str, tuple[Path, frozenset[str]]]:
    """Every Control Tower rule the plugin ships: its name (``ct-lambda-pr-3``) -> its file and
    the resource types it evaluates, read from the plugin's own package (extracted once per
    release into the temporary directory), so the rules are exactly the plugin's."""
    release = importlib.metadata.version("cdklabs-cdk-validator-cfnguard")
    root = Path(tempfile.gettempdir()) / f"cdk-validator-cfnguard-{release}-rules"
    if not root.is_dir():
        archive = importlib.resources.files("cdklabs.cdk_validator_cfnguard._jsii") / (
            f"cdk-validator-cfnguard@{release}.jsii.tgz"
        )
        staging = Path(tempfile.mkdtemp(prefix="cfnguard-rules-"))
        with archive.open("rb") as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(_RULES_IN_PACKAGE)]
            tar.extractall(staging, members=members, filter="data")
        with contextlib.suppress(OSError):  # another process got there first
            (staging / _RULES_IN_PACKAGE).rename(root)
        shutil.rmtree(staging, ignore_errors=True)
    return {
        rule.stem: (rule, frozenset(_RESOURCE_TYPE.findall(rule.read_text())))
        for rule in sorted(root.rglob("*.guard"))
    }


def control_tower_rules_for(types: frozenset[str], exempt: frozenset[str]) -> list[str]:
    """The rule files that evaluate any of ``types`` and are not exempt. cfn-guard takes about
    5 s to load all of Control Tower's rules, and under 1 s for the two dozen that evaluate
    this stack's resource types; a rule about a type the stack does not have cannot fail."""
    return [
        str(path)
        for name, (path, evaluated) in control_tower_rules().items()
        if evaluated & types and name not in exempt
    ]


def resource_types(scope: IConstruct) -> frozenset[str]:
    """The CloudFormation resource types under ``scope``."""
    return frozenset(
        c.cfn_resource_type for c in scope.node.find_all() if isinstance(c, cdk.CfnResource)
    )


def attach_rule_packs(
    app: IConstruct, config: PipelineConfig, *, skip: frozenset[str] = frozenset()
) -> None:
    """Run the AwsSolutions and Serverless packs, and AWS Control Tower's proactive controls
    less the exemptions that apply to ``config``, on every stack at synth. Call it once the
    stacks are built: the controls are those that evaluate their resource types."""
    exempt = frozenset(e.rule for e in control_tower_exemptions(config, skip=skip))
    cdk.Validations.of(app).add_plugins(
        *(pack(app) for pack in RULE_PACKS),
        # The plugin implements the Beta1 interface, whose contract Validations runs as is.
        CfnGuardValidator(  # type: ignore[arg-type]
            control_tower_rules_enabled=False,
            rules=control_tower_rules_for(resource_types(app), exempt),
        ),
    )


def acknowledge_findings(stack: PipelineStack, *, skip: frozenset[str] = frozenset()) -> None:
    """Record every acknowledgment on its resource (``skip`` names ones to leave out)."""
    for ack in ACKNOWLEDGMENTS:
        if ack.name not in skip and ack.applies(stack):
            cdk.Validations.of(ack.target(stack)).acknowledge(
                cdk.Acknowledgment(
                    id=ack.rule_in(stack),
                    reason=ack.reason,
                )
            )


# --- checkov -------------------------------------------------------------------------------
# Checks that do not fit this design are skipped on the resource itself, through template
# metadata that checkov reads, each with its reason; checkov is never turned off.
NO_CMK = (
    "Encrypted at rest with an AWS-managed key; a customer-managed KMS key adds $1 a month per "
    "key plus request charges and a key policy to operate, for data that needs no separate "
    "key control here."
)
CHECKOV_SKIPS: dict[str, tuple[tuple[str, str], ...]] = {
    "AWS::Lambda::Function": (
        (
            "CKV_AWS_117",
            "No VPC resources are used (DynamoDB and SQS are reached over AWS "
            "endpoints); a VPC would need NAT gateways or endpoints costing more "
            "than the whole stack.",
        ),
        (
            "CKV_AWS_173",
            "The environment holds no secrets (table name, Powertools settings); "
            "Lambda encrypts it at rest with an AWS-managed key.",
        ),
        (
            "CKV_AWS_115",
            "Reserved concurrency is an opt-in setting per function "
            "(functions.<stage>.reserved_concurrency): reserving carves capacity out "
            "of the account pool, and throttles are alarmed on instead.",
        ),
    ),
    "AWS::Logs::LogGroup": (("CKV_AWS_158", NO_CMK + " Logs carry record ids, never payloads."),),
    "AWS::DynamoDB::Table": (("CKV_AWS_119", NO_CMK),),
    "AWS::SQS::Queue": (
        (
            "CKV_AWS_27",
            "Encrypted at rest with SSE-SQS (SqsManagedSseEnabled), at no charge; "
            "checkov recognizes only KMS keys.",
        ),
    ),
    "AWS::SNS::Topic": (
        (
            "CKV_AWS_26",
            "Carries only alarm state changes, no data. CloudWatch alarms cannot publish "
            "to a topic under the AWS-managed SNS key, and a customer-managed key "
            "would cost more than every alarm together.",
        ),
    ),
}


def skip_checkov_checks(stack: cdk.Stack) -> None:
    """Write ``Metadata.checkov.skip`` (check id and reason) on each resource it applies to."""
    for construct in stack.node.find_all():
        if isinstance(construct, cdk.CfnResource) and construct.cfn_resource_type in CHECKOV_SKIPS:
            construct.add_metadata(
                "checkov",
                {
                    "skip": [
                        {"id": check, "comment": reason}
                        for check, reason in CHECKOV_SKIPS[construct.cfn_resource_type]
                    ]
                },
            )
