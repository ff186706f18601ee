"""Safe deployments of ``live``: CodeDeploy shifts each alias gradually in prod and rolls back on
the stage's own alarms; dev shifts at once; the local emulator's app has none of it."""

from __future__ import annotations

import json
import re
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from tests.conftest import cdk_context, synth_app
from tests.helpers import alias_ids, as_list, function_ids, of_type, props, ref_id


def groups(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return of_type(template, "AWS::CodeDeploy::DeploymentGroup")


def group_of(template: dict[str, Any], stage: str) -> tuple[str, dict[str, Any]]:
    alias = template["Resources"][alias_ids(template)[stage]]
    update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    group_id = ref_id(update["DeploymentGroupName"])
    return group_id, props(template["Resources"][group_id])


@pytest.mark.parametrize("stage", ["validator", "enricher", "processor"])
def test_prod_shifts_every_alias_gradually_and_rolls_back_on_its_own_alarms(template_json, stage):
    template = template_json["prod"]
    alias_id = alias_ids(template)[stage]
    alias = template["Resources"][alias_id]
    (application_id, _) = of_type(template, "AWS::CodeDeploy::Application").popitem()
    update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    assert ref_id(update["ApplicationName"]) == application_id
    group_id, group = group_of(template, stage)
    # The alias updates (and the shift starts) only once its group and alarms are up to date.
    assert group_id in alias["DependsOn"]
    assert group["DeploymentConfigName"] == "CodeDeployDefault.LambdaCanary10Percent5Minutes"
    assert group["DeploymentStyle"] == {
        "DeploymentOption": "WITH_TRAFFIC_CONTROL",
        "DeploymentType": "BLUE_GREEN",
    }
    assert group["AutoRollbackConfiguration"]["Enabled"] is True
    assert set(group["AutoRollbackConfiguration"]["Events"]) == {
        "DEPLOYMENT_FAILURE",
        "DEPLOYMENT_STOP_ON_ALARM",
    }
    assert group["AlarmConfiguration"]["Enabled"] is True
    alarm_ids = [ref_id(a["Name"]) for a in group["AlarmConfiguration"]["Alarms"]]
    found = {i: props(template["Resources"][i]) for i in alarm_ids}
    # No throttles: a throttle is ordinary traffic and runs no version.
    assert sorted(a["MetricName"] for a in found.values()) == ["Duration", "Regressions"]
    fn_id = function_ids(template)[stage]
    version_id = ref_id(props(alias)["FunctionVersion"])
    # The very version the alias is being moved to.
    assert props(alias)["FunctionVersion"] == {"Fn::GetAtt": [version_id, "Version"]}
    version = {"Fn::GetAtt": [version_id, "Version"]}
    topic_id, _ = of_type(template, "AWS::SNS::Topic").popitem()
    for alarm in found.values():
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        if alarm["MetricName"] == "Regressions":
            # The stage's own count of the errors it did not expect, of the new version alone.
            assert alarm["Namespace"] == "DataPipeline"
            assert dimensions == {"service": stage, "FunctionVersion": version}
        else:
            assert alarm["Namespace"] == "AWS/Lambda"
            assert dimensions == {
                "FunctionName": {"Ref": fn_id},
                "Resource": {"Fn::Join": ["", [{"Ref": fn_id}, ":live"]]},
                "ExecutedVersion": version,
            }
        # A rollback is news: it notifies (and Control Tower's CT.CLOUDWATCH.PR.1 wants an action).
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
        # Named after the version: a new alarm, with no inherited state, for every deploy.
        assert version in alarm["AlarmName"]["Fn::Join"][1]


REGION, ACCOUNT = "us-east-1", "123456789012"


def deployment_role_policy(template: dict[str, Any], stage: str, physical: dict[str, Any]):
    """The deployment group's role of ``stage``, as the runner's IAM evaluator reads it."""
    from pipeline_tools.runner.iam import RolePolicy
    from pipeline_tools.template import StackTemplate

    _, group = group_of(template, stage)
    role = group["ServiceRoleArn"]["Fn::GetAtt"][0]
    assert "ManagedPolicyArns" not in props(template["Resources"][role])
    return RolePolicy.of(StackTemplate.of(template), role, physical, region=REGION, account=ACCOUNT)


def physical_names(template: dict[str, Any]) -> dict[str, dict[str, str]]:
    """A physical name and ARN for every function and alarm, as CloudFormation would give."""
    found: dict[str, dict[str, str]] = {}
    for logical_id in of_type(template, "AWS::Lambda::Function"):
        name = f"stack-{logical_id}"
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        found[logical_id] = {"Ref": name, "Arn": arn}
    for logical_id in of_type(template, "AWS::CloudWatch::Alarm"):
        name = f"stack-{logical_id}"
        found[logical_id] = {
            "Ref": name,
            "Arn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}",
        }
    return found


def codedeploy_calls(template: dict[str, Any], stage: str, physical: dict[str, Any]):
    """The calls CodeDeploy makes with the group's role to shift ``stage``'s alias: read the
    alias, weight it (UpdateAlias with a RoutingConfig), read its and the versions' provisioned
    concurrency, read the rollback alarms, and (where there are hooks) invoke them."""
    function = physical[function_ids(template)[stage]]["Ref"]
    _, group = group_of(template, stage)
    alarms = [physical[ref_id(a["Name"])]["Ref"] for a in group["AlarmConfiguration"]["Alarms"]]
    return [
        ("lambda", "GetAlias", {"FunctionName": function, "Name": "live"}),
        (
            "lambda",
            "UpdateAlias",
            {
                "FunctionName": function,
                "Name": "live",
                "FunctionVersion": "1",
                "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1}},
            },
        ),
        (
            "lambda",
            "UpdateAlias",
            {"FunctionName": function, "Name": "live", "FunctionVersion": "2"},
        ),
        (
            "lambda",
            "GetProvisionedConcurrencyConfig",
            {"FunctionName": function, "Qualifier": "live"},
        ),
        ("lambda", "GetProvisionedConcurrencyConfig", {"FunctionName": function, "Qualifier": "2"}),
        ("cloudwatch", "DescribeAlarms", {"AlarmNames": alarms}),
    ]


@pytest.mark.parametrize("stage", ["validator", "enricher", "processor"])
def test_a_second_deploy_is_authorized_for_every_call_codedeploy_makes(template_json, stage):
    """Lambda authorises GetAlias and UpdateAlias against the *function* (the unqualified ARN),
    the provisioned-concurrency reads against a version or an alias, and compares the policy's
    resource with both FunctionName and Qualifier
    (https://docs.aws.amazon.com/lambda/latest/dg/lambda-api-permissions-ref.html, "Function
    resource names", "Function actions"). The first deploy creates the alias without CodeDeploy;
    every later one makes these calls, each evaluated here as IAM would."""
    template = template_json["prod"]
    physical = physical_names(template)
    policy = deployment_role_policy(template, stage, physical)
    for service, operation, params in codedeploy_calls(template, stage, physical):
        policy.check_call(service, operation, params)


@pytest.mark.parametrize("stage", ["validator", "processor"])
def test_the_deployment_role_grants_nothing_beyond_those_calls(template_json, stage):
    """Least privilege, as whole sets: another function's alias, another alarm, invoking the
    function itself, or changing its provisioned concurrency are all denied."""
    from botocore.exceptions import ClientError

    template = template_json["prod"]
    physical = physical_names(template)
    policy = deployment_role_policy(template, stage, physical)
    other = next(s for s in ("enricher", "validator") if s != stage)
    other_function = physical[function_ids(template)[other]]["Ref"]
    own = physical[function_ids(template)[stage]]["Ref"]
    other_alarm = next(
        physical[i]["Ref"]
        for i in of_type(template, "AWS::CloudWatch::Alarm")
        if physical[i]["Ref"] not in json.dumps(codedeploy_calls(template, stage, physical))
    )
    denied = [
        ("lambda", "UpdateAlias", {"FunctionName": other_function, "Name": "live"}),
        ("lambda", "Invoke", {"FunctionName": own, "Qualifier": "live"}),
        (
            "lambda",
            "PutProvisionedConcurrencyConfig",
            {"FunctionName": own, "Qualifier": "live", "ProvisionedConcurrentExecutions": 9},
        ),
        ("cloudwatch", "DescribeAlarms", {"AlarmNames": [other_alarm]}),
    ]
    for service, operation, params in denied:
        with pytest.raises(ClientError, match="AccessDenied"):
            policy.check_call(service, operation, params)


def test_a_grant_on_the_alias_arn_alone_is_denied_updatealias(template_json):
    """The mutation this guards against: the alias actions granted on ``<function>:live`` only.
    Lambda denies UpdateAlias then, since it authorises against the unqualified ARN."""
    import dataclasses

    from botocore.exceptions import ClientError

    from pipeline_tools.runner.iam import Statement

    template = template_json["prod"]
    physical = physical_names(template)
    policy = deployment_role_policy(template, "processor", physical)
    function_arn = physical[function_ids(template)["processor"]]["Arn"]
    qualified_only = dataclasses.replace(
        policy,
        statements=(
            Statement(
                "Allow",
                ("lambda:GetAlias", "lambda:UpdateAlias", "lambda:GetProvisionedConcurrencyConfig"),
                (f"{function_arn}:live",),
            ),
        ),
    )
    calls = codedeploy_calls(template, "processor", physical)
    update = next(c for c in calls if c[1] == "UpdateAlias")
    unqualified = f"lambda:UpdateAlias on resource: {function_arn} because"
    with pytest.raises(ClientError, match=unqualified):
        qualified_only.check_call(*update)
    assert not qualified_only.allows("lambda:UpdateAlias", function_arn)


def test_lambda_requests_are_authorised_against_the_arn_form_lambda_documents():
    """FunctionName as a name, a partial ARN or an ARN, qualified in the name or by Qualifier."""
    from pipeline_tools.runner.iam import RolePolicy, lambda_resource

    policy = RolePolicy("role", (), {}, REGION, ACCOUNT)
    base = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn"
    cases = [
        ("UpdateAlias", {"FunctionName": "fn", "Name": "live"}, base),
        ("GetAlias", {"FunctionName": f"{base}:live", "Name": "live"}, base),
        ("Invoke", {"FunctionName": "fn:live"}, f"{base}:live"),
        ("Invoke", {"FunctionName": f"{ACCOUNT}:function:fn", "Qualifier": "3"}, f"{base}:3"),
        ("Invoke", {"FunctionName": base}, base),
        (
            "GetProvisionedConcurrencyConfig",
            {"FunctionName": "fn", "Qualifier": "live"},
            f"{base}:live",
        ),
    ]
    for operation, params, expected in cases:
        assert lambda_resource(policy, operation, params) == expected, (operation, params)


def test_dev_shifts_at_once_without_rollback_alarms(template_json):
    template = template_json["dev"]
    assert len(groups(template)) == 3
    for stage in ("validator", "enricher", "processor"):
        _, group = group_of(template, stage)
        assert group["DeploymentConfigName"] == "CodeDeployDefault.LambdaAllAtOnce"
        assert not group.get("AlarmConfiguration", {}).get("Alarms")
    assert not [i for i in of_type(template, "AWS::CloudWatch::Alarm") if "NewVersion" in i]


def test_the_processor_stays_warm_through_a_shift_OLD(template_json):
    """prod's processor alias has provisioned concurrency from its scalable target alone (no
    fixed value on the alias, which CodeDeploy's alias updates would fight), and the deployment
    role may read it: during a canary Lambda spreads the alias's provisioned concurrency over the
    two versions by their weights (the API's ``AllocatedProvisionedConcurrentExecutions``
    "fluctuates" in linear and canary deployments,
    https://docs.aws.amazon.com/lambda/latest/api/API_ProvisionedConcurrencyConfigListItem.html),
    and the alias, the scalable target's resource, stays the same."""
    template = template_json["prod"]
    alias_id = alias_ids(template)["processor"]
    assert "ProvisionedConcurrencyConfig" not in props(template["Resources"][alias_id])
    (target,) = of_type(template, "AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert alias_id in json.dumps(props(target)["ResourceId"])
    _, group = group_of(template, "processor")
    role_id = group["ServiceRoleArn"]["Fn::GetAtt"][0]
    policy = next(
        props(p)
        for p in of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in props(p)["Roles"]
    )
    assert "lambda:GetProvisionedConcurrencyConfig" in json.dumps(policy)


def test_the_local_emulators_app_leaves_codedeploy_out_and_says_so():
    from app import build_app
    from pipeline_tools.local.emulator_gaps import left_out

    context = {**cdk_context(), "environment": "dev", "local_emulator": "true"}
    app = build_app(cdk.App(context=context))
    (stack,) = [c for c in app.node.children if isinstance(c, cdk.Stack)]
    template = Template.from_stack(stack).to_json()
    assert not [r for r in template["Resources"].values() if "CodeDeploy" in r["Type"]]
    assert not [r for r in template["Resources"].values() if "UpdatePolicy" in r]
    (entry,) = left_out()
    assert "AWS::CodeDeploy::DeploymentGroup" in entry["what"] and "UpdatePolicy" in entry["what"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"config": "canary_50_percent"},
            "deployment.config = 'canary_50_percent': must be one of",
        ),
        (
            {"rollback_on": ["errors", "latency"]},
            "deployment.rollback_on = ['errors', 'latency']: must list each stage alarm at most "
            "once, from errors, duration (no alarm 'latency')",
        ),
        (
            {"rollback_on": ["errors", "throttles"]},
            "deployment.rollback_on = ['errors', 'throttles']: 'throttles': a throttle is "
            "ordinary traffic and runs no version, so it never rolls a release back",
        ),
        ({"config": "all_at_once"}, "production shifts traffic gradually"),
        ({"rollback_on": ["duration"]}, 'include "errors"'),
    ],
)
def test_configuration_refuses_unknown_configs_and_alarms(change, expected):
    import copy

    from serverless_stack.config import ConfigError, load_config

    settings = copy.deepcopy(cdk_context()["pipeline"])
    settings["prod"]["deployment"] = {**settings["prod"]["deployment"], **change}
    with pytest.raises(ConfigError, match=r"pipeline\.prod\.deployment") as raised:
        load_config("prod", settings)
    assert expected in str(raised.value)


def test_the_construct_takes_hooks_and_grants_only_them():
    from aws_cdk import aws_lambda as lambda_

    from constructs_lib.deployment import DeploymentPreference, deployment_config
    from constructs_lib.optimized_function import OptimizedFunction

    stack = cdk.Stack(cdk.App(), "Alone")
    code = lambda_.Code.from_inline("def handler(e, c): return e")
    hook = lambda_.Function(
        stack, "Hook", runtime=lambda_.Runtime.PYTHON_3_14, handler="index.handler", code=code
    )
    fn = OptimizedFunction(
        stack,
        "Fn",
        function_props=lambda_.FunctionProps(
            code=code, handler="index.handler", runtime=lambda_.Runtime.PYTHON_3_14, memory_size=256
        ),
        deployment=DeploymentPreference(
            config=deployment_config("linear_10_percent_every_1_minute"),
            pre_traffic_hook=hook,
        ),
    )
    assert fn.deployment is not None
    template = Template.from_stack(stack).to_json()
    (group,) = groups(template).values()
    assert (
        props(group)["DeploymentConfigName"]
        == "CodeDeployDefault.LambdaLinear10PercentEvery1Minute"
    )
    alias = next(iter(of_type(template, "AWS::Lambda::Alias").values()))
    hook_id = stack.get_logical_id(hook.node.default_child)
    assert alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]["BeforeAllowTrafficHook"] == {
        "Ref": hook_id
    }
    role_id = props(group)["ServiceRoleArn"]["Fn::GetAtt"][0]
    assert "ManagedPolicyArns" not in props(template["Resources"][role_id])
    policy = json.dumps(
        [
            p
            for p in of_type(template, "AWS::IAM::Policy").values()
            if {"Ref": role_id} in props(p)["Roles"]
        ]
    )
    assert '"lambda:InvokeFunction"' in policy and hook_id in policy
    with pytest.raises(ValueError, match="deployment config 'fast'"):
        deployment_config("fast")


def test_synth_app_keeps_deployments_for_real_accounts():
    template = Template.from_stack(synth_app("staging")).to_json()
    assert len(groups(template)) == 3


def _references(value: Any) -> set[str]:
    """The logical ids a template value names (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``'s ``${X}``)."""
    if isinstance(value, list):
        return set().union(*(_references(v) for v in value)) if value else set()
    if not isinstance(value, dict):
        return set()
    found: set[str] = set()
    for key, inner in value.items():
        if key == "Ref" and isinstance(inner, str) and not inner.startswith("AWS::"):
            found.add(inner)
        elif key == "Fn::GetAtt":
            found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
        elif key == "Fn::Sub":
            text = inner if isinstance(inner, str) else inner[0]
            found |= {m for m in re.findall(r"\$\{([^}.!]+)", text) if not m.startswith("AWS::")}
            found |= _references(inner[1] if isinstance(inner, list) else [])
        else:
            found |= _references(inner)
    return found


def _waits_for(template: dict[str, Any], logical_id: str) -> set[str]:
    """Every resource CloudFormation creates or updates before ``logical_id``: its DependsOn
    and everything its properties and update policy name, transitively."""
    resources = template["Resources"]
    seen: set[str] = set()
    todo = [logical_id]
    while todo:
        resource = resources[todo.pop()]
        depends = resource.get("DependsOn", [])
        direct = set(as_list(depends)) | _references(
            [resource.get("Properties", {}), resource.get("UpdatePolicy", {})]
        )
        for other in direct & set(resources) - seen:
            seen.add(other)
            todo.append(other)
    return seen


def _policies_of(template: dict[str, Any], role_id: str) -> set[str]:
    return {
        policy_id
        for policy_id, policy in of_type(template, "AWS::IAM::Policy").items()
        if {"Ref": role_id} in props(policy).get("Roles", [])
    }


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_a_shift_cannot_start_before_the_grants_it_needs(template_json, environment):
    """CloudFormation starts CodeDeploy's shift when it updates the alias
    (``UpdatePolicy.CodeDeployLambdaAliasUpdate``). The deployment group's role reads the
    rollback alarms, new with each version; with ``IgnorePollAlarmFailure`` false a deployment
    stops when its alarms cannot be read (AWS::CodeDeploy::DeploymentGroup AlarmConfiguration).
    The pre-traffic hook invokes the new version and reports its status. So every policy of
    both roles is in place before the alias update: the alias waits for each of them."""
    template = template_json[environment]
    for stage, alias_id in alias_ids(template).items():
        alias = template["Resources"][alias_id]
        update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
        group = props(template["Resources"][ref_id(update["DeploymentGroupName"])])
        group_role = ref_id(group["ServiceRoleArn"])
        hook_role = ref_id(
            props(template["Resources"][ref_id(update["BeforeAllowTrafficHook"])])["Role"]
        )
        needed = _policies_of(template, group_role) | _policies_of(template, hook_role)
        assert len(needed) >= 2, f"{stage}: no policies found for the shift's roles"
        assert needed <= _waits_for(template, alias_id), (
            f"{stage}: the shift may start before {sorted(needed - _waits_for(template, alias_id))}"
        )
