"""A release that cannot start is stopped before it takes traffic: the pre-traffic probe.

CodeDeploy runs each alias's ``BeforeAllowTraffic`` hook before any traffic moves; a hook that
reports ``Failed`` stops the deployment, and CloudFormation rolls the alias back
(https://docs.aws.amazon.com/codedeploy/latest/userguide/reference-appspec-file-structure-hooks.html#appspec-hooks-lambda).
The hook invokes the new version once, synchronously. A version whose handler cannot be
imported answers Lambda's ``Invoke`` with ``FunctionError: Unhandled`` and an error of type
``Runtime.ImportModuleError`` (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html,
"FunctionError"; https://docs.aws.amazon.com/lambda/latest/dg/python-handler.html), which the
Lambda client below reproduces around the in-process runner.
"""

from __future__ import annotations

import io
import json
import shutil
import uuid
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from pipeline_tools.runner.runtime import LoadedFunction
from tests.conftest import ENVIRONMENTS, stored_and_counted
from tests.helpers import alias_ids, function_ids, of_type, props, ref_id, role_statements


def unqualified(arn: str) -> str:
    """A function's ARN without its alias (the runner's specs are the ``live`` aliases')."""
    return arn.rsplit(":", 1)[0]


class InProcessLambda:
    """Lambda's synchronous ``Invoke`` of one function version, run in-process: an error at
    import or in the handler is a ``FunctionError`` response, as Lambda answers it."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.calls: list[dict[str, Any]] = []

    def invoke(self, **request: Any) -> dict[str, Any]:
        self.calls.append(request)
        event = json.loads(request["Payload"])
        try:
            function = LoadedFunction(self.spec)
        except Exception as error:
            return self._error("Runtime.ImportModuleError", f"Unable to import module: {error}")
        try:
            result = function.invoke(event, str(uuid.uuid4()))
        except Exception as error:
            return self._error(type(error).__name__, str(error))
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(result).encode())}

    @staticmethod
    def _error(error_type: str, message: str) -> dict[str, Any]:
        body = json.dumps({"errorType": error_type, "errorMessage": message})
        return {
            "StatusCode": 200,
            "FunctionError": "Unhandled",
            "Payload": io.BytesIO(body.encode()),
        }


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_stage_probes_its_new_version_before_traffic_moves(template_json, environment):
    """Every stage's alias update runs a pre-traffic hook that probes exactly its new version
    and may invoke nothing else."""
    template = template_json[environment]
    aliases = alias_ids(template)
    for stage, function_id in function_ids(template).items():
        alias = template["Resources"][aliases[stage]]
        update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
        hook_id = ref_id(update["BeforeAllowTrafficHook"])
        assert hook_id in alias["DependsOn"], f"{stage}: the alias must wait for its hook"
        hook = props(template["Resources"][hook_id])
        version_id = ref_id(alias["Properties"]["FunctionVersion"])
        assert ref_id(props(template["Resources"][version_id])["FunctionName"]) == function_id
        version = {"Ref": version_id}  # a version's Ref is its ARN, with its number
        assert hook["Environment"]["Variables"]["PROBE_FUNCTION"] == version
        invokes = [
            statement["Resource"]
            for statement in role_statements(template, ref_id(hook["Role"]))
            if "lambda:InvokeFunction" in json.dumps(statement["Action"])
        ]
        assert invokes == [version], stage


def test_the_hooks_timeout_covers_the_probed_versions(template_json):
    template = template_json["prod"]
    functions = of_type(template, "AWS::Lambda::Function")
    for stage, function_id in function_ids(template).items():
        alias = template["Resources"][alias_ids(template)[stage]]
        hook_id = ref_id(
            alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]["BeforeAllowTrafficHook"]
        )
        assert props(functions[hook_id])["Timeout"] >= props(functions[function_id])["Timeout"] + 30


@pytest.fixture
def hook(monkeypatch):
    """The hook module, its CodeDeploy client stubbed (moto has no
    PutLifecycleEventHookExecutionStatus; the stubber holds each call to botocore's model)."""
    from release_hook import handler

    monkeypatch.delenv("SCALABLE_RESOURCE_ID", raising=False)
    codedeploy = boto3.client("codedeploy", region_name="us-east-1")
    monkeypatch.setattr(handler, "codedeploy", codedeploy)
    with Stubber(codedeploy) as stubber:
        handler.stubber = stubber  # type: ignore[attr-defined]
        yield handler


def expect_report(hook: Any, status: str) -> dict[str, str]:
    event = {"DeploymentId": "d-PROBE1", "LifecycleEventHookExecutionId": "hook-probe"}
    hook.stubber.add_response(
        "put_lifecycle_event_hook_execution_status",
        {"lifecycleEventHookExecutionId": "hook-probe"},
        {
            "deploymentId": "d-PROBE1",
            "lifecycleEventHookExecutionId": "hook-probe",
            "status": status,
        },
    )
    return event


@pytest.mark.parametrize("stage", ["validator", "enricher", "processor"])
def test_a_healthy_version_answers_the_probe_and_stores_nothing(pipeline, hook, monkeypatch, stage):
    spec = pipeline.specs[stage]
    client = InProcessLambda(spec)
    monkeypatch.setattr(hook, "lambda_client", client)
    monkeypatch.setenv("PROBE_FUNCTION", f"{unqualified(spec.arn)}:7")
    result = hook.lambda_handler(expect_report(hook, "Succeeded"), None)
    assert result["status"] == "Succeeded", result
    hook.stubber.assert_no_pending_responses()
    (call,) = client.calls
    assert (
        call["FunctionName"] == f"{unqualified(spec.arn)}:7"
        and call["InvocationType"] == "RequestResponse"
    )
    dynamodb = pipeline.session.client("dynamodb")
    table = pipeline.specs["processor"].environment["TABLE_NAME"]
    records, counts = stored_and_counted(dynamodb, table)
    assert (records, counts) == ([], {})
    sqs = pipeline.session.client("sqs")
    for url in sqs.list_queues().get("QueueUrls", []):
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"


def probe_broken_version(pipeline, hook, monkeypatch, tmp_path, stage: str, line: str):
    """Probe a new version of ``stage`` whose handler module ends with ``line``; the hook's
    result (its report to CodeDeploy is expected to be Failed)."""
    spec = pipeline.specs[stage]
    broken = tmp_path / "code"
    shutil.copytree(spec.code_dir, broken)
    handler_file = broken / stage / "handler.py"
    handler_file.write_text(handler_file.read_text() + f"\n{line}\n")
    monkeypatch.setattr(hook, "lambda_client", InProcessLambda(replace(spec, code_dir=broken)))
    monkeypatch.setenv("PROBE_FUNCTION", f"{unqualified(spec.arn)}:8")
    result = hook.lambda_handler(expect_report(hook, "Failed"), None)
    hook.stubber.assert_no_pending_responses()
    return result


@pytest.mark.parametrize("stage", ["validator", "enricher", "processor"])
def test_a_version_that_fails_at_import_stops_its_deployment(
    pipeline, hook, monkeypatch, tmp_path, stage
):
    """The new version's code cannot import (a module it names is not in the package): the
    probe's invoke fails, the hook reports Failed, and no traffic moves."""
    line = "import module_this_release_forgot_to_ship  # noqa"
    result = probe_broken_version(pipeline, hook, monkeypatch, tmp_path, stage, line)
    assert result["status"] == "Failed"
    assert "Runtime.ImportModuleError" in result["failure"]
    assert "module_this_release_forgot_to_ship" in result["failure"]


def test_a_version_that_crashes_at_init_stops_its_deployment(pipeline, hook, monkeypatch, tmp_path):
    """An exception while the module initialises (a missing setting, a client that cannot be
    made) fails the probe as an import does."""
    line = "raise RuntimeError('init: no table configured')"
    result = probe_broken_version(pipeline, hook, monkeypatch, tmp_path, "processor", line)
    assert result["status"] == "Failed" and "init: no table configured" in result["failure"]


def test_the_probe_event_and_answer_are_the_stages(hook):
    from pipeline_common import invocation

    assert hook.PROBE_EVENT == invocation.PROBE_EVENT
    assert hook.PROBE_ANSWER == invocation.PROBE_ANSWER
