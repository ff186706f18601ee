"""cdk-nag on the toolchain: what CDK Pipelines generates, acknowledged with its reason.

Every wildcard in the toolchain's policies is a grant aws-cdk-lib's CDK Pipelines writes for
its own resources (the artifact bucket and its key, each CodeBuild project's log and report
groups, the bootstrap roles it assumes), or the smoke test's access to the staging stack's
resources by their generated names. Each is acknowledged where it is, by its exact finding id,
with the reason for its kind below; a wildcard of any other kind matches no reason, stays
unacknowledged, and fails synth.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import IConstruct

from serverless_stack.control_tower import ControlExemption

#: (finding pattern, reason): the first pattern that matches a finding's id gives its reason.
IAM5_REASONS: tuple[tuple[str, str], ...] = (
    (
        r"ArtifactsBucket[0-9A-F]{8}\.Arn>/\*|Action::s3:(GetBucket|GetObject|List|DeleteObject"
        r"|Abort)\*|Action::kms:(ReEncrypt|GenerateDataKey)\*",
        "CDK Pipelines' grant on the pipeline's own artifact bucket and its key: the objects "
        "are this pipeline's artifacts, whose keys CodePipeline makes per execution.",
    ),
    (
        r"log-group:/aws/codebuild/|report-group/",
        "CodeBuild writes each build's logs and test reports under names it makes per build, "
        "below the project's own log group and report-group prefix.",
    ),
    (
        r"Resource::arn:\*:iam::\d{12}:role/\*",
        "Self-mutation assumes the CDK bootstrap roles of the toolchain account (lookup and "
        "deploy) to update this stack; CDK Pipelines grants that on the account's roles.",
    ),
    (
        r"Resource::\*\]$",
        "CDK Pipelines' own statements on '*': cloudformation:DescribeStacks and "
        "s3:ListBucket in self-mutation (the stacks and bootstrap buckets of the accounts it "
        "deploys to, whose names it does not know at synth), and CodeBuild's BatchGetBuilds, "
        "StartBuild and StopBuild in the asset role. Each of these actions does take a "
        "resource (a stack, a bucket, a project: the Service Authorization Reference); "
        "aws-cdk-lib writes them on '*' and offers no setting to narrow them.",
    ),
    (
        r"Resource::arn:aws:(lambda|sqs|dynamodb|cloudformation):[a-z0-9-]+:\d{12}:"
        r"(function:|table/|stack/)?DataPipeline-staging",
        "The smoke test reaches the staging stack's resources by the names CloudFormation "
        "generates (<stack>-<id>-<suffix>): invoke, read and delete its own DLQ messages, "
        "read records, describe the stack; nothing outside that stack.",
    ),
)
OTHER_FINDINGS = {
    "AwsSolutions::AwsSolutions-S1": (
        "The artifact bucket holds only the pipeline's own build artifacts, written and read "
        "by CodePipeline and CodeBuild (whose calls CloudTrail records); a second bucket for "
        "its access logs would cost more than it tells."
    ),
}


#: checkov checks CDK Pipelines' resources do not meet, skipped on the resource with the reason.
CHECKOV_SKIPS: dict[str, tuple[tuple[str, str], ...]] = {
    "AWS::S3::Bucket": (
        ("CKV_AWS_18", OTHER_FINDINGS["AwsSolutions::AwsSolutions-S1"]),
        (
            "CKV_AWS_21",
            "CodePipeline writes each execution's artifacts under new keys and never overwrites "
            "one, so versions would only keep copies of what is already there.",
        ),
    ),
    "AWS::Logs::LogGroup": (
        (
            "CKV_AWS_158",
            "The build logs hold test and synth output, no data; CloudWatch Logs encrypts them "
            "at rest, and a customer-managed key would add $1 a month and a key policy.",
        ),
    ),
    "AWS::IAM::Policy": (
        (
            "CKV_AWS_111",
            "CDK Pipelines' own statements: CodeBuild's StartBuild/StopBuild/BatchGetBuilds on "
            "the asset projects and its log and report groups, which take the names CodeBuild "
            "makes per build.",
        ),
    ),
}
#: The policies of CDK Pipelines that checkov's CKV_AWS_111 flags (by their construct path).
WRITE_WITHOUT_CONSTRAINTS = ("/Assets/FileRole/",)


#: Control Tower controls CDK Pipelines' artifact bucket and key do not meet, with the reason.
#: Disabled by rule, as the stack's own exemptions are (``control_tower.ControlExemption``).
TOOLCHAIN_EXEMPTIONS: tuple[ControlExemption, ...] = (
    ControlExemption(
        "ct-s3-pr-2",
        "CT.S3.PR.2: S3 buckets log server access",
        OTHER_FINDINGS["AwsSolutions::AwsSolutions-S1"],
    ),
    ControlExemption(
        "ct-s3-pr-4",
        "CT.S3.PR.4: S3 buckets send event notifications",
        "Nothing reacts to an artifact: CodePipeline hands each one to the next action itself.",
    ),
    ControlExemption(
        "ct-s3-pr-9",
        "CT.S3.PR.9: S3 buckets have Object Lock",
        "Artifacts expire after a month by the bucket's lifecycle rule; Object Lock would keep "
        "every one for its retention and stop that expiry. They are rebuilt from the source.",
    ),
    ControlExemption(
        "ct-kms-pr-3",
        "CT.KMS.PR.3: a key policy limits grant creation to AWS services",
        "CDK Pipelines writes the artifact key's policy: the toolchain account and the target "
        "accounts' bootstrap roles use the key directly and create no grants.",
    ),
)


def skip_toolchain_checkov_checks(stack: cdk.Stack) -> None:
    """Write ``Metadata.checkov.skip`` on the toolchain's artifact bucket and asset role."""
    for construct in stack.node.find_all():
        if not isinstance(construct, cdk.CfnResource) or cdk.Stack.of(construct).node.path != (
            stack.node.path
        ):
            continue
        kind = construct.cfn_resource_type
        if kind == "AWS::IAM::Policy" and not any(
            part in construct.node.path for part in WRITE_WITHOUT_CONSTRAINTS
        ):
            continue
        if kind in CHECKOV_SKIPS:
            skips = [{"id": check, "comment": why} for check, why in CHECKOV_SKIPS[kind]]
            construct.add_metadata("checkov", {"skip": skips})


def _rendered(value: Any) -> str:
    """A resolved value as cdk-nag writes it in a finding id (``<Id.Arn>``, ``<AWS::Region>``)."""
    if isinstance(value, str):
        return value
    if "Fn::GetAtt" in value:
        return f"<{value['Fn::GetAtt'][0]}.{value['Fn::GetAtt'][1]}>"
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_rendered(part) for part in parts)
    return str(value)


def iam5_findings(policy: iam.CfnPolicy) -> Iterator[str]:
    """The AwsSolutions-IAM5 finding ids of ``policy``: each wildcard action and resource."""
    document = cdk.Stack.of(policy).resolve(policy.policy_document)
    for statement in document.get("Statement", []):
        for key, kind in (("Action", "Action"), ("Resource", "Resource")):
            values = statement.get(key, [])
            for value in values if isinstance(values, list) else [values]:
                text = _rendered(value)
                if "*" in text:
                    yield f"AwsSolutions::AwsSolutions-IAM5[{kind}::{text}]"


def acknowledge_toolchain(stack: cdk.Stack, *stages_extra: IConstruct) -> None:
    """Acknowledge each IAM5 finding with its reason, and the artifact bucket's S1."""
    for scope in (stack, *stages_extra):
        for construct in scope.node.find_all():
            if isinstance(construct, iam.CfnPolicy) and _owned_by(construct, stack, stages_extra):
                _acknowledge_wildcards(construct)
            if isinstance(construct, cdk.CfnResource) and construct.cfn_resource_type == (
                "AWS::S3::Bucket"
            ):
                for rule, reason in OTHER_FINDINGS.items():
                    cdk.Validations.of(construct).acknowledge(
                        cdk.Acknowledgment(id=rule, reason=reason)
                    )


def _owned_by(policy: IConstruct, stack: cdk.Stack, extra: tuple[IConstruct, ...]) -> bool:
    """A policy of the toolchain itself, or of an extra scope, not of a deployment stage's
    pipeline stack (those have their own acknowledgments)."""
    owner = cdk.Stack.of(policy).node.path  # jsii proxies are compared by path, not identity
    return owner in (stack.node.path, *(e.node.path for e in extra))


def _acknowledge_wildcards(policy: iam.CfnPolicy) -> None:
    for finding in iam5_findings(policy):
        reason = next((r for pattern, r in IAM5_REASONS if re.search(pattern, finding)), None)
        if reason is not None:
            cdk.Validations.of(policy).acknowledge(cdk.Acknowledgment(id=finding, reason=reason))
