"""checkov's checks that do not fit this design, skipped on each resource with the reason."""

from __future__ import annotations

import aws_cdk as cdk

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
