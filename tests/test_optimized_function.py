"""`OptimizedFunction` alone, in a bare stack: each argument's effect, and each rejection."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs

from constructs_lib.optimized_function import (
    OptimizedFunction,
    ProvisionedConcurrencyScaling,
    ScheduledCapacity,
)
from tests.helpers import as_list, of_type, props, ref_id, role_statements, single

CODE = lambda_.Code.from_inline("def handler(event, context):\n    return event\n")


#: The construct's own arguments; everything else is a ``lambda_.FunctionProps`` prop.
OWN_ARGUMENTS = {"provisioned_concurrency", "log_retention", "log_encryption_key", "deployment"}


def make(stack: cdk.Stack, construct_id: str, **overrides: Any) -> OptimizedFunction:
    arguments: dict[str, Any] = {
        "code": CODE,
        "handler": "index.handler",
        "runtime": lambda_.Runtime.PYTHON_3_14,
        "memory_size": 512,
        **overrides,
    }
    function_props = {
        k: v for k, v in arguments.items() if k not in OWN_ARGUMENTS and v is not None
    }
    own = {k: v for k, v in arguments.items() if k in OWN_ARGUMENTS}
    return OptimizedFunction(
        stack, construct_id, function_props=lambda_.FunctionProps(**function_props), **own
    )


@pytest.fixture(scope="module")
def built() -> tuple[dict[str, Any], dict[str, OptimizedFunction]]:
    """One bare stack holding a default function, a fully customised one with a fixed
    provisioned concurrency, and one whose provisioned concurrency auto-scales; synthesized
    once."""
    stack = cdk.Stack(cdk.App(), "Bare")
    shared = sqs.Queue(stack, "Existing")
    functions = {
        "default": make(stack, "Default"),
        "custom": make(
            stack,
            "Custom",
            memory_size=1024,
            timeout=cdk.Duration.seconds(60),
            environment={"MODE": "custom"},
            architecture=lambda_.Architecture.X86_64,
            provisioned_concurrency=3,
            reserved_concurrent_executions=10,
            dead_letter_queue=shared,
            retry_attempts=1,
            max_event_age=cdk.Duration.hours(2),
            log_retention=logs.RetentionDays.TWO_WEEKS,
            tracing=lambda_.Tracing.ACTIVE,
            # any other lambda.Function prop passes through
            ephemeral_storage_size=cdk.Size.mebibytes(1024),
            environment_encryption=kms.Key(stack, "EnvironmentKey"),
        ),
        "scaled": make(
            stack,
            "Scaled",
            provisioned_concurrency=ProvisionedConcurrencyScaling(
                min_capacity=3,
                max_capacity=6,
                utilization_target=0.5,
                schedule=(
                    ScheduledCapacity("BusinessHours", "0 8 ? * MON-FRI *", 3, 6),
                    ScheduledCapacity(
                        "Night", "0 20 ? * MON-FRI *", 0, 0, time_zone="Europe/Berlin"
                    ),
                ),
            ),
            reserved_concurrent_executions=6,
        ),
    }
    return cdk.assertions.Template.from_stack(stack).to_json(), functions


def resource(template: dict[str, Any], construct: Any) -> dict[str, Any]:
    return template["Resources"][
        cdk.Stack.of(construct).get_logical_id(construct.node.default_child)
    ]


def test_defaults_are_the_documented_ones(built):
    template, fns = built
    fn = props(resource(template, fns["default"].function))
    assert fn["Runtime"] == "python3.14"
    assert fn["Architectures"] == ["arm64"]
    assert fn["Timeout"] == 30
    assert fn["MemorySize"] == 512
    # the settings' default too: Active traces nearly every invocation at low volume
    assert fn["TracingConfig"] == {"Mode": "PassThrough"}
    assert fn["LoggingConfig"]["LogFormat"] == "JSON"
    assert "ReservedConcurrentExecutions" not in fn
    alias = props(resource(template, fns["default"].alias))
    assert alias["Name"] == "live" and "ProvisionedConcurrencyConfig" not in alias


def test_default_dlq_is_its_own_encrypted_ssl_only_queue_kept_14_days(built):
    template, fns = built
    queue_id = cdk.Stack.of(fns["default"]).get_logical_id(
        fns["default"].dead_letter_queue.node.default_child
    )
    queue = props(template["Resources"][queue_id])
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["MessageRetentionPeriod"] == 1209600
    fn = props(resource(template, fns["default"].function))
    assert ref_id(fn["DeadLetterConfig"]["TargetArn"]) == queue_id
    policies = [
        p
        for p in of_type(template, "AWS::SQS::QueuePolicy").values()
        if any(ref_id(q) == queue_id for q in props(p)["Queues"])
    ]
    (policy,) = policies
    (statement,) = props(policy)["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_default_log_group_keeps_a_week_and_is_the_functions_log_group(built):
    template, fns = built
    group_id = cdk.Stack.of(fns["default"]).get_logical_id(
        fns["default"].log_group.node.default_child
    )
    assert props(template["Resources"][group_id])["RetentionInDays"] == 7
    fn = props(resource(template, fns["default"].function))
    assert ref_id(fn["LoggingConfig"]["LogGroup"]) == group_id


def test_role_has_no_managed_policy_and_logs_only_to_its_own_group(built):
    template, fns = built
    for name, construct in fns.items():
        role_id = cdk.Stack.of(construct).get_logical_id(construct.role.node.default_child)
        assert "ManagedPolicyArns" not in props(template["Resources"][role_id])
        group_id = cdk.Stack.of(construct).get_logical_id(construct.log_group.node.default_child)
        statements = role_statements(template, role_id)
        logs_statements = [
            s for s in statements if str(as_list(s["Action"])[0]).startswith("logs:")
        ]
        assert len(logs_statements) == 1, name
        assert sorted(as_list(logs_statements[0]["Action"])) == [
            "logs:CreateLogStream",
            "logs:PutLogEvents",
        ]
        assert ref_id(logs_statements[0]["Resource"]) == group_id
        assert not any(
            s["Action"] == "dynamodb:*" or "dynamodb" in str(s["Action"]) for s in statements
        )


def test_default_async_config_on_the_alias_retries_twice_for_an_hour(built):
    template, fns = built
    alias_id = cdk.Stack.of(fns["default"]).get_logical_id(fns["default"].alias.node.default_child)
    configs = [
        props(c)
        for c in of_type(template, "AWS::Lambda::EventInvokeConfig").values()
        if alias_id in str(c["Properties"]["Qualifier"])
    ]
    assert [(c["MaximumRetryAttempts"], c["MaximumEventAgeInSeconds"]) for c in configs] == [
        (2, 3600)
    ]


def test_custom_arguments_reach_the_template(built):
    template, fns = built
    custom = fns["custom"]
    fn = props(resource(template, custom.function))
    assert fn["MemorySize"] == 1024
    assert fn["Timeout"] == 60
    assert fn["Architectures"] == ["x86_64"]
    assert fn["Environment"]["Variables"] == {"MODE": "custom"}
    assert fn["ReservedConcurrentExecutions"] == 10
    assert fn["TracingConfig"] == {"Mode": "Active"}
    assert fn["EphemeralStorage"] == {"Size": 1024}
    assert ref_id(fn["KmsKeyArn"]).startswith("EnvironmentKey")
    existing_id = cdk.Stack.of(custom).get_logical_id(custom.dead_letter_queue.node.default_child)
    assert existing_id.startswith("Existing")
    assert ref_id(fn["DeadLetterConfig"]["TargetArn"]) == existing_id
    group = props(resource(template, custom.log_group))
    assert group["RetentionInDays"] == 14
    alias = props(resource(template, custom.alias))
    assert alias["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 3}
    alias_id = cdk.Stack.of(custom).get_logical_id(custom.alias.node.default_child)
    (config,) = [
        props(c)
        for c in of_type(template, "AWS::Lambda::EventInvokeConfig").values()
        if alias_id in str(c["Properties"]["Qualifier"])
    ]
    assert (config["MaximumRetryAttempts"], config["MaximumEventAgeInSeconds"]) == (1, 7200)


def test_auto_scaling_and_schedule_sit_on_the_alias_and_alone_own_its_concurrency(built):
    template, fns = built
    _, target = single(of_type(template, "AWS::ApplicationAutoScaling::ScalableTarget"))
    target = props(target)
    alias_id = cdk.Stack.of(fns["scaled"]).get_logical_id(fns["scaled"].alias.node.default_child)
    assert alias_id in str(target["ResourceId"])
    assert "ProvisionedConcurrencyConfig" not in props(resource(template, fns["scaled"].alias))
    assert (target["MinCapacity"], target["MaxCapacity"]) == (3, 6)
    actions = {a["ScheduledActionName"]: a for a in target["ScheduledActions"]}
    assert actions["BusinessHours"]["Schedule"] == "cron(0 8 ? * MON-FRI *)"
    assert actions["BusinessHours"]["ScalableTargetAction"] == {"MinCapacity": 3, "MaxCapacity": 6}
    assert actions["Night"]["Timezone"] == "Europe/Berlin"
    _, policy = single(of_type(template, "AWS::ApplicationAutoScaling::ScalingPolicy"))
    assert props(policy)["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 0.5


def test_attributes_are_exposed_for_wiring(built):
    _, fns = built
    fn = fns["default"]
    assert fn.alias.alias_name == "live"
    assert fn.version.node.path == fn.function.current_version.node.path
    assert fn.scalable_target is None and fns["custom"].scalable_target is None
    assert fns["scaled"].scalable_target is not None
    assert not hasattr(fn, "alarms")  # monitoring returns alarms; it never mutates this


REJECTIONS = [
    ({"memory_size": 127}, "memory_size must be from 128 to 10240 MB, got 127"),
    ({"memory_size": 10241}, "memory_size must be from 128 to 10240 MB, got 10241"),
    ({"memory_size": None}, "memory_size is required: size it from Max Memory Used"),
    ({"timeout": cdk.Duration.seconds(901)}, "timeout must be from 1 to 900 seconds"),
    ({"retry_attempts": 3}, "retry_attempts must be from 0 to 2, got 3"),
    ({"max_event_age": cdk.Duration.seconds(30)}, "max_event_age must be from 60 to 21600"),
    ({"max_event_age": cdk.Duration.hours(7)}, "max_event_age must be from 60 to 21600"),
    ({"provisioned_concurrency": -1}, "provisioned_concurrency must be from 0 to 1000, got -1"),
    (
        {"provisioned_concurrency": 5, "reserved_concurrent_executions": 3},
        "reserved_concurrent_executions must be from 5 to 1000, got 3",
    ),
    (
        {
            "provisioned_concurrency": ProvisionedConcurrencyScaling(2, 8),
            "reserved_concurrent_executions": 4,
        },
        "reserved_concurrent_executions must be from 8 to 1000, got 4",
    ),
    ({"logging_format": lambda_.LoggingFormat.TEXT}, "logging_format must be JSON"),
    ({"role": "given"}, "role is not taken: the construct makes a least-privilege role"),
]


def test_a_log_group_of_the_callers_is_refused_naming_what_to_use_instead():
    stack = cdk.Stack(cdk.App(), "Owned")
    group = logs.LogGroup(stack, "Theirs")
    with pytest.raises(ValueError, match="log_group is not taken: the construct makes the log"):
        make(stack, "Fn", log_group=group)


SCALING_REJECTIONS = [
    (
        lambda: ProvisionedConcurrencyScaling(3, 2),
        "auto_scaling.max_capacity must be from 3 to 1000",
    ),
    (
        lambda: ProvisionedConcurrencyScaling(2, 4, 0.95),
        "auto_scaling.utilization_target must be from 0.1 to 0.9, got 0.95",
    ),
    (
        lambda: ScheduledCapacity("Bad", "0 8 * * *", 1, 2),
        "auto_scaling.schedule['Bad'].cron is not valid: needs six fields",
    ),
    (
        lambda: ScheduledCapacity("Late", "0 25 ? * MON-FRI *", 1, 2),
        "hour value '25' is out of range 0-23",
    ),
    (
        lambda: ScheduledCapacity("Fun", "0 8 ? * FUNDAY *", 1, 2),
        "day-of-week value 'FUNDAY' is out of range",
    ),
    (
        lambda: ScheduledCapacity("Both", "0 8 1 * MON *", 1, 2),
        "exactly one of day-of-month and day-of-week must be '?'",
    ),
    (
        lambda: ScheduledCapacity("Mars", "0 8 ? * MON *", 1, 2, time_zone="Mars/Olympus"),
        "time_zone must be an IANA time zone",
    ),
    (
        lambda: ProvisionedConcurrencyScaling(
            1, 2, schedule=(ScheduledCapacity("A", "0 8 ? * MON *", 1, 2),) * 2
        ),
        "auto_scaling.schedule must give each action a unique name",
    ),
]


@pytest.mark.parametrize(("build", "message"), SCALING_REJECTIONS)
def test_invalid_scaling_is_rejected_where_it_is_built(build, message):
    with pytest.raises(ValueError) as caught:
        build()
    assert message in str(caught.value)


@pytest.mark.parametrize(("overrides", "message"), REJECTIONS)
def test_invalid_arguments_are_rejected_naming_the_argument(overrides, message):
    stack = cdk.Stack(cdk.App(), "Rejects")
    with pytest.raises(ValueError) as caught:
        make(stack, "Fn", **overrides)
    assert message in str(caught.value)


def test_arguments_after_scope_and_id_are_keyword_only():
    with pytest.raises(TypeError):
        OptimizedFunction(  # type: ignore[misc]
            cdk.Stack(cdk.App(), "Positional"),
            "Fn",
            lambda_.FunctionProps(code=CODE, handler="h", runtime=lambda_.Runtime.PYTHON_3_14),
        )


def test_a_scheduled_function_is_invoked_through_its_alias_on_its_schedule():
    """EventBridge invokes the target asynchronously
    (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-run-lambda-schedule.html), so
    the alias's async config (retries, event age, DLQ) applies to each run."""
    from aws_cdk import aws_events as events
    from aws_cdk.assertions import Template

    from constructs_lib.scheduled_function import ScheduledFunction

    stack = cdk.Stack(cdk.App(), "Scheduled")
    scheduled = ScheduledFunction(
        stack,
        "Job",
        function_props=lambda_.FunctionProps(
            runtime=lambda_.Runtime.PYTHON_3_14, handler="index.handler", code=CODE
        ),
        schedule=events.Schedule.rate(cdk.Duration.hours(1)),
    )
    template = Template.from_stack(stack).to_json()
    _, fn = single(of_type(template, "AWS::Lambda::Function"))
    assert props(fn)["MemorySize"] == 256 and props(fn)["Timeout"] == 300
    _, rule = single(of_type(template, "AWS::Events::Rule"))
    assert props(rule)["ScheduleExpression"] == "rate(1 hour)"
    alias_id, alias = single(of_type(template, "AWS::Lambda::Alias"))
    assert props(alias)["Name"] == "live"
    assert [ref_id(t["Arn"]) for t in props(rule)["Targets"]] == [alias_id]
    # EventBridge may invoke the alias, and nothing else.
    (permission,) = [
        props(p)
        for p in of_type(template, "AWS::Lambda::Permission").values()
        if props(p)["Principal"] == "events.amazonaws.com"
    ]
    assert ref_id(permission["FunctionName"]) == alias_id
    assert scheduled.rule is not None and scheduled.role is scheduled.handler.role
