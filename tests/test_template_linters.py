"""cfn-lint on every environment's template, checkov's skips, and data protection per env."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest

from serverless_stack.checkov_skips import CHECKOV_SKIPS
from tests.conftest import ENVIRONMENTS, ROOT
from tests.helpers import of_type, props, ref_id, single


@pytest.fixture(scope="module")
def template_files(stacks) -> dict[str, Path]:
    return {
        name: Path(cdk.Stage.of(stack).synth().directory) / stack.template_file
        for name, stack in stacks.items()
    }


@pytest.fixture(scope="module")
def toolchain_files(toolchain) -> list[Path]:
    """The toolchain's template and its three stage assemblies' templates."""
    directory = toolchain[2]
    top = directory / "DataPipeline-Toolchain.template.json"
    return [top, *sorted(p for p in directory.rglob("*.template.json") if p != top)]


#: Rules the toolchain's own template does not meet, each aws-cdk-lib's output: CDK Pipelines
#: joins each target account's bootstrap role ARN with an empty-delimiter Fn::Join.
TOOLCHAIN_IGNORED = {"E3703": "CDK Pipelines' role ARNs of the target accounts"}


def test_cfn_lint_finds_no_error_and_no_warning_in_the_toolchain(toolchain_files):
    assert len(toolchain_files) == 1 + 3 + 1  # the toolchain, 3 stages, the smoke role's stack
    toolchain, stages = toolchain_files[0], toolchain_files[1:]
    assert toolchain.name == "DataPipeline-Toolchain.template.json"
    _lint(stages)
    # (the command line replaces the config file's list: W3005 again, with the toolchain's own)
    _lint([toolchain], ignore=("W3005", *TOOLCHAIN_IGNORED))


def _lint(files: list[Path], ignore: tuple[str, ...] = ()) -> None:
    extra = ["--ignore-checks", *ignore] if ignore else []
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--config-file",
            str(ROOT / ".cfnlintrc.yaml"),
            *extra,
            "--",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_cfn_lint_finds_no_error_and_no_warning(template_files):
    _lint(list(template_files.values()))


def test_cfn_lint_ignores_only_documented_rules():
    lines = (ROOT / ".cfnlintrc.yaml").read_text().splitlines()
    ignored = [line.strip()[2:] for line in lines if line.strip().startswith("- ")]
    assert ignored == ["W3005"]
    assert any("W3005:" in line for line in lines), "each ignored rule carries its reason"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_checkov_skips_sit_on_the_resources_with_a_reason(template_json, environment):
    template = template_json[environment]
    for resource_type, skips in CHECKOV_SKIPS.items():
        resources = of_type(template, resource_type)
        assert resources, resource_type
        for logical_id, resource in resources.items():
            written = resource["Metadata"]["checkov"]["skip"]
            assert [s["id"] for s in written] == [check for check, _ in skips], logical_id
            assert all(len(s["comment"]) > 40 for s in written)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_queue_is_encrypted_ssl_only_and_the_dlq_keeps_14_days(template_json, environment):
    template = template_json[environment]
    queues = of_type(template, "AWS::SQS::Queue")
    policies = of_type(template, "AWS::SQS::QueuePolicy").values()
    for queue_id, queue in queues.items():
        assert props(queue).get("SqsManagedSseEnabled") or props(queue).get("KmsMasterKeyId")
        denies = [
            s
            for p in policies
            if queue_id in {ref_id(q) for q in props(p)["Queues"]}
            for s in props(p)["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny"
            and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert denies, f"{queue_id} must refuse non-TLS requests"
    dlq_ids = {
        ref_id(props(f)["DeadLetterConfig"]["TargetArn"])
        for f in of_type(template, "AWS::Lambda::Function").values()
    }
    for dlq_id in dlq_ids:
        assert props(queues[dlq_id])["MessageRetentionPeriod"] == 14 * 24 * 3600


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_table_protection_per_environment(template_json, environment):
    _, table = single(of_type(template_json[environment], "AWS::DynamoDB::Table"))
    assert props(table)["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    if environment == "prod":
        assert table["DeletionPolicy"] == "Retain"
        assert props(table)["DeletionProtectionEnabled"] is True
    else:
        assert table["DeletionPolicy"] == "Delete"
        assert not props(table).get("DeletionProtectionEnabled", False)


def test_alarm_topic_refuses_non_tls_publishers(template_json, env_name):
    template = template_json[env_name]
    topic_id, _ = single(of_type(template, "AWS::SNS::Topic"))
    (policy,) = [
        p
        for p in of_type(template, "AWS::SNS::TopicPolicy").values()
        if topic_id in {ref_id(t) for t in props(p)["Topics"]}
    ]
    statements = props(policy)["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )
