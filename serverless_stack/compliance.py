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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, ServerlessChecks
from cdklabs.cdk_validator_cfnguard import CfnGuardValidator
from constructs import IConstruct

from constructs_lib.optimized_function import OptimizedFunction
from serverless_stack.config import PipelineConfig
from serverless_stack.control_tower import (
    control_tower_exemptions,
    control_tower_rules_for,
    resource_types,
)
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


MAPPING_DESTINATION_REASON = (
    "An SQS event source mapping takes no on-failure destination: Lambda offers those for stream "
    "and Kafka sources, and for SQS the failed messages' place is the source queue's own "
    "dead-letter queue "
    "(https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html). "
    "Each stage's queue has its redrive policy to the pipeline's DLQ, and the stage sends a "
    "record that fails to the DLQ itself, alone and with its reason (pipeline_common/batch.py)."
)

ACKNOWLEDGMENTS: tuple[Acknowledgment, ...] = (
    *(
        Acknowledgment(
            f"{stage}-mapping-failure-destination",
            lambda stack, stage=stage: stack.stage_queues[stage].mapping.node.default_child,  # type: ignore[misc]
            "Serverless::Serverless-LambdaEventSourceMappingDestination",
            MAPPING_DESTINATION_REASON,
            applies=lambda stack, stage=stage: stage in stack.stage_queues,  # type: ignore[misc]
        )
        for stage in STAGES
    ),
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
