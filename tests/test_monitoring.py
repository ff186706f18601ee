"""Monitoring: every alarm watches the right metric of what runs, and notifies the topic."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from tests.conftest import cdk_context, synth_app
from tests.helpers import STAGES, function_ids, of_type, props, single, support_function_id

ALIAS_ALARMS = [
    # metric, statistic field, statistic, threshold (None: from the timeout), stages
    ("Errors", "Statistic", "Sum", 0, ("enricher", "processor")),  # the stages that retry
    ("Throttles", "Statistic", "Sum", 0, STAGES),
    ("Duration", "ExtendedStatistic", "p99", None, STAGES),
]
#: Lambda's async event-queue metrics, alarmed on FunctionName alone (see test_aws_rules.py).
FUNCTION_ALARMS = [
    # the stages with an on-success destination
    ("DestinationDeliveryFailures", "Statistic", "Sum", 0, ("validator", "enricher")),
    ("DeadLetterErrors", "Statistic", "Sum", 0, STAGES),
]
PROCESSOR_ALARMS = [
    ("ProvisionedConcurrencySpilloverInvocations", "Statistic", "Sum", 0),
]


def alarms(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [props(a) for a in of_type(template, "AWS::CloudWatch::Alarm").values()]


def alias_alarm(
    template: dict[str, Any], stage: str, metric: str, *, on_alias: bool = True
) -> dict[str, Any]:
    """The one ``metric`` alarm of ``stage``: on its ``live`` alias, or on the function alone."""
    fn_id = function_ids(template)[stage]
    expected_dims = [{"Name": "FunctionName", "Value": {"Ref": fn_id}}]
    if on_alias:
        expected_dims.append(
            {"Name": "Resource", "Value": {"Fn::Join": ["", [{"Ref": fn_id}, ":live"]]}}
        )
    found = [
        a
        for a in alarms(template)
        if a.get("MetricName") == metric and a.get("Dimensions") == expected_dims
    ]
    where = "live alias" if on_alias else "function"
    assert len(found) == 1, f"{stage}: expected one {metric} alarm on the {where}, found {found}"
    return found[0]


def assert_common(
    template: dict[str, Any], alarm: dict[str, Any], *, periods: int = 1, datapoints: int = 1
) -> None:
    topic_id, _ = single(of_type(template, "AWS::SNS::Topic"))
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    # The defaults: one breaching minute fires (AlarmThresholds: 60 s x 1).
    found = (
        [alarm["Period"]]
        if "Period" in alarm
        else [m["MetricStat"]["Period"] for m in alarm["Metrics"] if "MetricStat" in m]
    )
    assert found and set(found) == {60}, found
    assert alarm["EvaluationPeriods"] == periods
    assert alarm.get("DatapointsToAlarm", 1) == datapoints
    assert alarm["AlarmActions"] == [{"Ref": topic_id}]
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmDescription"]


@pytest.mark.parametrize(
    ("metric", "field", "statistic", "threshold", "stage"),
    [(*alarm[:4], stage) for alarm in ALIAS_ALARMS for stage in alarm[4]],
)
def test_function_alarm_on_the_live_alias(
    template_json, env_name, stage, metric, field, statistic, threshold
):
    template = template_json[env_name]
    alarm = alias_alarm(template, stage, metric)
    assert alarm["Namespace"] == "AWS/Lambda"
    assert alarm[field] == statistic
    timeout = props(template["Resources"][function_ids(template)[stage]])["Timeout"]
    assert alarm["Threshold"] == (timeout * 1000 * 0.8 if threshold is None else threshold)
    if metric == "Throttles":
        # Sustained throttling pages: throttles in 3 of the last 5 minutes, not one throttle.
        assert_common(template, alarm, periods=5, datapoints=3)
    else:
        assert_common(template, alarm)


@pytest.mark.parametrize(
    ("metric", "field", "statistic", "threshold", "stage"),
    [(*alarm[:4], stage) for alarm in FUNCTION_ALARMS for stage in alarm[4]],
)
def test_async_queue_alarm_on_the_function(
    per_record_json, env_name, stage, metric, field, statistic, threshold
):
    """On the per-record path (a queue-fed stage has none: tests/test_batched_stack.py)."""
    template = per_record_json[env_name]
    alarm = alias_alarm(template, stage, metric, on_alias=False)
    assert alarm["Namespace"] == "AWS/Lambda"
    assert alarm[field] == statistic
    assert alarm["Threshold"] == threshold
    assert_common(template, alarm)


@pytest.mark.parametrize(("metric", "field", "statistic", "threshold"), PROCESSOR_ALARMS)
def test_processor_provisioned_concurrency_alarms(
    template_json, env_name, metric, field, statistic, threshold
):
    template = template_json[env_name]
    alarm = alias_alarm(template, "processor", metric)
    assert alarm[field] == statistic
    assert alarm["Threshold"] == threshold
    assert_common(template, alarm)


@pytest.mark.parametrize(
    ("metric", "threshold"),
    [("ApproximateNumberOfMessagesVisible", 0), ("ApproximateAgeOfOldestMessage", 3600)],
)
def test_dead_letter_queue_alarms(template_json, env_name, metric, threshold):
    template = template_json[env_name]
    (queue_id,) = [q for q in of_type(template, "AWS::SQS::Queue") if q.startswith("DeadLetter")]
    (alarm,) = [
        a
        for a in alarms(template)
        if a.get("MetricName") == metric and queue_id in json.dumps(a["Dimensions"])
    ]
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}
    ]
    assert alarm["Statistic"] == "Maximum"
    assert alarm["Threshold"] == threshold
    assert_common(template, alarm)


@pytest.mark.parametrize("metric", ["ThrottledRequests", "SystemErrors"])
def test_table_alarms_sum_every_operation_the_code_calls(template_json, env_name, metric):
    template = template_json[env_name]
    table_id, _ = single(of_type(template, "AWS::DynamoDB::Table"))
    matching = [
        a
        for a in alarms(template)
        if any(
            m.get("MetricStat", {}).get("Metric", {}).get("MetricName") == metric
            for m in a.get("Metrics", [])
        )
    ]
    (alarm,) = matching
    stats = [m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m]
    operations = sorted(
        next(d["Value"] for d in s["Metric"]["Dimensions"] if d["Name"] == "Operation")
        for s in stats
    )
    assert operations == ["GetItem", "PutItem"]
    for stat in stats:
        assert stat["Stat"] == "Sum" and stat["Metric"]["Namespace"] == "AWS/DynamoDB"
        assert {"Name": "TableName", "Value": {"Ref": table_id}} in stat["Metric"]["Dimensions"]
    (expression,) = [m["Expression"] for m in alarm["Metrics"] if "Expression" in m]
    assert expression == "FILL(getitem, 0) + FILL(putitem, 0)"
    assert alarm["Threshold"] == 0
    assert_common(template, alarm)


def test_alarm_count_is_what_the_readme_lists(template_json, per_record_json):
    for env in ("dev", "prod"):
        # Throttles, p99 duration and DLQ writes on each of 3 stages; Errors on the 2 that
        # retry; delivery failures on the 2 with a destination; the processor's spillover;
        # 2 DLQ; 2 table. prod adds the rollback alarms: each stage's new version's errors and
        # p99 duration (test_deployment.py); dev deploys all at once, with none. The count
        # roll-up has errors, throttles, p99 duration and DLQ writes (it retries, and has no
        # destination), and missed runs.
        rollback = 3 * 2 if env == "prod" else 0
        rollup = 5
        expected = 3 * 3 + 2 + 2 + 1 + 2 + 2 + rollback + rollup
        assert len(alarms(per_record_json[env])) == expected
    # prod on the batched path: throttles, p99 duration and Errors (a batch failed whole) on
    # each of 3 stages, no async-queue alarm; the spillover; 2 DLQ; 2 table; the 6 rollback
    # alarms; the roll-up's 5; and an age alarm on each of the 3 stage queues.
    assert len(alarms(template_json["prod"])) == 3 * 3 + 1 + 2 + 2 + 3 * 2 + 5 + 3


def test_no_duplicate_alarms(per_record_json):
    """One failure, one notification: the validator never retries, so each of its errors is a
    DLQ message (``DeadLetterQueueNotEmpty``), and the processor has no destination to fail."""
    template = per_record_json["prod"]
    notifying = [a for a in alarms(template) if a.get("AlarmActions")]
    by_stage = {
        stage: {a["MetricName"] for a in notifying if fn_id in json.dumps(a)}
        for stage, fn_id in function_ids(template).items()
    }
    assert "Errors" not in by_stage["validator"]
    assert "DestinationDeliveryFailures" not in by_stage["processor"]
    assert not any("Utilization" in m for names in by_stage.values() for m in names)


def test_the_dashboard_is_a_setting_and_stays_under_50_metrics(template_json):
    """CloudWatch's dashboard price assumes up to 50 metrics a dashboard
    (https://aws.amazon.com/cloudwatch/pricing/); dev, which sets ``dashboard: false``, has none."""
    assert not of_type(template_json["dev"], "AWS::CloudWatch::Dashboard")
    _, dashboard = single(of_type(template_json["prod"], "AWS::CloudWatch::Dashboard"))
    body = json.dumps(props(dashboard)["DashboardBody"])
    # Each metric of a graph is one entry of "metrics": count the metric names in them.
    metrics = len(re.findall(r'\\"(AWS/Lambda|AWS/SQS|AWS/DynamoDB)\\"', body))
    assert 0 < metrics <= 50, metrics


def test_dashboard_shows_every_stage_queue_and_table(template_json):
    _, dashboard = single(of_type(template_json["prod"], "AWS::CloudWatch::Dashboard"))
    body = json.dumps(props(dashboard)["DashboardBody"])
    for title in (
        "Validator: invocations",
        "Enricher: errors and throttles",
        "Processor: duration p99",
        "Processor: provisioned concurrency utilization",
        "DLQ: visible messages",
        "Table: consumed capacity units",
        "Table: throttled requests",
    ):
        assert title in body, title
    for stage in ("Validator", "Enricher", "Processor"):
        assert f"{stage}: invocations" in body


def test_thresholds_from_config_change_the_alarms():
    settings = copy.deepcopy(cdk_context()["pipeline"])
    settings["dev"]["alarms"] = {
        "duration_p99_timeout_ratio": 0.5,
        "dlq_oldest_message_seconds": 600,
        "evaluation_periods": 3,
    }
    from aws_cdk.assertions import Template

    template = Template.from_stack(synth_app("dev", {"pipeline": settings})).to_json()
    assert alias_alarm(template, "validator", "Duration")["Threshold"] == 30 * 1000 * 0.5
    (age,) = [a for a in alarms(template) if a.get("MetricName") == "ApproximateAgeOfOldestMessage"]
    assert age["Threshold"] == 600
    throttles = [a for a in alarms(template) if a.get("MetricName") == "Throttles"]
    assert {a["EvaluationPeriods"] for a in alarms(template) if a not in throttles} == {3}
    assert {(a["EvaluationPeriods"], a["DatapointsToAlarm"]) for a in throttles} == {(5, 3)}


def test_monitoring_returns_each_stages_alarms_and_leaves_the_function_alone(
    per_record_stacks, stacks
):
    # On the batched path: Errors, throttles and p99 duration on each, the processor's
    # spillover too.
    assert {name: len(alarms) for name, alarms in stacks["prod"].alarms.items()} == {
        "validator": 3,
        "enricher": 3,
        "processor": 4,
    }
    stack = per_record_stacks["prod"]
    assert {name: len(alarms) for name, alarms in stack.alarms.items()} == {
        "validator": 4,
        "enricher": 5,
        "processor": 5,
    }
    # The roll-up's errors, throttles, duration and DLQ delivery, and its missed runs.
    assert [a.node.id for a in stack.rollup_alarms] == [
        "CountRollupErrors",
        "CountRollupThrottles",
        "CountRollupDurationP99",
        "CountRollupDeadLetterErrors",
        "CountRollupNotRunning",
    ]
    # and 6 rollback alarms (the new version's errors and duration, per stage)
    assert len(stack.monitoring.alarms) == 18 + 5 + 6
    assert not hasattr(stack.stages["processor"], "alarms")


def test_any_function_can_be_monitored_with_any_alarm_action():
    """The construct takes a plain function (not an OptimizedFunction) and an injected action."""
    import aws_cdk as cdk
    from aws_cdk import aws_cloudwatch as cloudwatch
    from aws_cdk import aws_cloudwatch_actions as actions
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_sns as sns
    from aws_cdk.assertions import Template

    from constructs_lib.monitoring import PipelineMonitoring

    stack = cdk.Stack(cdk.App(), "Plain")
    fn = lambda_.Function(
        stack,
        "Fn",
        runtime=lambda_.Runtime.PYTHON_3_14,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(e, c): return e"),
        timeout=cdk.Duration.seconds(10),
    )
    topic = sns.Topic(stack, "Topic")
    monitoring = PipelineMonitoring(stack, "M", alarm_action=actions.SnsAction(topic))
    made = monitoring.monitor_function("Plain", fn)
    assert [a.node.id for a in made] == [
        "PlainErrors",
        "PlainThrottles",
        "PlainDurationP99",
        "PlainDeadLetterErrors",
        "PlainDestinationDeliveryFailures",
    ]
    assert all(isinstance(a, cloudwatch.Alarm) for a in made)
    template = Template.from_stack(stack).to_json()
    fn_id = stack.get_logical_id(fn.node.default_child)
    found = [props(a) for a in of_type(template, "AWS::CloudWatch::Alarm").values()]
    (duration,) = [a for a in found if a["MetricName"] == "Duration"]
    assert duration["Threshold"] == 10 * 1000 * 0.8
    assert duration["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": fn_id}}]
    topic_id = stack.get_logical_id(topic.node.default_child)
    assert all(a["AlarmActions"] == [{"Ref": topic_id}] for a in found)


def test_a_roll_up_that_stops_running_pages_within_three_hours(template_json, env_name):
    """The markers live 7 days: a roll-up that silently stops (a disabled rule, a deleted
    target) must page long before. Lambda publishes Invocations only for a function that runs,
    so the alarm counts a period with no data as a missed run (TreatMissingData breaching)."""
    template = template_json[env_name]
    rollup_id = support_function_id(template, "count-rollup")
    (alarm,) = [
        props(a)
        for i, a in of_type(template, "AWS::CloudWatch::Alarm").items()
        if "CountRollupNotRunning" in i
    ]
    assert alarm["MetricName"] == "Invocations" and alarm["Statistic"] == "Sum"
    assert alarm["ComparisonOperator"] == "LessThanThreshold" and alarm["Threshold"] == 1
    assert alarm["TreatMissingData"] == "breaching"
    # Three hourly periods: the schedule's own period, three runs missed.
    (rule,) = [
        props(r)
        for r in of_type(template, "AWS::Events::Rule").values()
        if rollup_id in json.dumps(template["Resources"][props(r)["Targets"][0]["Arn"]["Ref"]])
    ]
    assert rule["ScheduleExpression"] == "rate(1 hour)"
    assert alarm["Period"] == 3600 and alarm["EvaluationPeriods"] == 3
    # On what the schedule invokes: the roll-up's live alias.
    assert alarm["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": rollup_id}},
        {"Name": "Resource", "Value": {"Fn::Join": ["", [{"Ref": rollup_id}, ":live"]]}},
    ]
