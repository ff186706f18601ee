"""Create a template's data resources (tables, queues) in whatever AWS boto3 points at.

The fault-run tests call this inside moto's ``mock_aws``: the table gets the template's own key
schema and billing mode, so handlers meet the real schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pipeline_tools.template import Physical, ref_id


def provision(template: Mapping[str, Any], session: Any, prefix: str = "pipeline") -> Physical:
    """Create every ``AWS::DynamoDB::Table`` and ``AWS::SQS::Queue``; return physical values."""
    dynamodb = session.client("dynamodb")
    sqs = session.client("sqs")
    physical: dict[str, dict[str, str]] = {}
    # Queues with a redrive policy last: their dead-letter queue must exist first.
    ordered = sorted(
        template["Resources"].items(),
        key=lambda item: "RedrivePolicy" in item[1].get("Properties", {}),
    )
    for logical_id, resource in ordered:
        props = resource.get("Properties", {})
        name = f"{prefix}-{logical_id}"
        if resource["Type"] == "AWS::DynamoDB::Table":
            description = dynamodb.create_table(
                TableName=name,
                KeySchema=props["KeySchema"],
                AttributeDefinitions=props["AttributeDefinitions"],
                BillingMode=props.get("BillingMode", "PROVISIONED"),
                **(
                    {}
                    if props.get("BillingMode") == "PAY_PER_REQUEST"
                    else {"ProvisionedThroughput": props["ProvisionedThroughput"]}
                ),
            )["TableDescription"]
            physical[logical_id] = {"Ref": name, "Arn": description["TableArn"]}
        elif resource["Type"] == "AWS::SQS::Queue":
            url = sqs.create_queue(QueueName=name, Attributes=_queue_attributes(props, physical))[
                "QueueUrl"
            ]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            physical[logical_id] = {"Ref": url, "Arn": arn["Attributes"]["QueueArn"]}
    return physical


def _queue_attributes(props: Mapping[str, Any], physical: Physical) -> dict[str, str]:
    """A queue's visibility timeout and redrive policy, as SQS's API takes them: the batched
    path's event sources depend on both."""
    attributes = {}
    if "VisibilityTimeout" in props:
        attributes["VisibilityTimeout"] = str(props["VisibilityTimeout"])
    redrive = props.get("RedrivePolicy")
    if redrive:
        target = physical[str(ref_id(redrive["deadLetterTargetArn"]))]["Arn"]
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": target, "maxReceiveCount": int(redrive["maxReceiveCount"])}
        )
    return attributes


#: The key schema of the stack's table (``constructs_lib.data_table``): ``pk`` and ``sk``.
KEY_ATTRIBUTES = ("pk", "sk")


def create_table(client: Any, name: str) -> None:
    """A PAY_PER_REQUEST table with the stack's key schema (``pk``, ``sk``, strings), for code
    that stores records without a synthesized template (the storage benchmark, unit tests)."""
    client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": n, "KeyType": k}
            for n, k in zip(KEY_ATTRIBUTES, ("HASH", "RANGE"), strict=True)
        ],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in KEY_ATTRIBUTES],
        BillingMode="PAY_PER_REQUEST",
    )
