"""IAM-vs-code: each role grants exactly the AWS API actions its handler's code calls."""

from __future__ import annotations

import copy
import shutil

import pytest

from pipeline_tools.iam_check import UnreadableCall, check, code_actions
from tests.conftest import ROOT
from tests.helpers import function_ids, of_type, props, ref_id, role_id

LAMBDA_SRC = ROOT / "lambda_src"


@pytest.fixture
def src_copy(tmp_path):
    """A throw-away copy of lambda_src to mutate."""
    target = tmp_path / "lambda_src"
    shutil.copytree(LAMBDA_SRC, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def by_stage(results):
    return {r.stage: r for r in results}


def test_code_and_grants_match_for_every_stage(per_record_json, env_name):
    """The per-record path (the batched path's: tests/test_batched_stack.py)."""
    results = by_stage(check(per_record_json[env_name], LAMBDA_SRC))
    assert {s: r.ok for s, r in results.items()} == {
        "validator": True,
        "enricher": True,
        "processor": True,
        "rollup": True,
    }
    assert results["enricher"].code == {"dynamodb:GetItem"}
    # The roll-up reads markers and records, and adds to totals; it never puts or deletes.
    assert results["rollup"].code == {
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:UpdateItem",
    }
    assert results["processor"].code == {"dynamodb:PutItem"}
    assert results["validator"].code == frozenset()


def test_a_new_api_call_without_a_grant_fails(template_json, src_copy):
    handler = src_copy / "processor" / "handler.py"
    handler.write_text(
        handler.read_text()
        + (
            "\n\ndef purge(record_id: str) -> None:\n"
            "    dynamodb.delete_item(TableName=TABLE_NAME, Key={})\n"
        )
    )
    result = by_stage(check(template_json["dev"], src_copy))["processor"]
    assert not result.ok
    assert result.code - result.granted == {"dynamodb:DeleteItem"}
    assert "called but not granted ['dynamodb:DeleteItem']" in result.describe()


def test_a_roll_up_call_without_a_grant_fails_and_so_does_a_grant_it_stops_using(
    template_json, src_copy
):
    """The roll-up is checked like a stage: its package and what it uses of pipeline_common."""
    counts = src_copy / "pipeline_common" / "counts.py"
    text = counts.read_text()
    assert text.count("client.scan,") == 1
    counts.write_text(text.replace("client.scan,", "client.delete_item,"))
    result = by_stage(check(template_json["dev"], src_copy))["rollup"]
    assert not result.ok
    assert result.code - result.granted == {"dynamodb:DeleteItem"}
    assert result.granted - result.code == {"dynamodb:Scan"}


def test_a_new_transaction_item_without_a_grant_fails(template_json, src_copy):
    storage = src_copy / "processor" / "storage.py"
    storage.write_text(
        storage.read_text()
        + (
            "\n\ndef purge(client: Any, table_name: str) -> None:\n"
            "    client.transact_write_items(TransactItems=[\n"
            '        {"Put": {"TableName": table_name, "Item": {}}},\n'
            '        {"Delete": {"TableName": table_name, "Key": {}}},\n'
            "    ])\n"
        )
    )
    result = by_stage(check(template_json["dev"], src_copy))["processor"]
    assert result.code - result.granted == {"dynamodb:DeleteItem"}


def test_a_call_handed_to_the_retry_policy_needs_its_grant(template_json, src_copy):
    """``RETRY.call(deadline, name, dynamodb.delete_item, ...)`` calls DeleteItem as surely as
    ``dynamodb.delete_item(...)`` does."""
    handler = src_copy / "processor" / "handler.py"
    handler.write_text(
        handler.read_text()
        + (
            "\n\ndef purge(deadline: float) -> None:\n"
            '    RETRY.call(deadline, "purge", dynamodb.delete_item, TableName="t", Key={})\n'
        )
    )
    result = by_stage(check(template_json["dev"], src_copy))["processor"]
    assert result.code - result.granted == {"dynamodb:DeleteItem"}


def test_a_grant_the_code_no_longer_needs_fails(template_json, src_copy):
    handler = src_copy / "enricher" / "handler.py"
    handler.write_text(handler.read_text().replace("dynamodb.get_item,", "dict,", 1))
    result = by_stage(check(template_json["dev"], src_copy))["enricher"]
    assert not result.ok
    assert result.granted - result.code == {"dynamodb:GetItem"}


@pytest.mark.parametrize(
    ("change", "expected"), [("add", "dynamodb:Scan"), ("remove", "dynamodb:PutItem")]
)
def test_a_changed_grant_in_the_template_fails(template_json, change, expected):
    template = copy.deepcopy(template_json["dev"])
    role = role_id(template, "processor")
    for policy in of_type(template, "AWS::IAM::Policy").values():
        if role not in {ref_id(r) for r in props(policy)["Roles"]}:
            continue
        for statement in props(policy)["PolicyDocument"]["Statement"]:
            if statement["Action"] == "dynamodb:PutItem":
                statement["Action"] = [statement["Action"]]
            if "dynamodb:PutItem" in statement["Action"]:
                if change == "add":
                    statement["Action"].append(expected)
                else:
                    statement["Action"].remove(expected)
    result = by_stage(check(template, LAMBDA_SRC))["processor"]
    assert not result.ok
    assert (result.granted ^ result.code) == {expected}


def test_lambda_platform_grants_are_not_counted_as_code_actions(template_json):
    """Logs, traces, the DLQ send and the destination invoke are Lambda's own duties, each
    action on its own resource, and excused exactly."""
    template = template_json["dev"]
    validator = by_stage(check(template, LAMBDA_SRC))["validator"]
    assert validator.granted == frozenset()
    fn = props(template["Resources"][function_ids(template)["validator"]])
    assert ref_id(fn["DeadLetterConfig"]["TargetArn"])


def test_a_computed_transaction_is_reported_not_guessed(tmp_path):
    package = tmp_path / "stage"
    package.mkdir()
    (package / "handler.py").write_text(
        "import boto3\nclient = boto3.client('dynamodb')\n"
        "def f(items):\n    client.transact_write_items(TransactItems=items)\n"
    )
    with pytest.raises(UnreadableCall, match="TransactItems must be a literal list"):
        code_actions([package])


def extra_grant(template: dict, stage: str, actions: list[str], resource_of) -> dict:
    """A copy of ``template`` whose ``stage`` role also gets ``actions`` on a resource."""
    template = copy.deepcopy(template)
    role = role_id(template, stage)
    for policy in of_type(template, "AWS::IAM::Policy").values():
        if role in {ref_id(r) for r in props(policy)["Roles"]}:
            props(policy)["PolicyDocument"]["Statement"].append(
                {"Effect": "Allow", "Action": actions, "Resource": resource_of(template)}
            )
            return template
    raise AssertionError(f"no policy on {role}")


@pytest.mark.parametrize(
    ("stage", "actions", "resource"),
    [
        # The processor may also consume and purge the DLQ (its own DLQ: still not excused).
        ("processor", ["sqs:ReceiveMessage", "sqs:PurgeQueue"], "queue"),
        # The validator may also change the enricher's alias (its own destination).
        ("validator", ["lambda:UpdateAlias", "lambda:UpdateFunctionConfiguration"], "alias"),
    ],
)
def test_an_extra_grant_on_the_functions_own_resources_is_reported(
    template_json, stage, actions, resource
):
    from tests.helpers import alias_ids, single

    def resource_of(template):
        if resource == "queue":
            return {"Fn::GetAtt": [single(of_type(template, "AWS::SQS::Queue"))[0], "Arn"]}
        return {"Ref": alias_ids(template)["enricher"]}

    template = extra_grant(template_json["dev"], stage, actions, resource_of)
    result = by_stage(check(template, LAMBDA_SRC))[stage]
    assert not result.ok
    assert result.granted - result.code == set(actions)
