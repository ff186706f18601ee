"""The pipeline stack's templates (dev and prod) fix each failure of the naive stack."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from serverless_stack.stages import BY_NAME
from tests.helpers import (
    STAGES,
    alias_ids,
    as_list,
    function_ids,
    of_type,
    props,
    ref_id,
    role_id,
    role_statements,
    single,
)

EXPECTED_MEMORY = {"validator": 512, "enricher": 768, "processor": 512}
EXPECTED_RETRIES = {"validator": 0, "enricher": 2, "processor": 2}
NEXT_STAGE = {"validator": "enricher", "enricher": "processor", "processor": None}
#: What each stage's code calls (lambda_src/*/handler.py and processor/storage.py).
TABLE_ACTIONS = {
    "validator": (),
    "enricher": ("dynamodb:GetItem",),
    "processor": ("dynamodb:PutItem",),
}
COST_TAGS = ("Environment", "Project", "ManagedBy", "CostCenter")
#: CloudFormation types that take no tags; every other resource must carry the cost tags.
UNTAGGABLE = {
    "AWS::CDK::Metadata",
    "AWS::IAM::Policy",
    "AWS::Lambda::Alias",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Lambda::Version",
    "AWS::Lambda::Permission",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::SNS::Subscription",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
    "AWS::CloudWatch::Dashboard",
}


@pytest.fixture
def template(env_name: str, template_json: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return template_json[env_name]


@pytest.fixture
def per_record(env_name: str, per_record_json: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The environment on the per-record path (prod takes the batched one: its wiring is
    tests/test_batched_stack.py's)."""
    return per_record_json[env_name]


def test_each_stage_has_its_right_sized_memory_and_none_exceeds_1024_mb(template):
    functions = function_ids(template)
    assert sorted(functions) == sorted(STAGES)
    for stage, logical_id in functions.items():
        memory = props(template["Resources"][logical_id])["MemorySize"]
        assert memory == EXPECTED_MEMORY[stage]
        assert memory <= 1024


def test_functions_run_latest_python_on_arm64(template):
    for fn in of_type(template, "AWS::Lambda::Function").values():
        assert props(fn)["Runtime"] == "python3.14"
        assert props(fn)["Architectures"] == ["arm64"]


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_cost_levers_reach_each_function_as_documented(template_json, environment):
    """tracing, log_level, system_log_level and payload_encoding, as cdk.json sets them."""
    from tests.conftest import cdk_context

    settings = cdk_context()["pipeline"][environment]
    template = template_json[environment]
    for stage, fn_id in function_ids(template).items():
        function = props(template["Resources"][fn_id])
        variables = function["Environment"]["Variables"]
        tracing = settings["functions"].get(stage, {}).get("tracing", "PassThrough")
        assert function["TracingConfig"] == {"Mode": tracing}
        # No X-Ray SDK work where Lambda records no trace.
        assert ("POWERTOOLS_TRACE_DISABLED" in variables) == (tracing == "PassThrough")
        logging = function["LoggingConfig"]
        assert logging["LogFormat"] == "JSON"  # log-level filtering needs it
        assert logging["ApplicationLogLevel"] == settings.get("log_level", "INFO")
        assert logging["SystemLogLevel"] == settings.get("system_log_level", "INFO")
        assert variables["POWERTOOLS_LOG_LEVEL"] == logging["ApplicationLogLevel"]
        if stage == "processor":
            assert variables["PAYLOAD_ENCODING"] == settings.get("payload_encoding", "json")


def test_every_function_has_a_live_alias_on_a_published_version_of_itself(template):
    versions = of_type(template, "AWS::Lambda::Version")
    aliases = alias_ids(template)
    assert sorted(aliases) == sorted(STAGES)
    for stage, fn_id in function_ids(template).items():
        alias = props(template["Resources"][aliases[stage]])
        assert alias["Name"] == "live"
        assert ref_id(alias["FunctionName"]) == fn_id
        version_id = ref_id(alias["FunctionVersion"])
        assert version_id in versions, "the alias must point at a published AWS::Lambda::Version"
        assert ref_id(props(versions[version_id])["FunctionName"]) == fn_id


def test_provisioned_concurrency_only_on_the_processor_alias_in_prod(template_json):
    """prod's processor is warm through its alias's scalable target, the one owner of its
    provisioned concurrency (test_aws_rules.py); no alias carries a fixed value."""
    prod, dev = template_json["prod"], template_json["dev"]
    for alias in of_type(prod, "AWS::Lambda::Alias").values():
        assert "ProvisionedConcurrencyConfig" not in props(alias)
    _, target = single(of_type(prod, "AWS::ApplicationAutoScaling::ScalableTarget"))
    assert alias_ids(prod)["processor"] in json.dumps(props(target)["ResourceId"])
    assert props(target)["MinCapacity"] >= 2
    for alias in of_type(dev, "AWS::Lambda::Alias").values():
        assert "ProvisionedConcurrencyConfig" not in props(alias)
    for fn in of_type(dev, "AWS::Lambda::Function").values():
        assert "ProvisionedConcurrencyConfig" not in props(fn)


def test_prod_processor_provisioned_concurrency_auto_scales_on_its_alias(template_json):
    prod = template_json["prod"]
    _, target = single(of_type(prod, "AWS::ApplicationAutoScaling::ScalableTarget"))
    target = props(target)
    assert target["ScalableDimension"] == "lambda:function:ProvisionedConcurrency"
    assert target["MinCapacity"] >= 2
    assert target["MaxCapacity"] >= target["MinCapacity"]
    resource_id = str(target["ResourceId"])
    assert alias_ids(prod)["processor"] in resource_id, "the scalable target must be the alias"
    _, policy = single(of_type(prod, "AWS::ApplicationAutoScaling::ScalingPolicy"))
    tracking = props(policy)["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "LambdaProvisionedConcurrencyUtilization"
    )
    assert 0 < tracking["TargetValue"] <= 0.9
    assert not of_type(template_json["dev"], "AWS::ApplicationAutoScaling::ScalableTarget")


def test_every_function_sends_failed_async_events_to_the_shared_dlq(per_record):
    template = per_record
    queue_id, queue = single(of_type(template, "AWS::SQS::Queue"))
    assert props(queue)["MessageRetentionPeriod"] == 14 * 24 * 3600
    for fn in of_type(template, "AWS::Lambda::Function").values():
        assert ref_id(props(fn)["DeadLetterConfig"]["TargetArn"]) == queue_id


def test_each_alias_async_config_has_retries_event_age_and_next_alias_as_destination(per_record):
    template = per_record
    aliases = alias_ids(template)
    functions = {v: k for k, v in function_ids(template).items()}
    configs = {
        k: v
        for k, v in of_type(template, "AWS::Lambda::EventInvokeConfig").items()
        if ref_id(props(v)["FunctionName"]) in functions  # a stage's (not a deployment hook's)
    }
    assert len(configs) == len(STAGES)
    for config in configs.values():
        config = props(config)
        stage = functions[ref_id(config["FunctionName"])]
        # The qualifier is the live alias (derived from its ARN), never $LATEST.
        assert aliases[stage] in str(config["Qualifier"])
        assert config["MaximumRetryAttempts"] == EXPECTED_RETRIES[stage]
        assert config["MaximumEventAgeInSeconds"] == 3600
        nxt = NEXT_STAGE[stage]
        if nxt is None:
            assert "DestinationConfig" not in config
        else:
            destination = config["DestinationConfig"]["OnSuccess"]["Destination"]
            assert destination == {"Ref": aliases[nxt]}, "destinations must be the next alias"


def test_invoke_permissions_between_stages_name_the_next_alias_only(per_record):
    template = per_record
    aliases = alias_ids(template)
    for stage, nxt in NEXT_STAGE.items():
        invokes = [
            s
            for s in role_statements(template, role_id(template, stage))
            if "lambda:InvokeFunction" in as_list(s["Action"])
        ]
        if nxt is None:
            assert invokes == []
        else:
            assert [as_list(s["Resource"]) for s in invokes] == [[{"Ref": aliases[nxt]}]]


def test_each_function_logs_to_its_own_log_group_kept_seven_days(template):
    groups = of_type(template, "AWS::Logs::LogGroup")
    seen = set()
    for stage, fn_id in function_ids(template).items():
        group_id = ref_id(props(template["Resources"][fn_id])["LoggingConfig"]["LogGroup"])
        assert props(groups[group_id])["RetentionInDays"] == 7
        seen.add(group_id)
        log_statements = [
            s
            for s in role_statements(template, role_id(template, stage))
            if any(str(a).startswith("logs:") for a in as_list(s["Action"]))
        ]
        assert log_statements, f"{stage} must be allowed to write its logs"
        for statement in log_statements:
            assert [ref_id(r) for r in as_list(statement["Resource"])] == [group_id]
    assert len(seen) == len(STAGES)


def test_table_is_on_demand_with_pitr_encryption_and_ttl(template):
    _, table = single(of_type(template, "AWS::DynamoDB::Table"))
    p = props(table)
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in p
    assert p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert p["SSESpecification"]["SSEEnabled"] is True
    assert {k["AttributeName"]: k["KeyType"] for k in p["KeySchema"]} == {
        "pk": "HASH",
        "sk": "RANGE",
    }


def test_prod_table_is_retained_and_deletion_protected_dev_is_disposable(template_json):
    _, prod = single(of_type(template_json["prod"], "AWS::DynamoDB::Table"))
    assert prod["DeletionPolicy"] == "Retain" and prod["UpdateReplacePolicy"] == "Retain"
    assert props(prod)["DeletionProtectionEnabled"] is True
    _, dev = single(of_type(template_json["dev"], "AWS::DynamoDB::Table"))
    assert dev["DeletionPolicy"] == "Delete"
    assert props(dev).get("DeletionProtectionEnabled", False) is False


def test_no_wildcard_actions_and_star_resources_only_where_no_resource_type_exists(template):
    """``*`` only for actions AWS's Service Authorization Reference lists with no resource
    type (X-Ray's trace uploads, CodeDeploy's hook report): for those only ``*`` matches."""
    from pipeline_tools.iam_reference import takes_no_resource_type

    starred = set()
    for policy in of_type(template, "AWS::IAM::Policy").values():
        for statement in props(policy)["PolicyDocument"]["Statement"]:
            actions = as_list(statement["Action"])
            assert all("*" not in a for a in actions), f"wildcard action in {actions}"
            if "*" in as_list(statement["Resource"]):
                starred |= set(actions)
    assert starred and all(takes_no_resource_type(a) for a in starred), starred


def test_roles_have_no_aws_managed_policies(template):
    for role in of_type(template, "AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in props(role)


def test_dynamodb_actions_of_each_role_are_exactly_what_its_code_calls(template):
    table_id, _ = single(of_type(template, "AWS::DynamoDB::Table"))
    for stage in STAGES:
        granted = []
        for statement in role_statements(template, role_id(template, stage)):
            actions = [a for a in as_list(statement["Action"]) if a.startswith("dynamodb:")]
            if actions:
                assert [ref_id(r) for r in as_list(statement["Resource"])] == [table_id]
                granted += actions
        assert sorted(granted) == sorted(TABLE_ACTIONS[stage]), stage
    assert {name: stage.table_actions for name, stage in BY_NAME.items()} == TABLE_ACTIONS


def test_each_role_holds_exactly_the_pairs_its_code_and_lambda_need(per_record):
    """The complete set of (action, resource) pairs per role: nothing extra, nothing missing.
    Written out here from what each stage does, not read from the stack's own constants."""
    template = per_record
    from pipeline_tools.template import StackTemplate

    model = StackTemplate.of(template)
    table = ("Arn", single(of_type(template, "AWS::DynamoDB::Table"))[0])
    queue = ("Arn", single(of_type(template, "AWS::SQS::Queue"))[0])

    def log_group(stage: str) -> tuple[str, str]:
        return ("Arn", ref_id(model.stages[stage].properties["LoggingConfig"]["LogGroup"]))

    def alias(stage: str) -> tuple[str, str]:
        return ("Ref", model.stages[stage].alias_id)

    def lambda_needs(stage: str) -> set[tuple[str, tuple[str, str] | str]]:
        return {
            ("logs:CreateLogStream", log_group(stage)),
            ("logs:PutLogEvents", log_group(stage)),
            ("sqs:SendMessage", queue),
            ("xray:PutTraceSegments", "*"),
            ("xray:PutTelemetryRecords", "*"),
        }

    expected = {
        "validator": lambda_needs("validator") | {("lambda:InvokeFunction", alias("enricher"))},
        "enricher": lambda_needs("enricher")
        | {("lambda:InvokeFunction", alias("processor")), ("dynamodb:GetItem", table)},
        "processor": lambda_needs("processor") | {("dynamodb:PutItem", table)},
    }

    def key(resource) -> tuple[str, str] | str:
        if resource == "*":
            return "*"
        return ("Ref", resource["Ref"]) if "Ref" in resource else ("Arn", ref_id(resource))

    for stage in STAGES:
        pairs = set()
        for statement in model.role_statements(str(model.stages[stage].role_id)):
            assert statement["Effect"] == "Allow" and "Condition" not in statement
            for action in as_list(statement["Action"]):
                for resource in as_list(statement["Resource"]):
                    pairs.add((action, key(resource)))
        assert pairs == expected[stage], (stage, pairs ^ expected[stage])


def test_cost_tags_reach_every_taggable_resource(template, env_name):
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] in UNTAGGABLE:
            continue
        tags = props(resource).get("Tags")
        assert tags is not None, f"{logical_id} ({resource['Type']}) has no tags"
        as_dict = tags if isinstance(tags, dict) else {t["Key"]: t["Value"] for t in tags}
        assert {k: as_dict.get(k) for k in COST_TAGS} == {
            "Environment": env_name,
            "Project": "DataProcessing",
            "ManagedBy": "CDK",
            "CostCenter": "data-platform",
        }, logical_id


def test_dlq_alarm_fires_on_any_visible_message_and_notifies_the_topic(templates, env_name):
    template = templates[env_name]
    topic_id, _ = single(of_type(template.to_json(), "AWS::SNS::Topic"))
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Namespace": "AWS/SQS",
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            "AlarmActions": [{"Ref": topic_id}],
        },
    )


def test_outputs_name_the_table_queue_topic_and_the_live_aliases(per_record):
    template = per_record
    outputs = template["Outputs"]
    aliases = alias_ids(template)
    table_id, _ = single(of_type(template, "AWS::DynamoDB::Table"))
    queue_id, _ = single(of_type(template, "AWS::SQS::Queue"))
    topic_id, _ = single(of_type(template, "AWS::SNS::Topic"))
    assert outputs["IngestFunctionArn"]["Value"] == {"Ref": aliases["validator"]}
    assert outputs["ProcessorFunctionArn"]["Value"] == {"Ref": aliases["processor"]}
    assert outputs["TableName"]["Value"] == {"Ref": table_id}
    assert outputs["DlqUrl"]["Value"] == {"Ref": queue_id}
    assert outputs["AlarmTopicArn"]["Value"] == {"Ref": topic_id}
    # Each stage's log group by name: the groups have generated names, so the runbook's
    # `aws logs tail` reads them from here (never /aws/lambda/<function>, which does not exist).
    for stage in STAGES:
        fn = template["Resources"][function_ids(template)[stage]]
        group_id = ref_id(fn["Properties"]["LoggingConfig"]["LogGroup"])
        output = outputs[f"{stage.capitalize()}LogGroupName"]
        assert output["Value"] == {"Ref": group_id}


def test_stack_name_carries_the_environment(stacks):
    assert {name: stack.stack_name for name, stack in stacks.items()} == {
        "dev": "DataPipeline-dev",
        "staging": "DataPipeline-staging",
        "prod": "DataPipeline-prod",
    }


def test_each_function_asset_holds_only_its_stage_and_the_shared_package(stacks):
    import json
    from pathlib import Path

    import aws_cdk as cdk

    stack = stacks["dev"]
    out = Path(cdk.Stage.of(stack).synth().directory)
    template = json.loads((out / stack.template_file).read_text())
    files = json.loads((out / f"{stack.artifact_id}.assets.json").read_text())["files"]
    for stage, fn_id in function_ids(template).items():
        asset_hash = props(template["Resources"][fn_id])["Code"]["S3Key"].removesuffix(".zip")
        asset_dir = out / files[asset_hash]["source"]["path"]
        assert sorted(p.name for p in asset_dir.iterdir()) == sorted([stage, "pipeline_common"])
        assert not list(asset_dir.rglob("__pycache__"))


def test_powertools_comes_from_its_public_parameter_for_arm64_python314(template_json, env_name):
    template = template_json[env_name]
    for fn_id in function_ids(template).values():  # the stages (a deployment hook has none)
        (layer,) = props(template["Resources"][fn_id])["Layers"]
        parameter = template["Parameters"][ref_id(layer)]
        assert parameter["Type"] == "AWS::SSM::Parameter::Value<String>"
        assert re.fullmatch(
            r"/aws/service/powertools/python/arm64/python3\.14/\d+\.\d+\.\d+",
            parameter["Default"],
        ), parameter


def test_summary_shows_who_owns_provisioned_concurrency_and_the_ttl(template_json):
    from pipeline_tools.summary import summarize

    prod = "\n".join(summarize(template_json["prod"]))
    dev = "\n".join(summarize(template_json["dev"]))
    assert "processor" in prod and "auto-scaled 2-10, 2 scheduled actions" in prod
    assert "TTL on expires_at" in prod
    assert "TTL on expires_at" in dev and "auto-scaled" not in dev
    assert (
        prod.count("deploys with CodeDeploy Canary10Percent5Minutes, rolling back on 2 alarms") == 3
    )
    assert dev.count("deploys with CodeDeploy AllAtOnce, rolling back on 0 alarms") == 3
