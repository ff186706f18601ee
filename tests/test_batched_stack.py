"""The batched path's template (``ingestion.mode: batched``): a queue in front of each stage,
read by an event source mapping with partial batch responses, and exact IAM.

Each rule is AWS's, cited where the construct applies it (``constructs_lib/stage_queue.py``):
the visibility timeout of six function timeouts plus the batching window, the three actions
Lambda reads a queue with, a window of at least 1 s for a batch over 10.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Template

from constructs_lib.limits import LimitError
from constructs_lib.stage_queue import Batching, StageQueue
from pipeline_tools.iam_check import check
from pipeline_tools.template import ref_id, referenced
from serverless_stack.stages import BY_NAME, STAGE_TABLE
from tests.conftest import ROOT, cdk_context, synth_app

INGESTION = {"mode": "batched", "batch_size": 200, "batching_window_seconds": 2}


def batched(environment: str, **ingestion: Any) -> dict[str, Any]:
    settings = copy.deepcopy(cdk_context()["pipeline"])
    settings[environment]["ingestion"] = {**INGESTION, **ingestion}
    stack = synth_app(environment, {"pipeline": settings})
    return Template.from_stack(stack).to_json()


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, Any]]:
    # prod with a cap on each mapping's concurrent batches, as a user with reserved
    # concurrency sets it, and the mappings' own metrics on; dev on Lambda's own scaling and
    # without them (the default).
    return {
        "dev": batched("dev"),
        "prod": batched("prod", max_concurrency=PROD_MAX_CONCURRENCY, mapping_metrics=True),
    }


PROD_MAX_CONCURRENCY = 20


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def stage_functions(template: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Stage -> (function logical id, properties)."""
    return {
        f["Metadata"]["pipeline:stage"]: (i, f["Properties"])
        for i, f in of_type(template, "AWS::Lambda::Function").items()
        if "pipeline:stage" in f.get("Metadata", {})
    }


def queue_of(template: dict[str, Any], stage: str) -> str:
    """The logical id of the queue whose mapping invokes ``stage``'s live alias."""
    functions = stage_functions(template)
    aliases = {
        i
        for i, a in of_type(template, "AWS::Lambda::Alias").items()
        if ref_id(a["Properties"]["FunctionName"]) == functions[stage][0]
    }
    (queue,) = [
        str(ref_id(m["Properties"]["EventSourceArn"]))
        for m in of_type(template, "AWS::Lambda::EventSourceMapping").values()
        if referenced(m["Properties"]["FunctionName"]) & aliases
    ]
    return queue


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_each_stage_reads_its_own_queue_in_batches_with_partial_responses(templates, env):
    template = templates[env]
    mappings = of_type(template, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == len(STAGE_TABLE)
    entry = queue_of(template, STAGE_TABLE[0].name)
    for mapping in mappings.values():
        p = mapping["Properties"]
        assert p["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert str(p["FunctionName"]).count(":live") == 1  # the alias, never $LATEST
        if ref_id(p["EventSourceArn"]) == entry:  # the entry gathers for the window
            assert p["BatchSize"] == 200 and p["MaximumBatchingWindowInSeconds"] == 2
        else:  # the later stages get packed messages: at once, 10 a batch
            assert p["BatchSize"] == 10 and "MaximumBatchingWindowInSeconds" not in p
    queues = {stage.name: queue_of(template, stage.name) for stage in STAGE_TABLE}
    assert len(set(queues.values())) == len(STAGE_TABLE)  # one queue per stage
    caps = [m["Properties"].get("ScalingConfig") for m in mappings.values()]
    cap = {"MaximumConcurrency": PROD_MAX_CONCURRENCY} if env == "prod" else None
    assert caps == [cap] * len(STAGE_TABLE)  # ingestion.max_concurrency caps every mapping


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_queues_follow_awss_rules_and_redrive_to_the_dlq(templates, env):
    """Visibility timeout = 6 x the function's timeout + the window; SSE-SQS; SSL only; a
    message failing as a whole moves to the pipeline's DLQ after 5 deliveries."""
    template = templates[env]
    functions = stage_functions(template)
    resources = template["Resources"]
    (dlq,) = [
        i
        for i, q in of_type(template, "AWS::SQS::Queue").items()
        if "RedrivePolicy" not in q["Properties"]
        and q["Properties"].get("MessageRetentionPeriod") == 14 * 86400
    ]
    for stage in STAGE_TABLE:
        queue = resources[queue_of(template, stage.name)]["Properties"]
        timeout = functions[stage.name][1]["Timeout"]
        window = 2 if stage == STAGE_TABLE[0] else 0
        assert queue["VisibilityTimeout"] == 6 * timeout + window
        assert queue["SqsManagedSseEnabled"] is True
        assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
        assert ref_id(queue["RedrivePolicy"]["deadLetterTargetArn"]) == dlq


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_stage_runs_its_batch_handler_and_knows_where_records_go(templates, env):
    template = templates[env]
    for stage in STAGE_TABLE:
        _, p = stage_functions(template)[stage.name]
        assert p["Handler"] == f"{stage.name}.handler.batch_handler"
        variables = p["Environment"]["Variables"]
        assert variables["STAGE_RETRIES"] == str(stage.retries)
        assert ref_id(variables["STAGE_QUEUE_URL"]) == queue_of(template, stage.name)
        if stage.next_stage:
            assert ref_id(variables["NEXT_QUEUE_URL"]) == queue_of(template, stage.next_stage)
            assert variables["NEXT_STAGE"] == stage.next_stage
        else:
            assert "NEXT_QUEUE_URL" not in variables
    # No destinations chain the stages on this path: the queues do.
    for config in of_type(template, "AWS::Lambda::EventInvokeConfig").values():
        assert "OnSuccess" not in config["Properties"].get("DestinationConfig", {})


def actions_by_resource(template: dict[str, Any], role_id: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for policy in of_type(template, "AWS::IAM::Policy").values():
        if role_id not in referenced(policy["Properties"]["Roles"]):
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            targets = statement["Resource"]
            for target in targets if isinstance(targets, list) else [targets]:
                key = "*" if target == "*" else str(ref_id(target) or sorted(referenced(target)))
                found[key] |= set(actions if isinstance(actions, list) else [actions])
    return dict(found)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_each_role_holds_exactly_what_the_path_needs_on_each_queue(templates, env):
    """Its own queue: Lambda's three reads, and SendMessage for a record's retry; the next
    stage's queue and the DLQ: SendMessage; nothing else on any queue."""
    template = templates[env]
    queues = set(of_type(template, "AWS::SQS::Queue"))
    for stage in STAGE_TABLE:
        _, p = stage_functions(template)[stage.name]
        role = str(ref_id(p["Role"]))
        on_queues = {k: v for k, v in actions_by_resource(template, role).items() if k in queues}
        dlq = str(ref_id(p["DeadLetterConfig"]["TargetArn"]))
        expected = {
            queue_of(template, stage.name): {
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:SendMessage",
            },
            dlq: {"sqs:SendMessage"},
        }
        if stage.next_stage:
            expected[queue_of(template, stage.next_stage)] = {"sqs:SendMessage"}
        assert on_queues == expected, stage.name


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_grants_match_the_calls_of_the_batched_code(templates, env):
    results = check(templates[env], ROOT / "lambda_src")
    assert all(r.ok for r in results), [r.describe() for r in results if not r.ok]
    by_stage = {r.stage: r.code for r in results}
    for stage in STAGE_TABLE:
        assert "sqs:SendMessage" in by_stage[stage.name]  # the batch entry's sends


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_each_queue_has_an_age_alarm_and_records_enter_by_the_validators_queue(templates, env):
    template = templates[env]
    alarms = of_type(template, "AWS::CloudWatch::Alarm").values()
    ages = [
        a["Properties"]
        for a in alarms
        if a["Properties"].get("MetricName") == "ApproximateAgeOfOldestMessage"
    ]
    watched = {str(ref_id(d["Value"])) for a in ages for d in a["Dimensions"]}
    for stage in STAGE_TABLE:
        assert queue_of(template, stage.name) in {w for w in watched}, stage.name
    stage_ages = [a for a in ages if a["Threshold"] == 300]
    assert len(stage_ages) == len(STAGE_TABLE)
    outputs = template["Outputs"]
    assert "IngestFunctionArn" not in outputs  # there is no per-record entry on this path
    entry = queue_of(template, STAGE_TABLE[0].name)
    assert ref_id(outputs["IngestQueueUrl"]["Value"]) == entry


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_a_batch_failed_whole_alarms_on_every_stage_and_no_async_alarm_is_left(templates, env):
    """An error of a queue-fed function is its mapping's: a batch failed whole, back in the
    queue after its visibility timeout
    (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html). Every
    stage alarms on it, the validator too (its refusals are reported, never raised, on this
    path); the asynchronous queue's ``DeadLetterErrors`` and ``DestinationDeliveryFailures``
    never see a queue's event, so no stage has those alarms."""
    template = templates[env]
    alarms = [a["Properties"] for a in of_type(template, "AWS::CloudWatch::Alarm").values()]
    functions = stage_functions(template)

    def on_stages(metric: str) -> dict[str, list[dict[str, Any]]]:
        """Stage -> its alarms on ``metric`` (a dimension names its function)."""
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for alarm in (a for a in alarms if a.get("MetricName") == metric):
            for stage, (function_id, _) in functions.items():
                if function_id in referenced(alarm["Dimensions"]):
                    found[stage].append(alarm)
        return found

    errors = on_stages("Errors")
    assert set(errors) == {s.name for s in STAGE_TABLE}
    for stage, found in errors.items():
        assert [a["AlarmDescription"] for a in found] == [
            f"{BY_NAME[stage].construct_id}Errors: batches failed whole and return to the "
            "queue: read the stage's log group."
        ]
    assert on_stages("DeadLetterErrors") == {}
    assert on_stages("DestinationDeliveryFailures") == {}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_with_mapping_metrics_each_mapping_alarms_on_its_own_failed_invokes(templates, env):
    """``ingestion.mapping_metrics`` (on in this module's prod, off in dev as by default): each
    mapping's ``MetricsConfig`` names ``EventCount``, without which Lambda sends no
    ``FailedInvokeEventCount``, and one alarm per mapping watches that metric on the mapping's
    own ``EventSourceMappingUUID`` (``Ref`` of a mapping is its UUID,
    https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-lambda-eventsourcemapping.html#aws-resource-lambda-eventsourcemapping-return-values)."""
    template = templates[env]
    on = env == "prod"
    mappings = of_type(template, "AWS::Lambda::EventSourceMapping")
    configs = [m["Properties"].get("MetricsConfig") for m in mappings.values()]
    assert configs == [{"Metrics": ["EventCount"]} if on else None] * len(STAGE_TABLE)
    failed = [
        a["Properties"]
        for a in of_type(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "FailedInvokeEventCount"
    ]
    watched = sorted(str(ref_id(d["Value"])) for a in failed for d in a["Dimensions"])
    assert watched == (sorted(mappings) if on else [])
    for alarm in failed:
        assert [d["Name"] for d in alarm["Dimensions"]] == ["EventSourceMappingUUID"]
        assert (alarm["Namespace"], alarm["Statistic"], alarm["Threshold"]) == (
            "AWS/Lambda",
            "Sum",
            0,
        )
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["AlarmActions"], "the alarm notifies the alarm topic"


def stage_queue(batching: Batching | None = None) -> StageQueue:
    """A ``StageQueue`` in front of a bare function, in a stack of its own."""
    stack = cdk.Stack(cdk.App())
    function = lambda_.Function(
        stack,
        "F",
        code=lambda_.Code.from_inline("def h(e, c): pass"),
        handler="index.h",
        runtime=lambda_.Runtime.PYTHON_3_14,
    )
    return StageQueue(
        stack,
        "Q",
        alias=function,
        role=function.role or iam.Role(stack, "R", assumed_by=iam.AnyPrincipal()),
        timeout=cdk.Duration.seconds(30),
        dead_letter_queue=sqs.Queue(stack, "D"),
        batching=batching,
    )


def test_the_failed_invoke_metric_needs_the_mappings_metrics():
    with pytest.raises(ValueError, match="mapping_metrics=True"):
        stage_queue().metric_failed_invoke_events(cdk.Duration.minutes(1))


def test_the_bill_counts_the_metrics_the_construct_turns_on():
    from constructs_lib.stage_queue import EVENT_COUNT_METRICS
    from pipeline_tools.bill.model import SQS_EVENT_COUNT_METRICS

    assert len(EVENT_COUNT_METRICS) == SQS_EVENT_COUNT_METRICS


def test_a_large_batch_without_a_window_is_refused_naming_the_key():
    from serverless_stack.config import ConfigError, load_config

    settings = copy.deepcopy(cdk_context()["pipeline"])
    settings["dev"]["ingestion"] = {
        "mode": "batched",
        "batch_size": 50,
        "batching_window_seconds": 0,
    }
    with pytest.raises(ConfigError) as caught:
        load_config("dev", settings)
    assert str(caught.value) == (
        "invalid setting pipeline.dev.ingestion.batching_window_seconds = 0: must be at least 1 "
        "for a batch_size over 10 (Lambda's SQS event source rule)"
    )


@pytest.mark.parametrize(
    ("batching", "argument"),
    [
        (Batching(batch_size=0), "batch_size"),
        (Batching(batch_size=10_001, batching_window=cdk.Duration.seconds(1)), "batch_size"),
        (Batching(batch_size=11), "batching_window"),
        (Batching(batching_window=cdk.Duration.seconds(301)), "batching_window"),
        (Batching(max_concurrency=1), "max_concurrency"),
        (Batching(max_receive_count=0), "max_receive_count"),
    ],
)
def test_the_construct_refuses_what_lambda_and_sqs_refuse(batching, argument):
    with pytest.raises(LimitError) as caught:
        stage_queue(batching)
    assert caught.value.argument == argument


def test_the_stage_table_gives_the_retries_the_batched_path_uses():
    """The same retries on both paths: the validator's failures are not retried."""
    assert [BY_NAME[s.name].retries for s in STAGE_TABLE] == [0, 2, 2]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_cfn_lint_finds_nothing_in_the_batched_templates(templates, env, tmp_path):
    import json

    from tests.test_template_linters import _lint

    path = tmp_path / f"DataPipeline-{env}.template.json"
    path.write_text(json.dumps(templates[env]))
    _lint([path])


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_stage_queue_is_encrypted_and_refuses_requests_without_tls(templates, env):
    template = templates[env]
    policies = of_type(template, "AWS::SQS::QueuePolicy").values()
    for stage in STAGE_TABLE:
        queue_id = queue_of(template, stage.name)
        assert template["Resources"][queue_id]["Properties"]["SqsManagedSseEnabled"] is True
        denies = [
            s
            for p in policies
            if queue_id in {ref_id(q) for q in p["Properties"]["Queues"]}
            for s in p["Properties"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny"
            and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert denies, f"{queue_id} must refuse requests without TLS"


def test_a_letter_from_before_the_switch_redrives_to_the_stage_it_was_going_to(templates):
    """An environment that switches to the batched path may hold letters of the per-record
    path in its DLQ: an asynchronous invocation record, whose ``requestContext.functionArn`` is
    the stage that succeeded (Lambda's destination record,
    https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html). Its
    redrive goes to the queue of the stage after that one; a bare record to the entry's."""
    from pipeline_tools.stage_queues import queue_pipeline

    template = templates["prod"]
    functions = stage_functions(template)
    physical = {
        **{queue_of(template, s.name): f"https://sqs/{s.name}" for s in STAGE_TABLE},
        **{i: f"DataPipeline-prod-{stage}-fn" for stage, (i, _) in functions.items()},
    }
    pipeline, urls = queue_pipeline(template, physical, "https://sqs/dlq")
    assert urls == {s.name: f"https://sqs/{s.name}" for s in STAGE_TABLE}
    record = {"id": "r1", "type": "order"}
    letter = {
        "requestContext": {
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:"
            "DataPipeline-prod-validator-fn:live",
            "condition": "Success",
        },
        "requestPayload": record,
        "responsePayload": record,
    }
    assert pipeline.failed_stage(letter) == "enricher"
    assert pipeline.failed_stage(record) == "validator"
