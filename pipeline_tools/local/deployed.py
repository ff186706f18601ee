"""Read a deployed stack back from the emulator, as the pipeline runner needs it.

For each function: its configuration (handler, environment with physical names, memory,
timeout) from ``GetFunction``; its code from the emulator's S3 (the asset the deploy uploaded),
checked against the ``CodeSha256`` Lambda registered; its ``live`` alias's retries and
on-success destination from ``GetFunctionEventInvokeConfig``; its DLQ from the function's
``DeadLetterConfig``, or, where the emulator dropped it, from the deployed template.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_tools.runner.event_source import MappingSpec, mappings_from_template
from pipeline_tools.runner.iam import RolePolicy
from pipeline_tools.runner.spec import FunctionSpec
from pipeline_tools.template import StackTemplate, Stage, resolve, resources


class DeployedCodeMismatch(RuntimeError):
    """The code fetched from the emulator is not what its Lambda registered."""


@dataclass(frozen=True)
class DeployedStack:
    name: str
    template: dict[str, Any]
    physical: dict[str, str]  # logical ID -> physical ID
    outputs: dict[str, str]

    @classmethod
    def read(cls, session: Any, stack_name: str) -> DeployedStack:
        cloudformation = session.client("cloudformation")
        body = cloudformation.get_template(StackName=stack_name)["TemplateBody"]
        template = body if isinstance(body, dict) else json.loads(body)
        resources = cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
        physical = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in resources
            if r.get("LogicalResourceId") and r.get("PhysicalResourceId")
        }
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        return cls(stack_name, template, physical, outputs)

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return resources(self.template, resource_type)


def specs_from_deployment(
    session: Any, stack: DeployedStack, code_root: Path
) -> tuple[dict[str, FunctionSpec], list[str]]:
    """The runner's specs for every deployed function, and notes on where each came from."""
    lam, s3, sqs = session.client("lambda"), session.client("s3"), session.client("sqs")
    account = session.client("sts").get_caller_identity()["Account"]
    notes: list[str] = []
    model = StackTemplate.of(stack.template)
    alias_arns: dict[str, str] = {}
    for stage in model.stages.values():
        for alias in lam.list_aliases(FunctionName=stack.physical[stage.function_id])["Aliases"]:
            if alias["Name"] == "live":
                alias_arns[alias["AliasArn"]] = stage.name

    physical = _arns(stack, model, account, s3.meta.region_name)
    specs = {}
    for name, stage in model.stages.items():
        physical_name = stack.physical[stage.function_id]
        config = lam.get_function(FunctionName=physical_name)["Configuration"]
        code_dir = code_root / name
        _fetch_code(s3, account, stage.properties["Code"], config["CodeSha256"], code_dir)

        invoke = lam.get_function_event_invoke_config(FunctionName=physical_name, Qualifier="live")
        destination = invoke.get("DestinationConfig", {}).get("OnSuccess", {}).get("Destination")
        on_success = alias_arns[destination] if destination else None

        dlq_url = _dead_letter_queue_url(sqs, stack, stage, config, notes)
        specs[name] = FunctionSpec.build(
            name=name,
            code_dir=code_dir,
            function=config,
            async_config=invoke,
            on_success=on_success,
            dead_letter_queue={
                "Ref": dlq_url,
                "Arn": physical.get(stage.dead_letter_queue_id or "", {}).get("Arn"),
            },
            arn=f"{config['FunctionArn']}:live",
            policy=RolePolicy.of(
                model,
                str(stage.role_id),
                physical,
                region=s3.meta.region_name,
                account=account,
            ),
        )
        notes.append(
            f"{name}: code sha256 {config['CodeSha256']} verified, handler "
            f"{config['Handler']}, retries {invoke.get('MaximumRetryAttempts')}, "
            f"on success -> {on_success or 'end'}"
        )
    return specs, notes


def queue_mappings(session: Any, stack: DeployedStack) -> list[MappingSpec]:
    """The deployed stack's SQS event source mappings (the batched path), each with its
    queue's URL and ARN in the emulator."""
    account = session.client("sts").get_caller_identity()["Account"]
    physical = _arns(stack, StackTemplate.of(stack.template), account, session.region_name)
    return mappings_from_template(stack.template, physical)


def _dead_letter_queue_url(
    sqs: Any, stack: DeployedStack, stage: Stage, config: Mapping[str, Any], notes: list[str]
) -> str | None:
    """The function's DLQ as deployed, or (noted) as the template names it."""
    dlq_arn = (config.get("DeadLetterConfig") or {}).get("TargetArn")
    if dlq_arn:
        return str(sqs.get_queue_url(QueueName=dlq_arn.rsplit(":", 1)[1])["QueueUrl"])
    queue_id = stage.dead_letter_queue_id
    notes.append(
        f"{stage.name}: DLQ from the deployed template (the emulator dropped "
        "the function's DeadLetterConfig)"
    )
    return stack.physical.get(queue_id) if queue_id else None


def _arns(
    stack: DeployedStack, model: StackTemplate, account: str, region: str
) -> dict[str, dict[str, str]]:
    """Physical values of the resources the roles' policies name: tables, queues, aliases."""
    found: dict[str, dict[str, str]] = {}
    for logical_id in stack.of_type("AWS::DynamoDB::Table"):
        name = stack.physical[logical_id]
        found[logical_id] = {
            "Ref": name,
            "Arn": f"arn:aws:dynamodb:{region}:{account}:table/{name}",
        }
    for logical_id in stack.of_type("AWS::SQS::Queue"):
        url = stack.physical[logical_id]
        found[logical_id] = {
            "Ref": url,
            "Arn": f"arn:aws:sqs:{region}:{account}:{url.rsplit('/', 1)[1]}",
        }
    for stage in model.stages.values():
        if stage.alias_id:
            found[stage.alias_id] = {"Ref": stack.physical[stage.alias_id]}
    return found


def _fetch_code(
    s3: Any, account: str, code: dict[str, Any], expected_sha: str, target: Path
) -> None:
    # The bootstrap bucket is a Fn::Sub of the account and region, as the deploy resolved it.
    pseudo = {"AWS::AccountId": account, "AWS::Region": s3.meta.region_name}
    bucket = resolve(code["S3Bucket"], {}, target.name, pseudo, strict=True)
    key = resolve(code["S3Key"], {}, target.name, pseudo, strict=True)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    actual = base64.b64encode(hashlib.sha256(body).digest()).decode()
    if actual != expected_sha:
        raise DeployedCodeMismatch(
            f"{target.name}: s3://{bucket}/{key} has SHA-256 {actual}, "
            f"Lambda registered {expected_sha}"
        )
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        archive.extractall(target)
