"""The real `cdk deploy` into the local emulator, records driven through the deployed code.

Steps run in order on one emulator (started once for this module, stopped even when a step
fails): deploy, drive valid/malformed/duplicate records, change a handler in a copy and
redeploy, destroy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess

import boto3
import pytest

from pipeline_tools.local.deployed import DeployedStack
from pipeline_tools.local.emulator_gaps import find_gaps, split_gaps
from pipeline_tools.local.local import (
    SAMPLE_RECORDS,
    STATE_FILE,
    Emulator,
    aws_environment,
    aws_pointed_at,
    bootstrap,
    copy_project,
    deploy,
    destroy,
    drive,
    free_port,
    stack_name,
)
from tests.conftest import ROOT
from tests.test_readme_commands import ordinary_path

STACK = stack_name("dev")


@pytest.fixture(scope="module")
def emulator():
    server = Emulator(free_port())
    server.start()
    try:
        env = aws_environment(server)
        bootstrap(env)
        deploy(env)
        yield server
    finally:
        server.stop()


@pytest.fixture
def session(emulator):
    with aws_pointed_at(emulator):
        yield boto3.Session(region_name="us-east-1")


def test_deploy_creates_the_stack_and_reports_only_known_gaps(emulator, session):
    stack = DeployedStack.read(session, STACK)
    assert set(stack.outputs) == {
        "TableName",
        "IngestFunctionArn",
        "ProcessorFunctionArn",
        "DlqUrl",
        "AlarmTopicArn",
        "ValidatorLogGroupName",
        "EnricherLogGroupName",
        "ProcessorLogGroupName",
    }
    assert stack.outputs["IngestFunctionArn"].endswith(":live")
    gaps = find_gaps(session, stack)
    known, unknown = split_gaps(gaps)
    assert unknown == [], [g.describe() for g in unknown]
    # The aliases and their async configs really exist in the emulator (cfn_models).
    lam = session.client("lambda")
    validator = stack.physical[
        next(k for k in stack.of_type("AWS::Lambda::Function") if k.startswith("Validator"))
    ]
    assert [a["Name"] for a in lam.list_aliases(FunctionName=validator)["Aliases"]] == ["live"]
    config = lam.get_function_event_invoke_config(FunctionName=validator, Qualifier="live")
    assert config["MaximumRetryAttempts"] == 0
    assert config["DestinationConfig"]["OnSuccess"]["Destination"].endswith(":live")
    # What is not created is said, never hidden: alarms and the queue policy among them.
    assert {g.resource_type for g, _ in known if g.property is None} >= {
        "AWS::CloudWatch::Alarm",
        "AWS::SQS::QueuePolicy",
    }


def test_records_flow_through_the_deployed_code(emulator):
    records = json.loads(SAMPLE_RECORDS.read_text())
    result = drive(emulator, "dev", records)
    assert sorted(i["id"] for i in result.stored) == ["order-0001", "order-0002", "signup-0001"]
    categories = {i["id"]: i["category"] for i in result.stored}
    assert categories == {
        "order-0001": "sales",
        "order-0002": "sales",
        "signup-0001": "uncategorized",
    }
    assert result.counters == {("order", "2026-11-29"): 2, ("signup", "2026-11-29"): 1}
    statuses = [o.result.get("status") for o in result.outcomes if isinstance(o.result, dict)]
    assert statuses.count("duplicate") == 1
    reasons = {letter.event["id"]: letter.error for letter in result.dead_letters}
    assert set(reasons) == {"bad id", "order-0003"}
    assert "id: must be 1-128 characters" in reasons["bad id"]
    assert "timestamp: not an ISO-8601" in reasons["order-0003"]
    assert "payload: must be a JSON object" in reasons["order-0003"]
    assert any("code sha256" in n and "verified" in n for n in result.notes)


def test_operator_commands_work_on_the_emulator(emulator, tmp_path, capsys):
    """send, dead-letters, counts and redrive on the deployed stack (the drive above left two
    records in the DLQ, unconsumed)."""
    from pipeline_tools.local.__main__ import main

    assert main(["dead-letters"]) == 0
    listed = capsys.readouterr().out
    assert "2 messages in the DLQ (left there)" in listed
    assert "validator  bad id" in listed and "validator  order-0003" in listed

    more = tmp_path / "more.ndjson"
    valid = {
        "id": "order-0100",
        "type": "order",
        "source": "ops",
        "timestamp": "2026-11-30T09:00:00+01:00",
        "payload": {"n": 1},
    }
    more.write_text(json.dumps(valid) + "\n" + json.dumps({**valid, "id": "x y"}) + "\n")
    assert main(["send", str(more)]) == 0
    assert "sent 2 of 2 records" in capsys.readouterr().out
    assert main(["dead-letters"]) == 0
    assert "3 messages in the DLQ (left there)" in capsys.readouterr().out

    # The counts reader: the drive's two orders and a signup on the 29th; the order sent at
    # 09:00+01:00 on the 30th is 08:00 UTC that day.
    assert main(["counts", "--day", "2026-11-29"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "order           2",
        "signup          1",
        "3 records stored on 2026-11-29 (2 types)",
    ]
    assert main(["counts", "--day", "2026-11-30"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 records stored on 2026-11-30 (1 types)"
    with pytest.raises(SystemExit) as refused:  # argparse's usage error, before any call
        main(["counts", "--day", "30/11/2026"])
    assert refused.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "day: '30/11/2026' is not a date as YYYY-MM-DD" in line

    assert main(["redrive", "--dry-run"]) == 0
    assert "would redrive 0; left in the queue: 3 validator rejections" in capsys.readouterr().out
    assert main(["redrive", "--include-rejected", "--max", "1"]) == 0
    assert "redrove 1; left in the queue: 2 beyond --max" in capsys.readouterr().out
    assert main(["dead-letters"]) == 0  # the rejection failed again: back in the DLQ
    assert "3 messages in the DLQ (left there)" in capsys.readouterr().out

    # What the AWS-side command reads of a deployed stack, read here from the emulator.
    from pipeline_tools.pipeline import deployed_pipeline

    with aws_pointed_at(emulator):
        ops, invoker = deployed_pipeline(boto3.Session(region_name="us-east-1"), STACK)
    assert ops.entry == "validator"
    assert dict(ops.next_stage) == {
        "validator": "enricher",
        "enricher": "processor",
        "processor": None,
    }
    assert set(invoker.alias_arns) == {"validator", "enricher", "processor"}
    assert all(arn.endswith(":live") for arn in invoker.alias_arns.values())
    with aws_pointed_at(emulator):
        stack = DeployedStack.read(boto3.Session(region_name="us-east-1"), STACK)
    assert ops.dead_letter_queue_url == stack.outputs["DlqUrl"]
    # The AWS-side counts command, on the emulator's endpoint (AWS_ENDPOINT_URL).
    from pipeline_tools.operate import main as operate_main

    with aws_pointed_at(emulator):
        assert operate_main(["--stack", STACK, "counts", "--day", "2026-11-29"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "3 records stored on 2026-11-29 (2 types)"

    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": ')
    with pytest.raises(SystemExit) as refused:
        main(["send", str(bad)])
    assert refused.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: pipeline local send: argument records: {bad}: not valid JSON")
    assert error.count("\n") == 1


def test_the_pipelines_smoke_test_passes_on_the_emulator_and_cleans_up(emulator, capsys):
    """The staging smoke step's command, against the emulator: valid records stored, exactly
    this run's rejections in the DLQ, and those deleted again (the 3 left by the test above
    stay)."""
    from pipeline_tools.local.__main__ import main

    assert main(["dead-letters"]) == 0
    before = capsys.readouterr().out.splitlines()[-1]
    smoke_passes(main, capsys)
    assert main(["dead-letters"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == before


def smoke_passes(main, capsys) -> None:
    """``pipeline local smoke`` passes: its three valid records stored, its two rejections in
    the DLQ (then deleted)."""
    assert main(["smoke", "--timeout", "30"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(
        r"smoke [0-9a-f]{12}: 3/3 valid records stored, 2/2 rejections in the DLQ", line
    ), line


def test_the_smoke_roles_grants_cover_every_call_the_aws_side_smoke_command_makes(
    emulator, monkeypatch, capsys
):
    """The AWS-side `pipeline --stack ... smoke` against the emulator's endpoint, each API call
    recorded: every one is an action the pipeline's smoke role (SmokeTestAccess) grants. The
    emulator runs no Lambda code, so the records never land and the command exits 1; the
    calls it makes on the way are the ones it makes on AWS. (IAM names Lambda's Invoke
    operation lambda:InvokeFunction, as the service authorization reference lists it.)"""
    needed, granted = smoke_calls_and_grants(emulator, monkeypatch, capsys)
    assert {"cloudformation:DescribeStackResources", "sqs:ReceiveMessage"} <= needed
    assert "lambda:InvokeFunction" in needed
    assert needed - granted == set()


def smoke_calls_and_grants(emulator, monkeypatch, capsys) -> tuple[set[str], set[str]]:
    """The IAM actions the AWS-side smoke command calls against the emulator's stack, and the
    actions the smoke role grants. SQS authorizes its batch calls as the single ones
    (``SendMessageBatch`` as ``sqs:SendMessage``: the runner's ``SQS_BATCH_ACTIONS``)."""
    import aws_cdk as cdk
    import botocore.client
    from aws_cdk.assertions import Template

    from pipeline_tools import smoke
    from pipeline_tools.operate import main as operate_main
    from pipeline_tools.runner.iam import SQS_BATCH_ACTIONS
    from serverless_stack.toolchain import SmokeTestAccess
    from tests.helpers import as_list, of_type, props

    calls: set[str] = set()
    make_call = botocore.client.BaseClient._make_api_call

    def recorded(client, operation, params):
        service = client.meta.service_model.signing_name
        action = SQS_BATCH_ACTIONS.get(operation, operation) if service == "sqs" else operation
        calls.add(f"{service}:{'InvokeFunction' if action == 'Invoke' else action}")
        return make_call(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recorded)
    monkeypatch.setattr(smoke, "POLL_SECONDS", 0.1)
    with aws_pointed_at(emulator):
        operate_main(["--stack", STACK, "smoke", "--timeout", "1"])
    capsys.readouterr()
    access = SmokeTestAccess(cdk.App(), "Access", toolchain_account="111111111111")
    (policy,) = of_type(Template.from_stack(access).to_json(), "AWS::IAM::Policy").values()
    granted = {
        a for s in props(policy)["PolicyDocument"]["Statement"] for a in as_list(s["Action"])
    }
    return calls, granted


def test_the_smoke_test_fails_naming_what_did_not_land(emulator, capsys, monkeypatch):
    """Records that never arrive (only the first is sent): the smoke test names each one that
    did not land where it should, and exits 1."""
    from pipeline_tools import smoke
    from pipeline_tools.local.__main__ import main

    send_all = smoke.send
    monkeypatch.setattr(smoke, "POLL_SECONDS", 0.1)
    monkeypatch.setattr(smoke, "send", lambda records, *a, **k: send_all(records[:1], *a, **k))
    assert main(["smoke", "--timeout", "1"]) == 1
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "FAILED: not stored: smoke-" in line and "not in the DLQ: smoke-" in line, line


def test_a_changed_handler_is_redeployed_and_runs(emulator, tmp_path):
    project = copy_project(tmp_path)
    enrichment = project / "lambda_src" / "enricher" / "enrichment.py"
    text = enrichment.read_text()
    assert 'UNCATEGORIZED = "uncategorized"' in text
    enrichment.write_text(
        text.replace('UNCATEGORIZED = "uncategorized"', 'UNCATEGORIZED = "unsorted-v2"')
    )
    deploy(aws_environment(emulator), "dev", project)
    record = {
        "id": "click-0001",
        "type": "click",
        "source": "app",
        "timestamp": "2026-11-30T08:00:00Z",
        "payload": {},
    }
    result = drive(emulator, "dev", [record])
    stored = {i["id"]: i for i in result.stored}
    assert stored["click-0001"]["category"] == "unsorted-v2"


def test_destroy_leaves_nothing_of_the_stack(emulator, session):
    destroy(aws_environment(emulator))
    cloudformation = session.client("cloudformation")
    live = [
        s["StackName"]
        for s in cloudformation.list_stacks()["StackSummaries"]
        if s["StackStatus"] != "DELETE_COMPLETE"
    ]
    assert STACK not in live
    assert session.client("lambda").list_functions()["Functions"] == []
    assert session.client("dynamodb").list_tables()["TableNames"] == []
    assert session.client("sqs").list_queues().get("QueueUrls", []) == []
    roles = [r["RoleName"] for r in session.client("iam").list_roles()["Roles"]]
    assert not [r for r in roles if r.startswith(STACK)]


# --- the batched path (ingestion.mode: batched), deployed into the same emulator ------------
# after the destroy above: one CDK CLI at a time writes the local target's output.


@pytest.fixture(scope="module")
def batched(emulator):
    """dev on the batched path (``make deploy-local INGESTION=batched``), in the emulator the
    per-record stack has left."""
    deploy(aws_environment(emulator), "dev", ingestion="batched")
    return emulator


def test_the_batched_path_deploys_a_mapped_queue_in_front_of_each_stage(batched, session):
    stack = DeployedStack.read(session, STACK)
    assert "IngestQueueUrl" in stack.outputs and "IngestFunctionArn" not in stack.outputs
    _, unknown = split_gaps(find_gaps(session, stack))
    assert unknown == [], [g.describe() for g in unknown]
    aliases = {
        alias["AliasArn"]: stage
        for stage in ("validator", "enricher", "processor")
        for alias in session.client("lambda").list_aliases(
            FunctionName=stack.physical[
                next(
                    k for k in stack.of_type("AWS::Lambda::Function") if k.lower().startswith(stage)
                )
            ]
        )["Aliases"]
    }
    mappings = session.client("lambda").list_event_source_mappings()["EventSourceMappings"]
    # Each stage's live alias reads one queue; the entry's batches of up to 100 (the default).
    # moto reports the version the alias pointed at, where Lambda keeps the alias's ARN.
    by_function = {arn.split(":")[6]: stage for arn, stage in aliases.items()}
    sizes = {by_function[m["FunctionArn"].split(":")[6]]: m["BatchSize"] for m in mappings}
    assert sizes == {"validator": 100, "enricher": 10, "processor": 10}
    queues = {m["EventSourceArn"] for m in mappings}
    assert len(queues) == 3
    assert stack.outputs["IngestQueueUrl"].rsplit("/", 1)[1] in {
        q.rsplit(":", 1)[1] for q in queues
    }


def test_records_flow_through_the_deployed_batched_code(batched):
    """The samples as on the per-record path: the duplicate stored once, each bad record in
    the DLQ alone with its reason, one batch a stage."""
    records = json.loads(SAMPLE_RECORDS.read_text())
    result = drive(batched, "dev", records)
    assert sorted(i["id"] for i in result.stored) == ["order-0001", "order-0002", "signup-0001"]
    assert {i["id"]: i["category"] for i in result.stored} == {
        "order-0001": "sales",
        "order-0002": "sales",
        "signup-0001": "uncategorized",
    }
    assert result.counters == {("order", "2026-11-29"): 2, ("signup", "2026-11-29"): 1}
    reasons = {letter.event["id"]: letter.error for letter in result.dead_letters}
    assert set(reasons) == {"bad id", "order-0003"}
    assert "id: must be 1-128 characters" in reasons["bad id"]
    assert "timestamp: not an ISO-8601" in reasons["order-0003"]
    assert result.batches == {"validator": 1, "enricher": 1, "processor": 1}


def test_the_local_ingestion_modes_are_the_settings_own_and_make_passes_them_on():
    from pipeline_tools.local.__main__ import INGESTION_MODES as LOCAL
    from serverless_stack.config import INGESTION_MODES

    assert LOCAL == INGESTION_MODES
    typed = _as_typed(["make", "--no-print-directory", "-n", "deploy-local", "INGESTION=batched"])
    assert typed.stdout.splitlines()[-1].split() == [
        "python",
        "-m",
        "pipeline_tools.local",
        "up",
        "--ingestion",
        "batched",
    ]
    wrong = _as_typed([str(ROOT / ".venv" / "bin" / "pipeline"), "local", "up", "--ingestion", "x"])
    assert wrong.returncode == 2 and wrong.stdout == ""
    (line,) = wrong.stderr.strip().splitlines()
    assert "--ingestion: invalid choice: 'x' (choose from 'per_record', 'batched')" in line


def test_smoke_and_redrive_on_the_batched_path(batched, capsys):
    """The smoke step passes through the stages' queues and cleans up; a redriven rejection
    goes back to the queue of the stage that failed it, and is refused there again."""
    from pipeline_tools.local.__main__ import main

    smoke_passes(main, capsys)
    assert main(["dead-letters"]) == 0
    listed = capsys.readouterr().out
    assert "2 messages in the DLQ (left there)" in listed  # the drive's, not the smoke's
    assert "validator  bad id" in listed and "validator  order-0003" in listed
    assert main(["redrive", "--include-rejected", "--max", "1"]) == 0
    assert "redrove 1; left in the queue: 1 beyond --max" in capsys.readouterr().out
    assert main(["dead-letters"]) == 0  # refused again by the validator: back in the DLQ
    assert "2 messages in the DLQ (left there)" in capsys.readouterr().out


def test_the_smoke_role_covers_the_batched_path_too(batched, monkeypatch, capsys):
    """staging takes the batched path: the smoke command sends to the validator's queue
    (SendMessageBatch, authorized as sqs:SendMessage), and the role grants that too. (Last of
    the batched tests: its records stay in the queue, as nothing polls it on the AWS side.)"""
    needed, granted = smoke_calls_and_grants(batched, monkeypatch, capsys)
    assert "sqs:SendMessage" in needed and "lambda:InvokeFunction" not in needed
    assert needed - granted == set()


def test_a_second_destroy_local_has_nothing_to_do_and_says_so(monkeypatch, capsys):
    from pipeline_tools.local import __main__ as cli

    monkeypatch.setattr(cli.Emulator, "kept", staticmethod(lambda: None))
    assert cli.main(["down"]) == 0
    assert capsys.readouterr().out == "No emulator is running: nothing to destroy.\n"
    assert cli.main(["dead-letters"]) == 1  # the other commands need one
    assert "No emulator is running" in capsys.readouterr().err


def _killed_emulator() -> Emulator:
    """An emulator kept as `make deploy-local KEEP=1` keeps one, then killed (SIGKILL: no
    clean-up of its own), its record left behind."""
    server = Emulator(free_port())
    server.start()
    assert server.pid is not None and STATE_FILE.is_file()
    os.killpg(server.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(server.pid, 0)
    return server


def _as_typed(command: list[str]) -> subprocess.CompletedProcess[str]:
    """``command`` from a fresh shell: the user's PATH, no venv activated."""
    return subprocess.run(
        command,
        cwd=ROOT,
        env={"HOME": os.environ.get("HOME", "/root"), "PATH": ordinary_path()},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_killed_emulator_gets_one_line_and_make_destroy_local_recovers():
    """After the kept emulator dies, an operator command says so in one line, and
    `make destroy-local` clears its record without an error (run last: one state file)."""
    _killed_emulator()
    result = _as_typed([str(ROOT / ".venv" / "bin" / "pipeline"), "local", "dead-letters"])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "has stopped" in line and "make deploy-local KEEP=1" in line
    assert not STATE_FILE.exists()

    _killed_emulator()
    result = _as_typed(["make", "--no-print-directory", "destroy-local"])
    assert result.returncode == 0, result.stderr
    assert "has stopped" in result.stdout and "Error" not in result.stderr
    assert not STATE_FILE.exists()


def test_deploy_local_after_a_killed_emulator_starts_a_new_one(monkeypatch):
    from pipeline_tools.local import __main__ as cli

    _killed_emulator()
    started = []
    monkeypatch.setattr(cli, "up", lambda *args: started.append(args) or 0)
    assert cli.main(["up", "--keep"]) == 0  # not "an emulator is already running"
    assert started and not STATE_FILE.exists()
