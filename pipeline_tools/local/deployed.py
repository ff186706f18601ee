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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_tools.runner.spec import FunctionSpec


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
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == resource_type}


def specs_from_deployment(
    session: Any, stack: DeployedStack, code_root: Path
) -> tuple[dict[str, FunctionSpec], list[str]]:
    """The runner's specs for every deployed function, and notes on where each came from."""
    lam, s3, sqs = session.client("lambda"), session.client("s3"), session.client("sqs")
    account = session.client("sts").get_caller_identity()["Account"]
    notes: list[str] = []
    functions = stack.of_type("AWS::Lambda::Function")
    alias_arns: dict[str, str] = {}
    for fn_id in functions:
        for alias in lam.list_aliases(FunctionName=stack.physical[fn_id])["Aliases"]:
            if alias["Name"] == "live":
                alias_arns[alias["AliasArn"]] = fn_id
    stage_of = {fn_id: fn["Properties"]["Handler"].split(".")[0] for fn_id, fn in functions.items()}

    specs = {}
    for fn_id, resource in functions.items():
        stage = stage_of[fn_id]
        name = stack.physical[fn_id]
        response = lam.get_function(FunctionName=name)
        config = response["Configuration"]
        code_dir = code_root / stage
        _fetch_code(s3, account, resource["Properties"]["Code"], config["CodeSha256"], code_dir)

        invoke = lam.get_function_event_invoke_config(FunctionName=name, Qualifier="live")
        destination = invoke.get("DestinationConfig", {}).get("OnSuccess", {}).get("Destination")
        on_success = stage_of[alias_arns[destination]] if destination else None

        dlq_arn = (config.get("DeadLetterConfig") or {}).get("TargetArn")
        if dlq_arn:
            dlq_url = sqs.get_queue_url(QueueName=dlq_arn.rsplit(":", 1)[1])["QueueUrl"]
        else:
            target = resource["Properties"].get("DeadLetterConfig", {}).get("TargetArn", {})
            queue_id = target.get("Fn::GetAtt", [None])[0] if isinstance(target, dict) else None
            dlq_url = stack.physical.get(queue_id) if queue_id else None
            notes.append(
                f"{stage}: DLQ from the deployed template (the emulator dropped "
                "the function's DeadLetterConfig)"
            )
        specs[stage] = FunctionSpec(
            name=stage,
            code_dir=code_dir,
            handler=config["Handler"],
            environment=config.get("Environment", {}).get("Variables", {}),
            retry_attempts=int(invoke.get("MaximumRetryAttempts", 2)),
            max_event_age_seconds=int(invoke.get("MaximumEventAgeInSeconds", 21600)),
            on_success=on_success,
            dead_letter_queue_url=dlq_url,
            memory_mb=int(config.get("MemorySize", 128)),
            timeout_seconds=int(config.get("Timeout", 3)),
            arn=f"{config['FunctionArn']}:live",
        )
        notes.append(
            f"{stage}: code sha256 {config['CodeSha256']} verified, handler "
            f"{config['Handler']}, retries {invoke.get('MaximumRetryAttempts')}, "
            f"on success -> {on_success or 'end'}"
        )
    return specs, notes


def _fetch_code(
    s3: Any, account: str, code: dict[str, Any], expected_sha: str, target: Path
) -> None:
    bucket, key = code["S3Bucket"], code["S3Key"]
    if isinstance(bucket, dict):  # Fn::Sub of the bootstrap bucket, as the deploy resolved it
        bucket = (
            bucket["Fn::Sub"]
            .replace("${AWS::AccountId}", account)
            .replace("${AWS::Region}", s3.meta.region_name)
        )
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    actual = base64.b64encode(hashlib.sha256(body).digest()).decode()
    if actual != expected_sha:
        raise DeployedCodeMismatch(
            f"{target.name}: s3://{bucket}/{key} has SHA-256 {actual}, "
            f"Lambda registered {expected_sha}"
        )
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        archive.extractall(target)
