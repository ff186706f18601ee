"""Provisioned concurrency across a deploy: the processor's scaling pauses for each shift.

Lambda cannot change an alias's provisioned concurrency while the alias routes to two versions
("you can't manage provisioned concurrency settings on the alias while the routing configuration
is in place", https://docs.aws.amazon.com/lambda/latest/dg/configuration-aliases.html; the error
"Alias with weights can not be used with Provisioned Concurrency", hashicorp/terraform issue
24957), so prod's scalable target is suspended before CodeDeploy moves traffic
(``SuspendedState``, https://docs.aws.amazon.com/autoscaling/application/userguide/application-auto-scaling-suspend-resume-scaling.html)
and resumed when the deployment ends, however it ends, with the range its schedule has in effect
(scheduled actions that fall inside a suspension do not run on resume).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.conftest import cdk_context
from tests.helpers import alias_ids, function_ids, of_type, props, ref_id

RESOURCE = "function:processor-fn:live"
DIMENSION = "lambda:function:ProvisionedConcurrency"
ALL_SUSPENDED = {
    "DynamicScalingInSuspended": True,
    "DynamicScalingOutSuspended": True,
    "ScheduledScalingSuspended": True,
}


def pause_resources(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if k.startswith("ProcessorScalingPause")}


def hook_function(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (k, props(v))
        for k, v in pause_resources(template).items()
        if v["Type"] == "AWS::Lambda::Function"
    ]
    return found


def test_only_an_auto_scaled_alias_that_shifts_gradually_pauses(template_json):
    """prod's processor scales by target tracking and a schedule, and shifts by canary; staging's
    has a fixed provisioned concurrency (nothing scales it), dev shifts at once."""
    assert pause_resources(template_json["prod"])
    assert not pause_resources(template_json["staging"])
    assert not pause_resources(template_json["dev"])


def test_the_hook_runs_before_traffic_moves_and_at_every_end_of_a_deployment(template_json):
    template = template_json["prod"]
    hook_id, hook = hook_function(template)
    alias = template["Resources"][alias_ids(template)["processor"]]
    update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    assert update["BeforeAllowTrafficHook"] == {"Ref": hook_id}
    assert "AfterAllowTrafficHook" not in update
    # Updated before the alias update that runs it (its schedule may have changed).
    assert hook_id in alias["DependsOn"]
    rules = [
        props(v) for v in pause_resources(template).values() if v["Type"] == "AWS::Events::Rule"
    ]
    (rule,) = [r for r in rules if "EventPattern" in r]
    assert rule["EventPattern"] == {
        "source": ["aws.codedeploy"],
        "detail-type": ["CodeDeploy Deployment State-change Notification"],
        "detail": {
            "state": ["SUCCESS", "FAILURE", "STOP"],
            "application": [{"Ref": ref_id(update["ApplicationName"])}],
            "deploymentGroup": [{"Ref": ref_id(update["DeploymentGroupName"])}],
        },
    }
    (target,) = rule["Targets"]
    hook_alias = next(
        k
        for k, v in of_type(template, "AWS::Lambda::Alias").items()
        if props(v)["FunctionName"] == {"Ref": hook_id}
    )
    assert target["Arn"] == {"Ref": hook_alias}
    (queue_id,) = [q for q in of_type(template, "AWS::SQS::Queue") if q.startswith("DeadLetter")]
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    environment = hook["Environment"]["Variables"]
    processor = function_ids(template)["processor"]
    assert environment["SCALABLE_RESOURCE_ID"] == {
        "Fn::Join": ["", ["function:", {"Ref": processor}, ":live"]]
    }


def test_the_timeline_is_the_schedule_in_minutes_of_the_week(template_json):
    """From cdk.json's prod schedule, by the test's own arithmetic: Sunday 00:00 is minute 0,
    Monday to Friday are days 1 to 5."""
    _, hook = hook_function(template_json["prod"])
    timeline = json.loads(hook["Environment"]["Variables"]["SCALING_TIMELINE"])
    scaling = cdk_context()["pipeline"]["prod"]["functions"]["processor"]["auto_scaling"]
    weekdays = range(1, 6)
    expected = [
        {
            "name": action["name"],
            "minutes": [day * 1440 + int(action["cron"].split()[1]) * 60 for day in weekdays],
            "time_zone": None,
            "min_capacity": action["min_capacity"],
            "max_capacity": action["max_capacity"],
        }
        for action in scaling["schedule"]
    ]
    assert timeline == {
        "min_capacity": scaling["min_capacity"],
        "max_capacity": scaling["max_capacity"],
        "actions": expected,
    }


def test_the_hooks_role_holds_exactly_what_it_calls(template_json):
    from tests.helpers import as_list, role_statements

    template = template_json["prod"]
    _, hook = hook_function(template)
    role = ref_id(hook["Role"])
    assert "ManagedPolicyArns" not in props(template["Resources"][role])
    pairs = {
        (action, json.dumps(resource, sort_keys=True))
        for statement in role_statements(template, role)
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }
    processor = function_ids(template)["processor"]
    alias_arn = json.dumps(
        {"Fn::Join": ["", [{"Fn::GetAtt": [processor, "Arn"]}, ":live"]]}, sort_keys=True
    )
    group = ref_id(
        template["Resources"][alias_ids(template)["processor"]]["UpdatePolicy"][
            "CodeDeployLambdaAliasUpdate"
        ]["DeploymentGroupName"]
    )
    log_group = ref_id(hook["LoggingConfig"]["LogGroup"])
    (queue_id,) = [q for q in of_type(template, "AWS::SQS::Queue") if q.startswith("DeadLetter")]
    by_action = {action for action, _ in pairs}
    assert by_action == {
        "application-autoscaling:RegisterScalableTarget",
        "lambda:GetProvisionedConcurrencyConfig",
        "lambda:PutProvisionedConcurrencyConfig",
        "lambda:DeleteProvisionedConcurrencyConfig",
        "codedeploy:PutLifecycleEventHookExecutionStatus",
        # The scheduled check: is a deployment of the group unfinished?
        "codedeploy:ListDeployments",
        # The release probe: the new version, once.
        "lambda:InvokeFunction",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "sqs:SendMessage",
        # Added by Lambda's tracing setting (PassThrough still sends a caller's sampled traces).
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }
    (scaling,) = [r for a, r in pairs if a.startswith("application-autoscaling:")]
    assert ":application-autoscaling:" in scaling and ":scalable-target/*" in scaling
    for action in ("Get", "Put", "Delete"):
        assert (f"lambda:{action}ProvisionedConcurrencyConfig", alias_arn) in pairs
    deploys = [r for a, r in pairs if a.startswith("codedeploy:")]
    # ListDeployments and the hook's report on the group; the report on "*" too, since the
    # Service Authorization Reference lists no resource type for it (test_iam_reference.py).
    assert sorted(deploys, key=len)[0] == '"*"' and len(deploys) == 3
    for deploy in sorted(deploys, key=len)[1:]:
        assert group in deploy and "deploymentgroup" in deploy
    version = ref_id(
        template["Resources"][alias_ids(template)["processor"]]["Properties"]["FunctionVersion"]
    )
    assert ("lambda:InvokeFunction", json.dumps({"Ref": version})) in pairs
    assert ("sqs:SendMessage", json.dumps({"Fn::GetAtt": [queue_id, "Arn"]})) in pairs
    assert ("logs:PutLogEvents", json.dumps({"Fn::GetAtt": [log_group, "Arn"]})) in pairs


# --- the hook's code, on moto's Application Auto Scaling ---------------------------------------


@pytest.fixture
def hook(template_json, monkeypatch):
    """The hook module with prod's environment, its clients on moto (codedeploy stubbed: moto
    does not implement PutLifecycleEventHookExecutionStatus; the stubber checks each call
    against botocore's model of the real API)."""
    _, function = hook_function(template_json["prod"])
    monkeypatch.setenv("SCALABLE_RESOURCE_ID", RESOURCE)
    monkeypatch.setenv("SCALING_TIMELINE", function["Environment"]["Variables"]["SCALING_TIMELINE"])
    from release_hook import handler

    with mock_aws():
        autoscaling = boto3.client("application-autoscaling", region_name="us-east-1")
        autoscaling.register_scalable_target(
            ServiceNamespace="lambda",
            ResourceId=RESOURCE,
            ScalableDimension=DIMENSION,
            MinCapacity=2,
            MaxCapacity=10,
        )
        codedeploy = boto3.client("codedeploy", region_name="us-east-1")
        monkeypatch.setattr(handler, "autoscaling", autoscaling)
        monkeypatch.setattr(handler, "codedeploy", codedeploy)
        with Stubber(codedeploy) as stubber:
            handler.stubber = stubber  # type: ignore[attr-defined]
            yield handler


def target_state(handler) -> dict[str, Any]:
    (found,) = handler.autoscaling.describe_scalable_targets(ServiceNamespace="lambda")[
        "ScalableTargets"
    ]
    return found


def test_before_traffic_moves_scaling_is_suspended_and_the_hook_reports_success(hook):
    event = {"DeploymentId": "d-ABC123", "LifecycleEventHookExecutionId": "hook-1"}
    hook.stubber.add_response(
        "put_lifecycle_event_hook_execution_status",
        {"lifecycleEventHookExecutionId": "hook-1"},
        {
            "deploymentId": "d-ABC123",
            "lifecycleEventHookExecutionId": "hook-1",
            "status": "Succeeded",
        },
    )
    assert hook.lambda_handler(event, None)["status"] == "Succeeded"
    state = target_state(hook)
    assert state["SuspendedState"] == ALL_SUSPENDED
    assert (state["MinCapacity"], state["MaxCapacity"]) == (2, 10), "the range is left alone"
    hook.stubber.assert_no_pending_responses()


def test_a_failure_to_suspend_fails_the_deployment_before_any_traffic_moves(hook, monkeypatch):
    def refuse(**_: Any) -> None:
        raise RuntimeError("AccessDenied")

    monkeypatch.setattr(hook.autoscaling, "register_scalable_target", refuse)
    hook.stubber.add_response(
        "put_lifecycle_event_hook_execution_status",
        {"lifecycleEventHookExecutionId": "hook-2"},
        {"deploymentId": "d-1", "lifecycleEventHookExecutionId": "hook-2", "status": "Failed"},
    )
    event = {"DeploymentId": "d-1", "LifecycleEventHookExecutionId": "hook-2"}
    assert hook.lambda_handler(event, None)["status"] == "Failed"
    hook.stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # Monday 08:30 UTC: BusinessHours fired at 08:00 today.
        (datetime(2026, 11, 30, 8, 30, tzinfo=UTC), (2, 10)),
        # Monday 07:59 UTC: the last action was Friday's OffHours at 20:00.
        (datetime(2026, 11, 30, 7, 59, tzinfo=UTC), (0, 0)),
        # Saturday noon: still Friday's OffHours.
        (datetime(2026, 12, 5, 12, 0, tzinfo=UTC), (0, 0)),
        # Wednesday 19:59 UTC: Wednesday's BusinessHours.
        (datetime(2026, 12, 2, 19, 59, tzinfo=UTC), (2, 10)),
    ],
)
def test_when_the_deployment_ends_scaling_resumes_with_the_range_in_effect(
    hook, monkeypatch, now, expected
):
    """A deployment that ran across 08:00 suspended BusinessHours; the range is applied now."""
    hook.autoscaling.register_scalable_target(
        ServiceNamespace="lambda",
        ResourceId=RESOURCE,
        ScalableDimension=DIMENSION,
        SuspendedState=ALL_SUSPENDED,
    )

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return now

    monkeypatch.setattr(hook, "datetime", Clock)
    for state in ("SUCCESS", "FAILURE"):
        event = {"source": "aws.codedeploy", "detail": {"state": state}}
        result = hook.lambda_handler(event, None)
        assert (result["min_capacity"], result["max_capacity"]) == expected
        found = target_state(hook)
        assert {k: v for k, v in found["SuspendedState"].items()} == {
            k: False for k in ALL_SUSPENDED
        }
        assert (found["MinCapacity"], found["MaxCapacity"]) == expected


def test_the_range_in_effect_reads_each_actions_own_time_zone():
    """08:00 in Berlin is 07:00 UTC in winter: at 07:30 UTC on a Monday, Berlin's business hours
    have begun."""
    from release_hook.handler import range_in_effect

    timeline = {
        "min_capacity": 1,
        "max_capacity": 5,
        "actions": [
            {
                "minutes": [1 * 1440 + 480],
                "time_zone": "Europe/Berlin",
                "min_capacity": 3,
                "max_capacity": 9,
            },
            {"minutes": [5 * 1440 + 1200], "time_zone": None, "min_capacity": 0, "max_capacity": 0},
        ],
    }
    monday = datetime(2026, 11, 30, 7, 30, tzinfo=UTC)
    assert range_in_effect(timeline, monday) == (3, 9)
    assert range_in_effect(timeline, monday.replace(hour=6, minute=59)) == (0, 0)
    assert range_in_effect({**timeline, "actions": []}, monday) == (1, 5)


def test_an_event_that_is_neither_is_refused_in_one_line(hook):
    with pytest.raises(ValueError, match="not a CodeDeploy lifecycle hook"):
        hook.lambda_handler({"id": "r-1"}, None)


def test_a_schedule_that_is_not_weekly_is_refused_at_synth():
    from constructs_lib.scaling import ProvisionedConcurrencyScaling, ScheduledCapacity
    from constructs_lib.scaling_pause import scaling_timeline

    scaling = ProvisionedConcurrencyScaling(
        min_capacity=1,
        max_capacity=4,
        schedule=(ScheduledCapacity("MonthEnd", "0 8 L * ? *", 2, 4),),
    )
    with pytest.raises(ValueError, match=r"auto_scaling.schedule\['MonthEnd'\].cron"):
        scaling_timeline(scaling)


def test_dead_letters_name_a_deployment_event_and_redrive_leaves_it(tmp_path):
    """A deployment event the hook could not act on lands in the DLQ (which pages); the operator
    commands say what it is and never send it to a stage."""
    from pipeline_tools.pipeline import Pipeline

    pipeline = Pipeline(
        dead_letter_queue_url="q",
        entry="validator",
        next_stage={"validator": "enricher", "enricher": "processor", "processor": None},
        stage_of_function={},
    )
    with pytest.raises(ValueError, match="CodeDeploy deployment event"):
        pipeline.failed_stage({"source": "aws.codedeploy", "detail": {"state": "FAILURE"}})


# --- the second path: a scheduled check, since EventBridge's events are best effort ------------

SCHEDULED = {
    "source": "aws.events",
    "detail-type": "Scheduled Event",
    "time": "2026-12-02T10:00:00Z",
}


def test_a_scheduled_check_runs_the_hook_and_bounds_a_lost_event(template_json):
    """EventBridge delivers CodeDeploy's state changes on a best-effort basis
    (https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-codedeploy.html), so a lost
    end event would leave the processor without scaling until the next deploy. A rule runs the
    hook every 15 minutes: that is the longest a lost event leaves scaling suspended."""
    template = template_json["prod"]
    hook_id, hook = hook_function(template)
    (check,) = [
        props(v)
        for v in pause_resources(template).values()
        if v["Type"] == "AWS::Events::Rule" and "ScheduleExpression" in props(v)
    ]
    assert check["ScheduleExpression"] == "rate(15 minutes)"
    (target,) = check["Targets"]
    hook_alias = next(
        k
        for k, v in of_type(template, "AWS::Lambda::Alias").items()
        if props(v)["FunctionName"] == {"Ref": hook_id}
    )
    assert target["Arn"] == {"Ref": hook_alias}
    update = template["Resources"][alias_ids(template)["processor"]]["UpdatePolicy"][
        "CodeDeployLambdaAliasUpdate"
    ]
    environment = hook["Environment"]["Variables"]
    assert environment["DEPLOYMENT_APPLICATION"] == update["ApplicationName"]
    assert environment["DEPLOYMENT_GROUP"] == update["DeploymentGroupName"]


def _suspend(hook) -> None:
    hook.autoscaling.register_scalable_target(
        ServiceNamespace="lambda",
        ResourceId=RESOURCE,
        ScalableDimension=DIMENSION,
        SuspendedState=ALL_SUSPENDED,
    )


@pytest.fixture
def check_env(monkeypatch):
    monkeypatch.setenv("DEPLOYMENT_APPLICATION", "DataPipeline-prod-Deployments")
    monkeypatch.setenv("DEPLOYMENT_GROUP", "processor-group")


def _list_request() -> dict[str, Any]:
    return {
        "applicationName": "DataPipeline-prod-Deployments",
        "deploymentGroupName": "processor-group",
        "includeOnlyStatuses": ["Created", "Queued", "InProgress", "Baking", "Ready"],
    }


def test_the_check_resumes_scaling_that_a_lost_event_left_suspended(hook, check_env):
    """The deployment ended, its event never came: the next check finds no unfinished
    deployment of the group and resumes scaling."""
    _suspend(hook)
    hook.stubber.add_response("list_deployments", {"deployments": []}, _list_request())
    result = hook.lambda_handler(SCHEDULED, None)
    assert result["scaling"] == "resumed"
    assert not any(target_state(hook)["SuspendedState"].values())
    hook.stubber.assert_no_pending_responses()


def test_the_check_leaves_scaling_suspended_while_a_deployment_is_unfinished(hook, check_env):
    _suspend(hook)
    hook.stubber.add_response("list_deployments", {"deployments": ["d-RUNNING1"]}, _list_request())
    result = hook.lambda_handler(SCHEDULED, None)
    assert result == {"scaling": "suspended", "unfinished": ["d-RUNNING1"]}
    assert target_state(hook)["SuspendedState"] == ALL_SUSPENDED
    hook.stubber.assert_no_pending_responses()
