"""Operator commands: records files, send, dead-letters and redrive, on deployed code on moto."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline_tools.dead_letters import peek
from pipeline_tools.operations import redrive, send
from pipeline_tools.pipeline import RunnerInvoker, runner_pipeline
from pipeline_tools.records_file import RecordFileError, read_records
from tests.conftest import load_event, stored_and_counted
from tests.fault_injection import fail_before

RECORD = {
    "id": "r-1",
    "type": "order",
    "source": "s",
    "timestamp": "2026-11-29T10:00:00Z",
    "payload": {},
}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (json.dumps([RECORD, RECORD]), [RECORD, RECORD]),
        (json.dumps(RECORD), [RECORD]),  # one object is one record, not its keys
        (json.dumps(RECORD) + "\n\n" + json.dumps(RECORD) + "\n", [RECORD, RECORD]),
    ],
)
def test_a_records_file_is_an_array_one_object_or_ndjson(tmp_path: Path, content, expected):
    path = tmp_path / "records.json"
    path.write_text(content)
    assert read_records(path) == expected


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b'[{"id": "a"', "not valid JSON"),
        (b'{"id": 1}\n{"id": ', "line 2 is not valid JSON (NDJSON)"),
        (b"\xff\xfe\x00binary", "not UTF-8 text"),
        (b'{"payload": {"f": NaN}}', "not valid JSON: NaN is not JSON"),
    ],
)
def test_a_bad_records_file_gets_one_line_naming_file_and_problem(tmp_path, content, problem):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(RecordFileError) as caught:
        read_records(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_a_missing_records_file_is_named(tmp_path):
    with pytest.raises(RecordFileError, match=r"missing\.json: no such file"):
        read_records(tmp_path / "missing.json")


def records(n: int) -> list[dict[str, Any]]:
    base = load_event("valid_record")
    return [
        {
            **base,
            "id": f"op-{i:03d}",
            "type": ("order", "signup")[i % 2],
            "timestamp": f"2026-11-29T23:{i % 60:02d}:00-02:00",
        }
        for i in range(n)
    ]


def table(pipeline) -> tuple[list[str], dict[tuple[str, str], int]]:
    client = pipeline.session.client("dynamodb")
    name = pipeline.specs["processor"].environment["TABLE_NAME"]
    records, counters = stored_and_counted(client, name)
    return sorted(i["id"]["S"] for i in records), counters


def queue_depth(pipeline) -> int:
    url = runner_pipeline(pipeline).dead_letter_queue_url
    attributes = pipeline.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_redrive_after_a_fix_stores_each_record_exactly_once(pipeline):
    """The processor's writes fail for a third of the records, through all its retries; they
    land in the DLQ. With the fault fixed, a redrive stores each once; a second changes nothing."""
    sent = records(30)
    broken = {r["id"] for r in sent[::3]}
    fault = {"on": True}

    def failing(params: dict[str, Any]) -> bool:
        item = params["Item"]
        return fault["on"] and "id" in item and item["id"]["S"] in broken

    fail_before(pipeline.module("processor").dynamodb, "PutItem", failing)
    invoker = RunnerInvoker(pipeline)
    ops = runner_pipeline(pipeline)
    summary = send([*sent, {"id": "bad id"}], invoker, ops.entry, parallel=4)
    invoker.finish()
    assert summary.sent == 31 and not summary.refused

    letters = peek(pipeline.sqs, ops.dead_letter_queue_url, ops.failed_stage)
    assert Counter(letter.failed_stage for letter in letters) == {
        "processor": len(broken),
        "validator": 1,
    }
    assert {letter.record_id for letter in letters if letter.failed_stage == "processor"} == broken
    assert (
        len(peek(pipeline.sqs, ops.dead_letter_queue_url, ops.failed_stage)) == len(broken) + 1
    ), "listing consumes nothing"
    assert queue_depth(pipeline) == len(broken) + 1

    dry = redrive(pipeline.sqs, ops, invoker, dry_run=True)
    assert (dry.redriven, dry.skipped_rejected) == (len(broken), 1)
    assert queue_depth(pipeline) == len(broken) + 1, "a dry run changes nothing"

    fault["on"] = False
    first = redrive(pipeline.sqs, ops, invoker)
    invoker.finish()
    assert (first.redriven, first.skipped_rejected, first.refused) == (len(broken), 1, [])
    stored, counters = table(pipeline)
    assert stored == sorted(r["id"] for r in sent)
    expected = Counter(
        (
            r["type"],
            datetime.fromisoformat(r["timestamp"]).astimezone(UTC).date().isoformat(),
        )
        for r in sent
    )
    assert counters == dict(expected)
    assert queue_depth(pipeline) == 1, "the validator rejection stays, skipped"

    second = redrive(pipeline.sqs, ops, invoker)
    invoker.finish()
    assert (second.redriven, second.refused) == (0, [])
    assert table(pipeline) == (stored, counters)


def test_a_message_whose_redrive_is_refused_stays_in_the_queue(pipeline):
    invoker = RunnerInvoker(pipeline)
    ops = runner_pipeline(pipeline)
    send([{"id": "bad id"}], invoker, ops.entry)
    invoker.finish()

    class Refusing:
        def invoke(self, stage: str, event: Any) -> None:
            raise RuntimeError("TooManyRequestsException: Rate exceeded")

    result = redrive(pipeline.sqs, ops, Refusing(), include_rejected=True)
    assert result.redriven == 0 and len(result.refused) == 1
    assert "Rate exceeded" in result.refused[0][1]
    assert queue_depth(pipeline) == 1
    (letter,) = peek(pipeline.sqs, ops.dead_letter_queue_url, ops.failed_stage)
    assert letter.failed_stage == "validator" and letter.record_id == "bad id"
    assert "id: must be 1-128 characters" in letter.error


def test_a_conflict_is_left_in_the_queue_and_the_summary_says_so(pipeline):
    """A record under an id already stored with other content fails the same way on every
    attempt (the stored one is never overwritten): redrive leaves it, and says why."""
    invoker = RunnerInvoker(pipeline)
    ops = runner_pipeline(pipeline)
    (first,) = records(1)
    send([first], invoker, ops.entry)
    invoker.finish()
    send([{**first, "payload": {"changed": True}}], invoker, ops.entry)
    invoker.finish()
    (letter,) = peek(pipeline.sqs, ops.dead_letter_queue_url, ops.failed_stage)
    assert letter.is_conflict() and letter.record_id == first["id"]

    for dry_run in (True, False):
        result = redrive(pipeline.sqs, ops, invoker, dry_run=dry_run, include_rejected=True)
        invoker.finish()
        assert (result.redriven, result.skipped_conflicts) == (0, 1)
        assert result.line().endswith(
            "left in the queue: 1 conflicts (the stored record stays: "
            "resend the other under a new id)"
        )
    assert queue_depth(pipeline) == 1, "nothing was moved, and nothing came back"


def test_max_limits_a_redrive(pipeline):
    invoker = RunnerInvoker(pipeline)
    ops = runner_pipeline(pipeline)
    send([{"id": f"bad {i}"} for i in range(3)], invoker, ops.entry)
    invoker.finish()
    result = redrive(pipeline.sqs, ops, invoker, include_rejected=True, max_messages=2)
    invoker.finish()  # they fail again at the validator: back in the DLQ as new messages
    assert (result.redriven, result.beyond_max) == (2, 1)
    assert "left in the queue: 1 beyond --max" in result.line()
    assert queue_depth(pipeline) == 3


def test_the_lambda_invoker_sends_json_async_to_the_alias_and_retries_throttling(monkeypatch):
    from botocore.exceptions import ClientError

    from pipeline_tools import pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module.time, "sleep", lambda seconds: None)
    calls: list[dict[str, Any]] = []

    class Lambda:
        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            calls.append(kwargs)
            if len(calls) < 3:
                raise ClientError({"Error": {"Code": "TooManyRequestsException"}}, "Invoke")
            return {"StatusCode": 202}

    invoker = pipeline_module.LambdaInvoker(Lambda(), {"validator": "arn:fn:validator:live"})
    invoker.invoke("validator", RECORD)
    assert len(calls) == 3
    assert calls[-1]["FunctionName"] == "arn:fn:validator:live"
    assert calls[-1]["InvocationType"] == "Event"
    assert json.loads(calls[-1]["Payload"]) == RECORD

    class Refusing:
        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "Invoke")

    with pytest.raises(ClientError):
        pipeline_module.LambdaInvoker(Refusing(), {"validator": "x"}).invoke("validator", RECORD)


# --- one line, never a traceback, on the AWS path ----------------------------------------------


@pytest.mark.parametrize("command", [["dead-letters"], ["counts", "--day", "2026-11-29"]])
def test_no_region_is_one_line(monkeypatch, capsys, command):
    from pipeline_tools.operate import main

    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    assert main(command) == 1
    error = capsys.readouterr().err
    assert (
        error.startswith("error: no AWS region: set AWS_DEFAULT_REGION") and error.count("\n") == 1
    )


def test_no_credentials_is_one_line(monkeypatch, capsys):
    from pipeline_tools.operate import main

    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup
    assert main(["dead-letters"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: no AWS credentials") and error.count("\n") == 1


@pytest.mark.parametrize("command", [["send", "{records}"], ["counts", "--day", "2026-11-29"]])
def test_a_missing_stack_is_one_line(capsys, tmp_path, command):
    from moto import mock_aws

    from pipeline_tools.operate import main

    records = tmp_path / "records.json"
    records.write_text('{"id": "r-1"}')
    with mock_aws():
        assert (
            main(["--stack", "DataPipeline-nope", *[c.format(records=records) for c in command]])
            == 1
        )
    error = capsys.readouterr().err
    assert error == (
        "error: stack 'DataPipeline-nope' does not exist in us-east-1: deploy it, or pass "
        "--stack NAME (default DataPipeline-dev)\n"
    )


def test_a_pretty_printed_array_cut_off_is_diagnosed_as_json_not_ndjson(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('[\n  {"id": "a", "type": "order"},\n  {"id": "b",\n')
    with pytest.raises(RecordFileError) as caught:
        read_records(path)
    assert str(caught.value).startswith(f"{path}: not valid JSON: ")
    assert "NDJSON" not in str(caught.value)


@pytest.mark.parametrize("value", ["-1", "0", "two"])
def test_redrive_max_and_send_parallel_take_a_whole_number_from_1(capsys, tmp_path, value):
    from pipeline_tools.operate import main

    records = tmp_path / "records.json"
    records.write_text('{"id": "r-1"}')
    for command in (["redrive", "--max", value], ["send", str(records), "--parallel", value]):
        with pytest.raises(SystemExit) as caught:
            main(command)
        assert caught.value.code == 2
        (line,) = capsys.readouterr().err.splitlines()  # one line, naming the argument
        assert line.startswith("error: pipeline ") and "argument --" in line and "--help" in line


def test_a_refusal_names_the_record_as_people_count_from_1():
    from pipeline_tools.operations import SendSummary

    summary = SendSummary(sent=2, refused=[(0, "TooManyRequestsException: slow down")])
    assert summary.line() == (
        "sent 2 of 3 records; 1 refused by Lambda (first: record 1 of the file: "
        "TooManyRequestsException: slow down)"
    )


def test_role_arn_runs_the_command_with_the_assumed_roles_credentials():
    """The pipeline's smoke step passes --role-arn: the command's session is the role's."""
    import boto3
    from moto import mock_aws

    from pipeline_tools.operate import _session

    with mock_aws():
        base = boto3.Session(region_name="eu-west-1")
        assumed = _session(base, "arn:aws:iam::123456789012:role/DataPipeline-smoke-test")
        mine = base.get_credentials().access_key
        theirs = assumed.get_credentials()
        assert theirs.access_key != mine and theirs.token
        assert assumed.region_name == "eu-west-1"
        assert _session(base, None) is base


def test_the_drive_summary_names_a_processor_failures_record():
    """A processor's dead letter is an invocation record: the summary names the record inside
    it (responsePayload.id), as dead-letters does, not None."""
    from pipeline_tools.dead_letters import _letter
    from pipeline_tools.local.local import DriveResult, render_drive

    invocation = {
        "requestContext": {"functionArn": "arn:aws:lambda:us-east-1:1:function:enricher:live"},
        "requestPayload": {},
        "responsePayload": {"id": "order-0002", "type": "order"},
    }
    message = {
        "MessageId": "m-1",
        "ReceiptHandle": "h-1",
        "Body": json.dumps(invocation),
        "MessageAttributes": {
            "ErrorMessage": {
                "StringValue": "id: 'order-0002' is already stored with different content (...)"
            },
        },
    }
    letter = _letter(message, lambda event: "processor", 0.0)
    assert letter.record_id == "order-0002" and letter.is_conflict()
    summary = render_drive(DriveResult([], [], {}, [letter], []), 1)
    assert "  'order-0002': id: 'order-0002' is already stored" in summary
    assert "None" not in summary


def test_a_bad_records_file_is_refused_before_any_aws_call(capsys, tmp_path, monkeypatch):
    """No region, no credentials: the file is what is wrong, and said first (exit status 2)."""
    from pipeline_tools.operate import main

    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    missing = tmp_path / "missing.json"
    with pytest.raises(SystemExit) as caught:
        main(["send", str(missing)])
    assert caught.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"error: pipeline send: argument records: {missing}: no such file "
        "(see pipeline send --help)"
    )
