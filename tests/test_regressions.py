"""Rollback signals that mean a regression: the real handlers on moto, the real alarms' definitions.

A release rolls back on the errors its code did not expect, counted per version in the EMF metric
``Regressions`` (``lambda_src/pipeline_common/regressions.py``), never on a rejected record, an id
conflict or a throttle. Each test runs prod's handlers through the in-process runner as a new
version, captures the EMF lines they print, and evaluates prod's own rollback alarm, as the
template defines it (namespace, metric, dimensions, statistic, period, threshold), against them.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)

from pipeline_common.regressions import is_regression
from tests.conftest import assembly_of, sample_record, without_retry_waits
from tests.fault_injection import fail_before
from tests.helpers import alias_ids, of_type, props, ref_id

NEW_VERSION = "7"


def client_error(code: str, status: int = 400, reasons: list[str] | None = None) -> ClientError:
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    if reasons is not None:
        response["CancellationReasons"] = [{"Code": r} for r in reasons]
    return ClientError(response, "Operation")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "regression"),
    [
        (client_error("ProvisionedThroughputExceededException"), False),
        (client_error("ThrottlingException"), False),
        (client_error("TransactionConflictException"), False),
        (client_error("InternalServerError", 500), False),
        (client_error("TransactionCanceledException", 400, ["None", "TransactionConflict"]), False),
        (client_error("TransactionCanceledException", 400, ["ThrottlingError", "None"]), False),
        (client_error("TransactionCanceledException", 400, ["ConditionalCheckFailed"]), False),
        (ReadTimeoutError(endpoint_url="https://dynamodb"), False),
        (EndpointConnectionError(endpoint_url="https://dynamodb"), False),
        (client_error("AccessDeniedException"), True),
        (client_error("ResourceNotFoundException"), True),
        (client_error("ValidationException"), True),
        (client_error("TransactionCanceledException", 400, ["ValidationError", "None"]), True),
        (ParamValidationError(report="Missing required parameter"), True),
        (KeyError("category"), True),
    ],
)
def test_what_counts_as_a_regression(error, regression):
    assert is_regression(error) is regression


# --- the real handlers, as a new version -------------------------------------------------------


@pytest.fixture(scope="module")
def prod_assembly(per_record_prod):
    """prod on the per-record path (on the batched path: tests/test_batch_entry.py)."""
    return assembly_of(per_record_prod)


@contextlib.contextmanager
def new_version(prod_assembly, mutate=None) -> Iterator[Any]:
    """prod's handlers on moto, each stage running as version ``NEW_VERSION``."""
    import boto3
    from moto import mock_aws

    from pipeline_tools.runner import AsyncPipeline
    from pipeline_tools.runner.provision import provision
    from pipeline_tools.runner.spec import specs_from_template
    from pipeline_tools.template import StackTemplate, asset_dirs

    directory, name, template = prod_assembly
    template = copy.deepcopy(template)
    if mutate:
        mutate(template, StackTemplate.of(template))
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        physical = provision(template, session)
        specs = {
            stage: dataclasses.replace(spec, version=NEW_VERSION)
            for stage, spec in specs_from_template(
                template, asset_dirs(directory, name), physical
            ).items()
        }
        runner = AsyncPipeline(specs, session.client("sqs"))
        without_retry_waits(runner)
        yield runner


def run_capturing_emf(pipeline, events) -> tuple[list[Any], list[dict[str, Any]]]:
    """Run ``events``; return the outcomes and every EMF blob the handlers printed."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        outcomes = pipeline.run(events)
    blobs = []
    for line in buffer.getvalue().splitlines():
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict) and "_aws" in value:
                blobs.append(value)
    return outcomes, blobs


def rollback_alarm(template: dict[str, Any], stage: str, metric: str) -> dict[str, Any]:
    """The rollback alarm of ``stage``'s deployment group that watches ``metric``."""
    alias = template["Resources"][alias_ids(template)[stage]]
    group = props(
        template["Resources"][
            ref_id(alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]["DeploymentGroupName"])
        ]
    )
    alarms = [
        props(template["Resources"][ref_id(a["Name"])])
        for a in group["AlarmConfiguration"]["Alarms"]
    ]
    (alarm,) = [a for a in alarms if a["MetricName"] == metric]
    return alarm


def resolve(value: Any, template: dict[str, Any]) -> str:
    """A dimension value as CloudFormation resolves it: a literal, or a version's number."""
    if isinstance(value, str):
        return value
    logical_id, attribute = value["Fn::GetAtt"]
    assert template["Resources"][logical_id]["Type"] == "AWS::Lambda::Version"
    assert attribute == "Version"
    return NEW_VERSION


def datapoints(alarm: dict[str, Any], template: dict[str, Any], blobs) -> Counter[int]:
    """The alarm's statistic per period, from the EMF blobs that match its metric exactly."""
    assert alarm["Statistic"] == "Sum"
    wanted = {d["Name"]: resolve(d["Value"], template) for d in alarm["Dimensions"]}
    sums: Counter[int] = Counter()
    for blob in blobs:
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            if directive["Namespace"] != alarm["Namespace"]:
                continue
            for dimension_set in directive["Dimensions"]:
                if set(dimension_set) != set(wanted):
                    continue
                if any(str(blob[d]) != wanted[d] for d in dimension_set):
                    continue
                for metric in directive["Metrics"]:
                    if metric["Name"] == alarm["MetricName"]:
                        period = blob["_aws"]["Timestamp"] // (alarm["Period"] * 1000)
                        values = blob[metric["Name"]]
                        sums[period] += sum(values) if isinstance(values, list) else values
    return sums


def fires(alarm: dict[str, Any], points: Counter[int]) -> bool:
    """GreaterThanThreshold on enough of its periods; missing data does not breach."""
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"
    breaching = sorted(p for p, v in points.items() if v > alarm["Threshold"])
    needed = alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"])
    window = alarm["EvaluationPeriods"]
    return any(
        sum(1 for p in breaching if start <= p < start + window) >= needed for start in breaching
    )


STAGES = ("validator", "enricher", "processor")


def test_rejections_conflicts_and_throttles_emit_no_rollback_signal(prod_assembly):
    """100 malformed records, an id conflict and throttled writes: Lambda counts each failed
    attempt in ``Errors`` (which the previous rollback alarm watched), and none of them is a
    regression."""
    malformed = [{"id": f"bad-{i}", "type": "order"} for i in range(100)]
    original = sample_record(id="conflict-1")
    conflicting = sample_record(id="conflict-1", payload={"total": 1})
    throttled = [sample_record(id=f"throttled-{i}") for i in range(3)]
    throttled_ids = {r["id"] for r in throttled}
    attempts: Counter[str] = Counter()

    def throttle_twice(params: dict[str, Any]) -> bool:
        """The record's put is throttled through two whole invocations (10 in-process attempts
        each), so Lambda retries it twice."""
        if "id" not in params["Item"]:
            return False  # the count marker's put
        put = params["Item"]["id"]["S"]
        attempts[put] += 1
        return put in throttled_ids and attempts[put] <= 2 * 10

    with new_version(prod_assembly) as pipeline:
        fail_before(pipeline.module("processor").dynamodb, "PutItem", throttle_twice)
        first, blobs_first = run_capturing_emf(pipeline, [original])
        outcomes, blobs = run_capturing_emf(pipeline, [*malformed, conflicting, *throttled])
        invocations = dict(pipeline.invocations)
    blobs += blobs_first
    statuses = Counter(o.status for o in outcomes)
    # The test's own arithmetic: 100 rejections (no retries at the validator), the conflict
    # dead-lettered after 3 attempts, each throttled record stored on its third attempt.
    assert statuses == {"dead_lettered": 101, "completed": 3}
    assert first[0].status == "completed"
    lambda_errors = 100 + 3 + 2 * len(throttled)
    successes = (1 + 1 + len(throttled)) + (1 + len(throttled))  # validator, processor
    assert invocations["validator"] + invocations["processor"] - successes == lambda_errors
    template = prod_assembly[2]
    for stage in STAGES:
        alarm = rollback_alarm(template, stage, "Regressions")
        points = datapoints(alarm, template, blobs)
        assert sum(points.values()) == 0, stage
        assert not fires(alarm, points), stage
    # The rejections were counted where operators look for them, so the EMF did arrive.
    rejected = sum(
        sum(b["RecordsRejected"])
        if isinstance(b["RecordsRejected"], list)
        else b["RecordsRejected"]
        for b in blobs
        if "RecordsRejected" in b
    )
    assert rejected == 100 + 3


def test_a_crash_in_the_new_version_fires_its_rollback_alarm(prod_assembly):
    """The enricher's code breaks: every attempt of every record is a regression of version 7,
    and the enricher's rollback alarm fires. The other stages' alarms stay quiet."""
    records = [sample_record(id=f"r-{i}") for i in range(4)]
    with new_version(prod_assembly) as pipeline:
        module = pipeline.functions["enricher"].module

        def broken(record, category, received_at):
            raise KeyError("category")

        module.enrich = broken
        outcomes, blobs = run_capturing_emf(pipeline, records)
    assert {o.status for o in outcomes} == {"dead_lettered"}
    template = prod_assembly[2]
    alarm = rollback_alarm(template, "enricher", "Regressions")
    points = datapoints(alarm, template, blobs)
    retries = 2  # the enricher's MaximumRetryAttempts in the template
    assert sum(points.values()) == len(records) * (1 + retries)
    assert fires(alarm, points)
    for stage in ("validator", "processor"):
        other = rollback_alarm(template, stage, "Regressions")
        assert not fires(other, datapoints(other, template, blobs)), stage


def test_an_access_denied_in_the_new_version_fires_its_rollback_alarm(prod_assembly):
    """The new release's role lost the processor's PutItem (enforced by the runner's IAM, as
    AWS would): AccessDeniedException is the code's or its configuration's fault, a regression."""
    from tests.test_runner import without

    records = [sample_record(id=f"d-{i}") for i in range(2)]
    with new_version(prod_assembly, without("dynamodb:PutItem", "processor")) as pipeline:
        outcomes, blobs = run_capturing_emf(pipeline, records)
    assert all("AccessDeniedException" in (o.error or "") for o in outcomes)
    template = prod_assembly[2]
    alarm = rollback_alarm(template, "processor", "Regressions")
    points = datapoints(alarm, template, blobs)
    assert sum(points.values()) == len(records) * 3
    assert fires(alarm, points)


def test_a_response_that_is_not_json_is_a_regression(prod_assembly):
    """Lambda could not serialise it (Runtime.MarshalError); the stage says so first."""
    with new_version(prod_assembly) as pipeline:
        module = pipeline.functions["processor"].module
        module.asdict = lambda result: {"at": object()}
        (outcome,), blobs = run_capturing_emf(pipeline, [sample_record(id="j-1")])
    assert "not JSON" in (outcome.error or "")
    template = prod_assembly[2]
    alarm = rollback_alarm(template, "processor", "Regressions")
    assert sum(datapoints(alarm, template, blobs).values()) == 3


def test_each_deploy_brings_a_rollback_alarm_with_no_state_of_its_own(tmp_path, monkeypatch):
    """CloudFormation updates an alarm in place when only its metric changes, and
    ``PutMetricAlarm`` keeps an existing alarm's state, so an alarm left in ALARM by the
    previous version would stop the next deployment before any traffic moves. Each rollback
    alarm's ``AlarmName`` names the version, and a changed ``AlarmName`` requires replacement
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-cloudwatch-alarm.html,
    AlarmName: "Update requires: Replacement"): a new alarm, which starts with no state.
    Shown with two synths of prod, the second with a changed handler."""
    import shutil

    from aws_cdk.assertions import Template

    from serverless_stack import lambda_code
    from tests.conftest import ROOT, synth_app

    source = tmp_path / "lambda_src"
    shutil.copytree(ROOT / "lambda_src", source, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(lambda_code, "LAMBDA_SRC", source)
    handler = source / "enricher" / "handler.py"

    def names() -> dict[str, str]:
        template = Template.from_stack(synth_app("prod")).to_json()
        found = {}
        for stage in STAGES:
            for metric in ("Regressions", "Duration"):
                alarm = rollback_alarm(template, stage, metric)
                # The name as CloudFormation resolves it: the version resource it names.
                found[f"{stage}:{metric}"] = json.dumps(alarm["AlarmName"], sort_keys=True)
        return found

    before = names()
    handler.write_text(handler.read_text() + "\n# a new release\n")
    after = names()
    changed = {k for k in before if before[k] != after[k]}
    # The enricher's new version names new alarms; the untouched stages keep theirs.
    assert changed == {"enricher:Regressions", "enricher:Duration"}


def test_the_alarm_topic_lets_the_rollback_alarms_publish(template_json):
    """They notify (a rollback is news, and CT.CLOUDWATCH.PR.1 wants every alarm to act): the
    topic policy must name them, or CloudWatch's publish is refused."""
    template = template_json["prod"]
    (topic_policy,) = of_type(template, "AWS::SNS::TopicPolicy").values()
    text = json.dumps(topic_policy)
    for stage in STAGES:
        for metric in ("Regressions", "Duration"):
            alarm_id = next(
                i
                for i, a in of_type(template, "AWS::CloudWatch::Alarm").items()
                if props(a) == rollback_alarm(template, stage, metric)
            )
            assert json.dumps({"Fn::GetAtt": [alarm_id, "Arn"]}) in text
