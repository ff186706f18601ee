"""cdk-nag at synth: no unacknowledged finding, and each acknowledgment is needed."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest

from serverless_stack.compliance import ACKNOWLEDGMENTS
from tests.conftest import cdk_context


def synth_report(tmp_path: Path, environment: str, skip: frozenset[str] = frozenset()):
    """Synthesize the real app (cdk-nag attached); return (error or None, validation report)."""
    from app import build_app

    app = cdk.App(context={**cdk_context(), "environment": environment}, outdir=str(tmp_path))
    build_app(app, skip_acknowledgments=skip)
    error = None
    try:
        app.synth()
    except RuntimeError as caught:  # jsii surfaces the validation failure as a RuntimeError
        if not (tmp_path / "validation-report.json").is_file():
            raise  # failed before validation: not what these tests are about
        error = caught
    return error, json.loads((tmp_path / "validation-report.json").read_text())


def violations(report) -> set[tuple[str, str]]:
    return {
        (v["ruleName"], c["constructPath"])
        for plugin in report["pluginReports"]
        for v in plugin["violations"]
        for c in v["violatingConstructs"]
    }


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_every_environment_passes_both_rule_packs(tmp_path, environment):
    error, report = synth_report(tmp_path, environment)
    assert error is None
    assert {p["pluginName"]: p["conclusion"] for p in report["pluginReports"]} == {
        "AwsSolutions": "success",
        "Serverless": "success",
    }
    suppressed = [s for p in report["pluginReports"] for s in p["suppressedViolations"]]
    functions = cdk_context()["pipeline"][environment]["functions"]
    traced = sum(f.get("tracing") == "Active" for f in functions.values())
    # Every acknowledgment is used, but a stage that traces Active has no tracing finding.
    assert len(suppressed) == len(ACKNOWLEDGMENTS) - traced
    assert all(len(s["reason"]) > 80 for s in suppressed), "each acknowledgment explains itself"


@pytest.mark.parametrize("ack", ACKNOWLEDGMENTS, ids=lambda a: a.name)
def test_removing_any_one_acknowledgment_reports_its_finding(tmp_path, ack, stacks):
    """Each acknowledgment is needed: without it, its finding is reported. cdk-nag's
    Serverless-LambdaTracing is a warning (synth goes on, the report names it); every other
    finding here fails synth."""
    environment = "prod"  # where every stage passes its traces through
    error, report = synth_report(tmp_path, environment, skip=frozenset({ack.name}))
    rule_id = ack.rule_in(stacks[environment])
    if rule_id.endswith("Serverless-LambdaTracing"):
        assert error is None
    else:
        assert error is not None and "ValidationFailed" in str(error)
    (found,) = violations(report)
    rule = rule_id.split("::", 1)[1]
    assert found[0] == rule
    stage = ack.name.split("-")[0]
    expected_scope = "DeadLetterQueue" if stage == "dlq" else stage.capitalize()
    assert found[1].startswith(f"DataPipeline-{environment}/{expected_scope}/")


def test_acknowledgments_are_narrow_one_resource_and_one_finding_each(stacks):
    rules = [a.rule_in(stacks["prod"]) for a in ACKNOWLEDGMENTS]
    assert all("::" in r and "*" not in r.split("[")[0] for r in rules)
    assert "AwsSolutions::AwsSolutions-IAM5[Resource::*]" in rules  # the finding, not all of IAM5
    # A wildcard resource is acknowledged only as this function's own qualifiers.
    assert all(r.endswith((".Arn>:*]", "[Resource::*]")) for r in rules if "Resource::" in r)
    assert len({a.name for a in ACKNOWLEDGMENTS}) == len(ACKNOWLEDGMENTS)
