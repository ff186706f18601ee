"""The in-process runner behaves like Lambda where a bug could hide: JSON at every boundary,
Lambda's payload limits, its invocation record, and duplicate deliveries."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from pipeline_tools.dead_letters import peek
from pipeline_tools.runner.runner import PayloadTooLarge
from tests.conftest import sample_record, stored_and_counted


def stored(pipeline) -> tuple[list[str], dict[tuple[str, str], int]]:
    client = pipeline.session.client("dynamodb")
    records, counts = stored_and_counted(
        client, pipeline.specs["processor"].environment["TABLE_NAME"]
    )
    return sorted(i["id"]["S"] for i in records), counts


def test_a_response_that_is_not_json_is_a_function_error(pipeline, monkeypatch):
    """A Python handler that returns a datetime fails in Lambda's runtime
    (Runtime.MarshalError); the runner must not pass the object on. (The stages check their own
    responses first, as regressions: test_regressions.py; this handler has no such check.)"""
    function = pipeline.functions["processor"]
    monkeypatch.setattr(function, "handler", lambda event, context: {"at": datetime.now(UTC)})
    (outcome,) = pipeline.run([sample_record()])
    assert outcome.status == "dead_lettered" and outcome.stage == "processor"
    assert "Runtime.MarshalError: Unable to marshal response" in outcome.error
    assert pipeline.invocations["processor"] == 3, "a function error is retried twice"
    (letter,) = peek(pipeline.sqs, pipeline.specs["processor"].dead_letter_queue_url)
    assert "Runtime.MarshalError" in letter.error


def test_stages_see_json_not_python_objects(pipeline, monkeypatch):
    """A tuple returned by one stage arrives at the next as a list, as through Lambda."""
    module = pipeline.functions["enricher"].module
    original = module.enrich
    monkeypatch.setattr(
        module, "enrich", lambda r, c, t: {**original(r, c, t), "payload": {"t": (1, 2)}}
    )
    (outcome,) = pipeline.run([sample_record()])
    assert outcome.status == "completed"
    client = pipeline.session.client("dynamodb")
    (item,) = [
        i
        for i in client.scan(TableName=pipeline.specs["processor"].environment["TABLE_NAME"])[
            "Items"
        ]
        if i["pk"]["S"].startswith("RECORD#")
    ]
    assert json.loads(item["payload"]["S"]) == {"t": [1, 2]}


def test_an_event_over_the_async_payload_limit_is_refused(pipeline):
    """Invoke: "For asynchronous invocations, the maximum payload size is 1 MB"."""
    with pytest.raises(PayloadTooLarge, match="RequestEntityTooLargeException"):
        pipeline.invoke_async(sample_record(payload={"blob": "x" * (1024 * 1024)}))
    with pytest.raises(ValueError, match="not JSON"):
        pipeline.invoke_async(sample_record(payload={"f": float("nan")}))


def test_an_invocation_record_over_the_limit_is_not_delivered(pipeline, monkeypatch):
    module = pipeline.functions["enricher"].module
    monkeypatch.setattr(module, "enrich", lambda r, c, t: {**r, "big": "x" * (1024 * 1024)})
    (outcome,) = pipeline.run([sample_record()])
    assert outcome.status == "lost" and "DestinationDeliveryFailure" in outcome.error
    assert pipeline.metrics["DestinationDeliveryFailures"] == 1
    assert pipeline.invocations["processor"] == 0


def test_the_invocation_record_has_lambdas_shape(pipeline, monkeypatch):
    module = pipeline.functions["enricher"].module

    def fail(record, category, received_at):
        raise RuntimeError("down")

    monkeypatch.setattr(module, "enrich", fail)
    pipeline.run([sample_record()])
    (letter,) = peek(pipeline.sqs, pipeline.specs["enricher"].dead_letter_queue_url)
    event = letter.event
    assert event["version"] == "1.0" and event["timestamp"].endswith("Z")
    context = event["requestContext"]
    assert context["functionArn"] == pipeline.specs["validator"].arn
    assert context["functionArn"].endswith(":live")
    assert (context["condition"], context["approximateInvokeCount"]) == ("Success", 1)
    assert event["responseContext"]["statusCode"] == 200
    assert "executedVersion" in event["responseContext"]
    assert event["responsePayload"]["id"] == sample_record()["id"]
    assert event["requestPayload"] == sample_record()


def test_duplicate_deliveries_at_any_stage_store_and_count_once(dev_assembly):
    """Lambda may deliver an event twice without any error; every stage is redelivered once
    here, and still each record is stored once and counted once."""
    from tests.conftest import pipeline_on_moto

    records = [
        sample_record(id=f"dup-{i}", timestamp=f"2026-11-29T23:{i:02d}:00-01:00") for i in range(5)
    ]
    seen: Counter[tuple[str, str]] = Counter()

    def redeliver(stage: str, event) -> bool:
        key = (stage, json.dumps(event, sort_keys=True))
        seen[key] += 1
        return seen[key] == 1

    with pipeline_on_moto(dev_assembly) as pipeline:
        pipeline.redeliver = redeliver
        outcomes = pipeline.run(records)
        ids, counters = stored(pipeline)
        invocations = dict(pipeline.invocations)
    assert {o.status for o in outcomes} == {"completed"}
    assert ids == sorted(r["id"] for r in records)
    day = datetime.fromisoformat(records[0]["timestamp"]).astimezone(UTC).date().isoformat()
    assert counters == {("order", day): len(records)}
    assert invocations["validator"] == 2 * len(records)
    assert invocations["processor"] >= 4 * len(records), "each enricher delivery, twice"


# --- IAM, enforced from the template ------------------------------------------------------------


def run_with_template(dev_assembly, mutate, events):
    """Run ``events`` through the dev stack's code with a changed copy of its template."""
    import copy

    import boto3
    from moto import mock_aws

    from pipeline_tools.runner import AsyncPipeline
    from pipeline_tools.runner.provision import provision
    from pipeline_tools.runner.spec import specs_from_template
    from pipeline_tools.template import StackTemplate, asset_dirs

    directory, name, template = dev_assembly
    template = copy.deepcopy(template)
    mutate(template, StackTemplate.of(template))
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        physical = provision(template, session)
        specs = specs_from_template(template, asset_dirs(directory, name), physical)
        runner = AsyncPipeline(specs, session.client("sqs"))
        outcomes = runner.run(events)
        letters = peek(runner.sqs, specs["validator"].dead_letter_queue_url)
        return outcomes, runner, letters


def without(action: str, stage: str):
    """A template mutation: ``stage``'s role loses ``action``."""

    def mutate(template, model):
        for policy in template["Resources"].values():
            if policy["Type"] != "AWS::IAM::Policy":
                continue
            if {"Ref": model.stages[stage].role_id} not in policy["Properties"]["Roles"]:
                continue
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = (
                    statement["Action"]
                    if isinstance(statement["Action"], list)
                    else [statement["Action"]]
                )
                statement["Action"] = [a for a in actions if a != action] or ["none:None"]

    return mutate


def test_a_handler_call_the_role_does_not_allow_is_denied_as_aws_would(dev_assembly):
    (outcome,), runner, _ = run_with_template(
        dev_assembly, without("dynamodb:PutItem", "processor"), [sample_record()]
    )
    assert outcome.status == "dead_lettered" and outcome.stage == "processor"
    assert "AccessDeniedException" in outcome.error
    assert "dynamodb:PutItem" in outcome.error
    assert runner.invocations["processor"] == 3


def test_a_destination_the_role_may_not_invoke_drops_the_event(dev_assembly):
    (outcome,), runner, _ = run_with_template(
        dev_assembly, without("lambda:InvokeFunction", "enricher"), [sample_record()]
    )
    assert outcome.status == "lost" and "AccessDenied" in outcome.error
    assert runner.metrics["DestinationDeliveryFailures"] == 1
    assert runner.invocations["processor"] == 0


def test_a_dlq_the_role_may_not_write_to_loses_the_event(dev_assembly):
    (outcome,), runner, letters = run_with_template(
        dev_assembly, without("sqs:SendMessage", "validator"), [{"id": "bad id"}]
    )
    assert outcome.status == "lost" and "DeadLetterErrors" in outcome.error
    assert runner.metrics["DeadLetterErrors"] == 1
    assert letters == []


def test_the_evaluator_follows_iams_order_explicit_deny_allow_implicit_deny():
    from pipeline_tools.runner.iam import RolePolicy, Statement

    table = "arn:aws:dynamodb:us-east-1:123456789012:table/t"
    policy = RolePolicy(
        "role",
        (
            Statement("Allow", ("dynamodb:*",), (table,)),
            Statement("Deny", ("dynamodb:Delete*",), ("*",)),
            Statement("Allow", ("SQS:SendMessage",), ("arn:aws:sqs:*:*:dlq-?",)),
        ),
        {},
    )
    assert policy.allows("dynamodb:GetItem", table)
    assert not policy.allows("dynamodb:DeleteItem", table), "an explicit deny wins"
    assert not policy.allows("dynamodb:GetItem", table + "2"), "no allow: implicitly denied"
    assert policy.allows("sqs:sendmessage", "arn:aws:sqs:us-east-1:1:dlq-a"), "case-insensitive"
    assert not policy.allows("sqs:SendMessage", "arn:aws:sqs:us-east-1:1:dlq-ab")


def test_running_the_deployed_code_leaves_its_asset_untouched(dev_assembly, monkeypatch):
    """The runner imports handlers from the synthesized assets: they are read, never written
    (even where Python would write bytecode, as it does without PYTHONDONTWRITEBYTECODE)."""
    import sys
    from pathlib import Path

    from tests.conftest import pipeline_on_moto

    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    with pipeline_on_moto(dev_assembly) as pipeline:
        pipeline.run([sample_record()])
    for spec in pipeline.specs.values():
        assert not list(Path(spec.code_dir).rglob("__pycache__")), spec.code_dir
