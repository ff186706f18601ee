"""cdk-nag at synth: no unacknowledged finding, and each acknowledgment is needed."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest

from serverless_stack.compliance import ACKNOWLEDGMENTS
from serverless_stack.control_tower import CONTROL_TOWER_EXEMPTIONS
from tests.conftest import cdk_context


def synth_report(
    tmp_path: Path,
    environment: str,
    skip: frozenset[str] = frozenset(),
    settings: dict | None = None,
):
    """Synthesize the real app (cdk-nag attached), with ``settings`` over the environment's
    block of cdk.json; return (error or None, validation report)."""
    from app import build_app

    context = cdk_context()
    context["pipeline"] = {
        **context["pipeline"],
        environment: {**context["pipeline"].get(environment, {}), **(settings or {})},
    }
    app = cdk.App(context={**context, "environment": environment}, outdir=str(tmp_path))
    build_app(app, skip_acknowledgments=skip)
    error = None
    try:
        app.synth()
    except RuntimeError as caught:  # jsii surfaces the validation failure as a RuntimeError
        if not (tmp_path / "validation-report.json").is_file():
            raise  # failed before validation: not what these tests are about
        error = caught
    return error, json.loads((tmp_path / "validation-report.json").read_text())


#: The validation report's plugin for the app's own warnings (``Annotations.add_warning_v2``),
#: which CDK lists beside the rule packs.
ANNOTATIONS_PLUGIN = "Construct Annotations"


def violations(report) -> set[tuple[str, str]]:
    """The rule packs' findings (the app's own warnings aside: ``annotations``)."""
    return {
        (v["ruleName"], c["constructPath"])
        for plugin in report["pluginReports"]
        if plugin["pluginName"] != ANNOTATIONS_PLUGIN
        for v in plugin["violations"]
        for c in v["violatingConstructs"]
    }


def annotations(report) -> set[str]:
    """The app's own warnings in the validation report, by id."""
    return {
        v["ruleName"]
        for plugin in report["pluginReports"]
        if plugin["pluginName"] == ANNOTATIONS_PLUGIN
        for v in plugin["violations"]
    }


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_every_environment_passes_both_rule_packs(tmp_path, environment, stacks):
    error, report = synth_report(tmp_path, environment)
    assert error is None
    # AWS Control Tower's plugin ran too (test_each_control_tower_exemption_is_needed shows
    # it failing synth); a plugin with no finding and no acknowledgment is left out of the
    # report.
    assert {
        p["pluginName"]: p["conclusion"]
        for p in report["pluginReports"]
        if p["pluginName"] != ANNOTATIONS_PLUGIN
    } == {"AwsSolutions": "success", "Serverless": "success"}
    # cdk.json ships no alarm subscriber: staging's and prod's report says so, dev's does not.
    warned = {"Annotation::pipeline:no-alarm-subscriber"} if environment != "dev" else set()
    assert annotations(report) == warned
    suppressed = [s for p in report["pluginReports"] for s in p.get("suppressedViolations", [])]
    # Every acknowledgment that applies is used (a stage that traces Active has no tracing
    # finding, and only prod's auto-scaled processor has a scaling pause).
    assert len(suppressed) == sum(a.applies(stacks[environment]) for a in ACKNOWLEDGMENTS)
    assert all(len(s["reason"]) > 80 for s in suppressed), "each acknowledgment explains itself"


@pytest.mark.parametrize("ack", ACKNOWLEDGMENTS, ids=lambda a: a.name)
def test_removing_any_one_acknowledgment_reports_its_finding(tmp_path, ack, stacks):
    """Each acknowledgment is needed: without it, its finding is reported. cdk-nag's
    Serverless-LambdaTracing is a warning (synth goes on, the report names it); every other
    finding here fails synth."""
    environment = "prod"  # where every stage passes its traces through
    if not ack.applies(stacks[environment]):
        pytest.skip(f"{ack.name} does not arise with prod's settings")
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
    expected_scope = {"dlq": "DeadLetterQueue", "count": "CountRollup"}.get(
        stage, stage.capitalize()
    )
    if "mapping" in ack.name:  # the stage queue's event source mapping
        expected_scope += "Queue"
    if "scaling-pause" in ack.name or "release-hook" in ack.name:
        pauses = stage in stacks[environment].scaling_pauses
        expected_scope += "ScalingPause" if pauses else "ReleaseProbe"
    assert found[1].startswith(f"DataPipeline-{environment}/{expected_scope}/")


def test_acknowledgments_are_narrow_one_resource_and_one_finding_each(stacks):
    rules = [a.rule_in(stacks["prod"]) for a in ACKNOWLEDGMENTS]
    assert all("::" in r and "*" not in r.split("[")[0] for r in rules)
    assert "AwsSolutions::AwsSolutions-IAM5[Resource::*]" in rules  # the finding, not all of IAM5
    # A wildcard resource is acknowledged only as X-Ray's "*", a function's own qualifiers, or
    # the account's scalable targets (each with its reason).
    assert all(
        r.endswith((".Arn>:*]", "[Resource::*]", ":scalable-target/*]"))
        for r in rules
        if "Resource::" in r
    )
    assert len({a.name for a in ACKNOWLEDGMENTS}) == len(ACKNOWLEDGMENTS)


def test_an_account_that_enforces_the_log_controls_sets_them_and_needs_no_acknowledgment(
    tmp_path,
):
    """CT.CLOUDWATCH.PR.2 and PR.3 are settings: a year of logs and a customer-managed key. Set,
    the controls pass with no acknowledgment; the key reaches every log group."""
    import copy

    from app import build_app

    settings = copy.deepcopy(cdk_context()["pipeline"])
    key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    settings["prod"] = {**settings["prod"], "log_retention_days": 365, "log_kms_key_arn": key}
    context = {**cdk_context(), "environment": "prod", "pipeline": settings}
    app = cdk.App(context=context, outdir=str(tmp_path))
    build_app(app)
    assembly = app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    assert {p["conclusion"] for p in report["pluginReports"]} == {"success"}
    assert "cdk-validator-cfnguard" not in {p["pluginName"] for p in report["pluginReports"]}
    from serverless_stack.config import load_config
    from serverless_stack.control_tower import control_tower_exemptions

    exempt = {e.rule for e in control_tower_exemptions(load_config("prod", settings))}
    assert exempt == {"ct-lambda-pr-3", "ct-sqs-pr-1"}, "the log controls are enforced and met"
    template = assembly.get_stack_by_name("DataPipeline-prod").template
    groups = [r for r in template["Resources"].values() if r["Type"] == "AWS::Logs::LogGroup"]
    assert len(groups) == 7  # the three stages', their three release hooks' and the roll-up's
    assert all(g["Properties"]["RetentionInDays"] == 365 for g in groups)
    assert all(g["Properties"]["KmsKeyId"] == key for g in groups)


@pytest.mark.parametrize("exemption", CONTROL_TOWER_EXEMPTIONS, ids=lambda e: e.rule)
def test_each_control_tower_exemption_is_needed(tmp_path, exemption):
    """Enforced, each exempted control stops synth on the resources that fail it: these are the
    controls an enrolled account's CloudFormation hooks would refuse the stack for."""
    error, report = synth_report(tmp_path, "prod", skip=frozenset({exemption.rule}))
    assert error is not None and "ValidationFailed" in str(error)
    control_tower = next(
        p for p in report["pluginReports"] if p["pluginName"] == "cdk-validator-cfnguard"
    )
    assert control_tower["conclusion"] == "failure"
    (control,) = {v["description"].split("]")[0] for v in control_tower["violations"]}
    assert control == "[" + exemption.control.split(":")[0]
    assert len(exemption.reason) > 80


def test_dev_staging_and_prod_pass_control_tower_with_exactly_the_exemptions(stacks):
    from serverless_stack.control_tower import control_tower_exemptions

    for stack in stacks.values():
        rules = {e.rule for e in control_tower_exemptions(stack.config)}
        assert rules == {
            "ct-cloudwatch-pr-2",
            "ct-cloudwatch-pr-3",
            "ct-lambda-pr-3",
            "ct-sqs-pr-1",
        }


@pytest.mark.parametrize(
    "value", ["alias/logs", "arn:aws:kms:eu-west-1:123456789012:alias/logs", "", 12]
)
def test_a_log_key_that_is_not_a_key_arn_stops_synth_naming_the_key(value):
    import copy

    from serverless_stack.config import ConfigError, load_config

    settings = copy.deepcopy(cdk_context()["pipeline"])
    settings["dev"]["log_kms_key_arn"] = value
    with pytest.raises(ConfigError, match=r"pipeline\.dev\.log_kms_key_arn = .*: must be the ARN"):
        load_config("dev", settings)


def test_control_tower_runs_every_rule_that_evaluates_a_resource_type_of_the_stack(
    stacks, template_json
):
    """Only the rules about the stack's own resource types are loaded (cfn-guard takes about 5 s
    for all of them): the types read from each synthesized template select the same rules as
    the construct tree did, so no rule about a type in the template is left out."""
    from serverless_stack.control_tower import (
        control_tower_rules,
        control_tower_rules_for,
        resource_types,
    )

    everything = control_tower_rules()
    # The plugin's whole rule set: the .guard files under rules/control-tower in its package.
    assert len(everything) == 237
    for environment, stack in stacks.items():
        in_template = frozenset(r["Type"] for r in template_json[environment]["Resources"].values())
        chosen = control_tower_rules_for(resource_types(stack), frozenset())
        assert chosen == control_tower_rules_for(in_template, frozenset())
        names = {p.rsplit("/", 1)[1].removesuffix(".guard") for p in chosen}
        assert {
            "ct-lambda-pr-3",
            "ct-sqs-pr-1",
            "ct-cloudwatch-pr-1",
            "ct-cloudwatch-pr-2",
        } <= names
        # and every rule about one of those types, by the rule files' own text
        expected = {name for name, (_, types) in everything.items() if types & in_template}
        assert names == expected


@pytest.mark.parametrize("environment", ["dev", "prod"])
@pytest.mark.parametrize(
    "emails", [["ops@example.com"], ["ops@example.com", "oncall@example.com"]], ids=["one", "two"]
)
def test_alarm_emails_synthesize_clean_each_with_a_dead_letter_queue(tmp_path, environment, emails):
    """Each e-mail subscription gets the redrive policy cdk-nag's Serverless-SNSRedrivePolicy
    asks for (SNS supports it for e-mail: sns-message-delivery-retries.html), to one queue only
    the topic may send to; no finding beyond those of the same environment without e-mails."""
    error, report = synth_report(tmp_path / "with", environment, settings={"alarm_emails": emails})
    assert error is None
    _, without = synth_report(tmp_path / "without", environment)
    assert violations(report) == violations(without)
    template = json.loads(
        (tmp_path / "with" / f"DataPipeline-{environment}.template.json").read_text()
    )
    resources = template["Resources"]
    subscriptions = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::SNS::Subscription"
    ]
    assert sorted(s["Endpoint"] for s in subscriptions) == sorted(emails)
    assert {s["Protocol"] for s in subscriptions} == {"email"}
    (queue_id,) = [
        i for i, r in resources.items() if r["Type"] == "AWS::SQS::Queue" and "Undelivered" in i
    ]
    for subscription in subscriptions:
        target = subscription["RedrivePolicy"]["deadLetterTargetArn"]
        assert target == {"Fn::GetAtt": [queue_id, "Arn"]}
    queue = resources[queue_id]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True and queue["MessageRetentionPeriod"] == 14 * 86400
    (policy,) = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for r in resources.values()
        if r["Type"] == "AWS::SQS::QueuePolicy" and {"Ref": queue_id} in r["Properties"]["Queues"]
    ]
    sends = [s for s in policy if s["Effect"] == "Allow"]
    assert all(s["Principal"] == {"Service": "sns.amazonaws.com"} for s in sends)
    assert all(
        s["Condition"]["ArnEquals"]["aws:SourceArn"]["Ref"].startswith("AlarmTopic") for s in sends
    )
    assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(s) for s in policy)


@pytest.mark.parametrize(
    "name", [a.name for a in ACKNOWLEDGMENTS if a.name.startswith("undelivered-notifications")]
)
def test_each_undelivered_notifications_acknowledgment_is_needed(tmp_path, name):
    """The queue's two acknowledgments arise only with alarm e-mails: without each, synth fails
    on its finding, on that queue."""
    error, report = synth_report(
        tmp_path, "dev", skip=frozenset({name}), settings={"alarm_emails": ["ops@example.com"]}
    )
    assert error is not None and "ValidationFailed" in str(error)
    (found,) = violations(report)
    assert found[1].startswith("DataPipeline-dev/AlarmTopic/Undelivered/")


def test_an_https_subscriber_synthesizes_clean_with_the_same_dead_letter_queue(tmp_path):
    """An on-call service's HTTPS endpoint is a subscriber like an e-mail: protocol https, the
    same redrive policy (SNS retries HTTPS deliveries by the delivery policy, then discards
    unless a DLQ is set: sns-message-delivery-retries.html), no new finding."""
    url = "https://events.oncall.example.com/integration/abc123/enqueue"
    settings = {"alarm_emails": ["ops@example.com"], "alarm_https_endpoints": [url]}
    error, report = synth_report(tmp_path / "with", "prod", settings=settings)
    assert error is None
    _, only_email = synth_report(
        tmp_path / "email", "prod", settings={"alarm_emails": ["ops@example.com"]}
    )
    assert violations(report) == violations(only_email)
    resources = json.loads((tmp_path / "with" / "DataPipeline-prod.template.json").read_text())[
        "Resources"
    ]
    subscriptions = {
        r["Properties"]["Endpoint"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::SNS::Subscription"
    }
    assert subscriptions[url]["Protocol"] == "https"
    assert subscriptions[url]["RedrivePolicy"] == subscriptions["ops@example.com"]["RedrivePolicy"]


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_staging_and_prod_without_an_alarm_subscriber_warn_naming_the_settings(stacks, environment):
    """cdk.json ships every environment with no subscriber: staging's and prod's synth says
    their alarms reach nobody, and names the settings that fix it; dev stays quiet."""
    from aws_cdk.assertions import Annotations, Match

    warnings = Annotations.from_stack(stacks[environment]).find_warning(
        "*", Match.string_like_regexp("no alarm subscriber")
    )
    if environment == "dev":
        assert warnings == []
    else:
        (warning,) = warnings
        text = str(warning.entry.data)
        assert f"pipeline.{environment}" in text
        assert all(k in text for k in ("alarm_emails", "alarm_https_endpoints", "alarm_topic_arns"))


def test_an_existing_topic_is_notified_by_every_alarm_and_silences_the_warning(tmp_path):
    """An organisation's own on-call or chat topic: every alarm notifies it as well as the
    stack's topic (an alarm takes up to 5 actions: PutMetricAlarm, AlarmActions); the synth
    finds nothing new, and a subscriber exists, so prod's warning is gone."""
    arn = "arn:aws:sns:us-east-1:123456789012:org-on-call"
    error, report = synth_report(tmp_path / "with", "prod", settings={"alarm_topic_arns": [arn]})
    assert error is None
    _, without = synth_report(tmp_path / "without", "prod")
    assert violations(report) == violations(without)
    assert annotations(report) == set()
    resources = json.loads((tmp_path / "with" / "DataPipeline-prod.template.json").read_text())[
        "Resources"
    ]
    (topic_id,) = [i for i, r in resources.items() if r["Type"] == "AWS::SNS::Topic"]
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert alarms
    assert all(a["AlarmActions"] == [{"Ref": topic_id}, arn] for a in alarms)
