"""Rules of real AWS that the emulator does not enforce, each pinned on the dev and prod templates.

moto accepts a topic no alarm may publish to, a fixed provisioned concurrency next to a schedule
that removes it, a 10-second alarm on a one-minute metric and a TTL attribute nobody writes. AWS
does not. Every test here names the rule's source in its docstring, and fails when the template
breaks the rule.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from constructs_lib.powertools_layer import PARAMETER_PREFIX
from serverless_stack.lambda_code import powertools_release
from tests.conftest import assembly_of, pipeline_on_moto
from tests.helpers import (
    alias_ids,
    as_list,
    function_ids,
    of_type,
    props,
    ref_id,
    single,
    support_function_id,
)

ALARM = "AWS::CloudWatch::Alarm"
DAY = 86400


def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: props(v) for k, v in of_type(template, ALARM).items()}


def topic_statements(template: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    topic_id, _ = single(of_type(template, "AWS::SNS::Topic"))
    _, policy = single(of_type(template, "AWS::SNS::TopicPolicy"))
    assert [ref_id(t) for t in props(policy)["Topics"]] == [topic_id]
    return topic_id, props(policy)["PolicyDocument"]["Statement"]


def test_cloudwatch_may_publish_to_the_alarm_topic_for_exactly_this_stacks_alarms(
    template_json, env_name
):
    """An explicit topic policy replaces SNS's default one, so CloudWatch must be allowed to
    publish or every alarm action fails ("not authorized to perform SNS:Publish"): AWS re:Post,
    https://repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger. The service
    principal is scoped with aws:SourceAccount and aws:SourceArn against the confused deputy:
    https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html and the SNS example
    "Allow CloudWatch alarms ... to publish", whose SourceArn is the alarm's ARN:
    https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html."""
    template = template_json[env_name]
    topic_id, statements = topic_statements(template)
    allows = [s for s in statements if s["Effect"] == "Allow"]
    (allow,) = allows
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert as_list(allow["Action"]) == ["sns:Publish"]
    assert ref_id(allow["Resource"]) == topic_id
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source_arns = allow["Condition"]["ArnLike"]["aws:SourceArn"]
    allowed = sorted(a["Fn::GetAtt"][0] for a in source_arns)
    assert all(a["Fn::GetAtt"][1] == "Arn" for a in source_arns)
    notifying = sorted(
        logical_id
        for logical_id, alarm in alarms(template).items()
        if {"Ref": topic_id} in alarm.get("AlarmActions", [])
    )
    # Every alarm notifies, the rollback alarms too (AWS Control Tower's CT.CLOUDWATCH.PR.1
    # requires an action on every alarm, and a rollback is news).
    assert allowed == notifying == sorted(alarms(template)), (
        "every operational alarm notifies the topic, and exactly those alarms may publish to it"
    )


def test_the_alarm_topic_still_refuses_requests_without_tls(template_json, env_name):
    """SNS security best practice: deny sns:Publish when aws:SecureTransport is false
    (https://docs.aws.amazon.com/sns/latest/dg/sns-security-best-practices.html)."""
    topic_id, statements = topic_statements(template_json[env_name])
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Principal"] in ("*", {"AWS": "*"})
    assert "sns:Publish" in as_list(deny["Action"])
    assert ref_id(deny["Resource"]) == topic_id
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_no_alias_has_two_owners_of_its_provisioned_concurrency(template_json, env_name):
    """A fixed ProvisionedConcurrencyConfig on an alias that a schedule scales to 0 makes every
    later CloudFormation update fail with ProvisionedConcurrencyConfigNotFoundException (aws-cdk
    issue 29992), and a redeploy resets an auto-scaled value. The scalable target alone owns it:
    registering it sets the capacity into its range (Application Auto Scaling,
    https://docs.aws.amazon.com/autoscaling/application/APIReference/API_RegisterScalableTarget.html)."""
    template = template_json[env_name]
    targets = [
        props(t) for t in of_type(template, "AWS::ApplicationAutoScaling::ScalableTarget").values()
    ]
    for stage, alias_id in alias_ids(template).items():
        fixed = "ProvisionedConcurrencyConfig" in props(template["Resources"][alias_id])
        scaled = [t for t in targets if alias_id in json.dumps(t["ResourceId"])]
        assert not (fixed and scaled), f"{stage}: fixed provisioned concurrency and a schedule"
        for target in scaled:
            assert target["ScalableDimension"] == "lambda:function:ProvisionedConcurrency"
    assert all(
        any(alias_id in json.dumps(t["ResourceId"]) for alias_id in alias_ids(template).values())
        for t in targets
    ), "every scalable target scales a live alias (provisioned concurrency on $LATEST is unused)"


def test_prod_keeps_the_processor_warm_through_the_scalable_target_alone(template_json):
    template = template_json["prod"]
    alias_id = alias_ids(template)["processor"]
    assert "ProvisionedConcurrencyConfig" not in props(template["Resources"][alias_id])
    _, target = single(of_type(template, "AWS::ApplicationAutoScaling::ScalableTarget"))
    floors = [target["Properties"]["MinCapacity"]] + [
        a["ScalableTargetAction"]["MinCapacity"] for a in props(target)["ScheduledActions"]
    ]
    assert max(floors) >= 2 and all(f == 0 or f >= 2 for f in floors), floors


def alarm_periods(alarm: dict[str, Any]) -> list[int]:
    if "Period" in alarm:
        return [alarm["Period"]]
    return [m["MetricStat"]["Period"] for m in alarm["Metrics"] if "MetricStat" in m]


def test_every_alarm_period_is_a_whole_number_of_minutes(template_json, env_name):
    """Lambda, SQS and DynamoDB publish these metrics at one-minute resolution; a 10, 20 or 30 s
    period never sees data between minutes and is billed as a high-resolution alarm. The
    evaluation range is capped at one day below a one-hour period (PutMetricAlarm, Period and
    EvaluationPeriods: https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html;
    Lambda: "Lambda sends metric data to CloudWatch in 1-minute intervals",
    https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics.html)."""
    for logical_id, alarm in alarms(template_json[env_name]).items():
        periods = alarm_periods(alarm)
        assert periods, logical_id
        for period in periods:
            assert period >= 60 and period % 60 == 0, (logical_id, period)
            limit = 7 * DAY if period >= 3600 else DAY
            assert period * alarm["EvaluationPeriods"] <= limit, logical_id


def test_async_queue_alarms_watch_the_dimension_lambda_documents(per_record_json, env_name):
    """Lambda documents the FunctionName dimension, for every metric, as the aggregate of all
    versions and aliases ("By Function Name",
    https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics.html); it does not document
    which async-queue metrics carry Resource, and an alarm on a dimension set never published
    stays OK for ever. AsyncEventsDropped also counts events that reached the DLQ ("If you
    configure a DLQ or OnFailure destination, events are sent there before being dropped",
    https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html), so it is not
    alarmed beside the DLQ-depth alarm."""
    template = per_record_json[env_name]
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for alarm in alarms(template).values():
        by_metric.setdefault(alarm.get("MetricName", ""), []).append(alarm)
    assert "AsyncEventsDropped" not in by_metric
    functions = function_ids(template) | {"rollup": support_function_id(template, "count-rollup")}
    # Delivery failures only where there is a destination: the validator and the enricher.
    for metric, stages in (
        ("DeadLetterErrors", ("validator", "enricher", "processor", "rollup")),
        ("DestinationDeliveryFailures", ("validator", "enricher")),
    ):
        dimensions = sorted(json.dumps(a["Dimensions"]) for a in by_metric[metric])
        assert dimensions == sorted(
            json.dumps([{"Name": "FunctionName", "Value": {"Ref": functions[stage]}}])
            for stage in stages
        ), metric


def processor_environment(template: dict[str, Any]) -> dict[str, Any]:
    fn = template["Resources"][function_ids(template)["processor"]]
    return dict(props(fn)["Environment"]["Variables"])


def replay_window_seconds(template: dict[str, Any]) -> int:
    """How late a failed record can come back: DLQ retention plus the largest max event age."""
    _, queue = single(of_type(template, "AWS::SQS::Queue"))
    ages = [
        props(c)["MaximumEventAgeInSeconds"]
        for c in of_type(template, "AWS::Lambda::EventInvokeConfig").values()
    ]
    return int(props(queue)["MessageRetentionPeriod"]) + max(ages)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_ttl_attribute_is_written_by_the_runtime_where_items_expire(per_record_stacks, env):
    """DynamoDB deletes an item only when its TTL attribute holds epoch seconds in the past
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/time-to-live-ttl-before-you-start.html):
    a TTL nobody writes deletes nothing. TTL is always on, for the count markers; the
    processor's deployed code, run with the template's own environment, must write the table's
    TTL attribute on each marker, 7 days out, and on the record only with a retention; and
    records must outlive the replay window, or a late redrive would store one twice."""
    assembly = assembly_of(per_record_stacks[env])  # the batched markers: tests/test_counts.py
    template = assembly[2]
    _, table = single(of_type(template, "AWS::DynamoDB::Table"))
    ttl = props(table)["TimeToLiveSpecification"]
    assert ttl["Enabled"] is True
    attribute = ttl["AttributeName"]
    environment = processor_environment(template)
    record = {
        "id": f"ttl-{env}",
        "type": "order",
        "source": "test",
        "timestamp": "2026-11-29T09:15:00Z",
        "payload": {"n": 1},
    }
    with pipeline_on_moto(assembly) as pipeline:
        before = datetime.now(UTC).timestamp()
        assert pipeline.functions["processor"].invoke(record, "r1")["status"] == "stored"
        after = datetime.now(UTC).timestamp()
        client = pipeline.session.client("dynamodb")
        items = [
            i
            for page in client.get_paginator("scan").paginate(
                TableName=pipeline.specs["processor"].environment["TABLE_NAME"]
            )
            for i in page["Items"]
            if record["id"] in json.dumps(i)
        ]
    (item,) = [i for i in items if i["pk"]["S"] == f"RECORD#{record['id']}"]
    (marker,) = [i for i in items if i["pk"]["S"].startswith("MARKER#")]
    assert int(before) + 7 * DAY - 1 <= int(marker[attribute]["N"]) <= int(after) + 7 * DAY
    days = int(environment.get("RECORD_RETENTION_DAYS", 0))
    if not days:
        assert attribute not in item
        return
    assert days * DAY > replay_window_seconds(template)
    expires = int(item[attribute]["N"])
    assert int(before) + days * DAY - 1 <= expires <= int(after) + days * DAY


def test_the_powertools_release_deployed_is_the_release_the_tests_run(template_json, env_name):
    """A layer version number is a shared counter, not a release; Powertools publishes one SSM
    parameter per release (https://docs.aws.amazon.com/powertools/python/latest/#lambda-layer),
    and the template resolves the layer from the one for the release installed here."""
    tested = importlib.metadata.version("aws-lambda-powertools")
    template = template_json[env_name]
    for fn_id in function_ids(template).values():  # the stages (a deployment hook has none)
        (layer,) = props(template["Resources"][fn_id])["Layers"]
        parameter = template["Parameters"][ref_id(layer)]
        assert parameter["Type"] == "AWS::SSM::Parameter::Value<String>"
        assert parameter["Default"].startswith(PARAMETER_PREFIX + "/")
        assert parameter["Default"].rsplit("/", 1)[1] == tested


def test_no_arn_in_the_template_hard_codes_a_partition(template_json, env_name):
    """ARNs differ by partition (aws, aws-cn, aws-us-gov:
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html); every ARN here comes
    from a reference, ``AWS::Partition`` or the Powertools parameter of the deploying region."""
    text = json.dumps(template_json[env_name])
    assert not re.search(r"arn:aws(-[a-z]+)*:", text)


def test_the_pin_file_pins_powertools_once(tmp_path: Path):
    assert re.fullmatch(r"\d+\.\d+\.\d+", powertools_release())
    unpinned = tmp_path / "requirements.txt"
    unpinned.write_text("aws-lambda-powertools>=3\n")
    with pytest.raises(ValueError, match=r"must pin Powertools exactly once.*found 0"):
        powertools_release(unpinned)


def test_a_new_powertools_pin_publishes_a_new_version_of_live(monkeypatch):
    """The layer is part of the function's configuration: a new release must publish a new
    version for ``live`` to point at (``@aws-cdk/aws-lambda:recognizeLayerVersion``), or the
    alias would keep running the old layer."""
    from aws_cdk.assertions import Template

    from serverless_stack import stack as stack_module
    from tests.conftest import synth_app

    def versions(release: str) -> dict[str, str]:
        monkeypatch.setattr(stack_module, "powertools_release", lambda: release)
        template = Template.from_stack(synth_app("dev")).to_json()
        return {
            stage: ref_id(props(template["Resources"][alias_id])["FunctionVersion"])
            for stage, alias_id in alias_ids(template).items()
        }

    current, bumped = versions("3.37.0"), versions("3.38.0")
    assert all(current[stage] != bumped[stage] for stage in current), (current, bumped)
