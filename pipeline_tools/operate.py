"""Operator commands: send records, list the dead letters, redrive each to the stage that failed.

Against a deployed stack (``python -m pipeline_tools.operate``, your AWS credentials)::

    python -m pipeline_tools.operate send records.json --stack DataPipeline-prod
    python -m pipeline_tools.operate dead-letters --stack DataPipeline-prod
    python -m pipeline_tools.operate redrive --stack DataPipeline-prod [--dry-run] [--max N]
                                             [--include-rejected]
    python -m pipeline_tools.operate counts --day 2026-11-29 --stack DataPipeline-prod

and against the local emulator with ``python -m pipeline_tools.local send|dead-letters|redrive|
counts``.
Both run the functions below; only the invoker differs. On AWS an invoke is Lambda's
asynchronous ``Invoke`` of the stage's ``live`` alias. The emulator cannot run Lambda code
without Docker, so there the same invoke goes to the in-process runner running the deployed code.

* ``send`` reads records from a JSON array, one JSON object, or NDJSON (a bad file gets one line
  naming the file and the problem) and invokes ``validator:live`` for each, in bounded parallel,
  retrying throttled invokes.
* ``dead-letters`` lists the DLQ without consuming it: each message is received, read, and made
  visible again at once.
* ``redrive`` re-invokes each message's *failed stage*: a bare record failed at the validator;
  an invocation record names the stage that succeeded (``requestContext.functionArn``), and the
  failed stage is that stage's on-success destination. A message is deleted only once its invoke
  is accepted; validator rejections are skipped unless ``--include-rejected`` (they would fail the
  same way; a validator *crash*, ``unexpected ...``, is redriven). The idempotent processor
  makes a redrive safe to repeat.
* ``counts`` prints the records stored per type on a UTC day (``pipeline_tools/counts.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from pipeline_tools.template import StackTemplate

#: Keys that every Lambda destination invocation record carries (as the runtime code's
#: ``pipeline_common.invocation`` reads them; the tools do not import runtime code).
INVOCATION_RECORD_KEYS = frozenset({"requestContext", "requestPayload", "responsePayload"})
THROTTLING_CODES = frozenset({"TooManyRequestsException", "ThrottlingException"})
#: How a stage's crash begins its DLQ error message (``StageFailure`` in the runtime code).
CRASH_PREFIX = "unexpected "
#: How long a received DLQ message stays hidden while a command works on it.
RECEIVE_VISIBILITY_SECONDS = 120


class RecordFileError(ValueError):
    """A records file that cannot be read, naming the file and the problem."""


class Invoker(Protocol):
    """Queues an asynchronous invocation of a stage's ``live`` alias; raises if refused."""

    def invoke(self, stage: str, event: Any) -> None: ...


@dataclass(frozen=True)
class Pipeline:
    """What the commands need to know of a deployed stack."""

    entry: str  # the stage records enter by (the validator)
    next_stage: Mapping[str, str | None]  # stage -> its on-success destination
    stage_of_function: Mapping[str, str]  # function name -> stage
    dead_letter_queue_url: str

    @classmethod
    def of(
        cls, template: Mapping[str, Any], function_names: Mapping[str, str], queue_url: str
    ) -> Pipeline:
        """From a stack's template and its functions' physical names (stage -> name)."""
        stages = StackTemplate.of(template).stages
        destinations = {s.on_success for s in stages.values() if s.on_success}
        (entry,) = [name for name in stages if name not in destinations]
        return cls(
            entry=entry,
            next_stage={name: stage.on_success for name, stage in stages.items()},
            stage_of_function={function_names[name]: name for name in stages},
            dead_letter_queue_url=queue_url,
        )

    def failed_stage(self, event: Any) -> str:
        """The stage whose invocation of ``event`` failed."""
        if isinstance(event, dict) and event.get("source") == "aws.codedeploy":
            # The scaling pause could not resume scaling after a deployment: no stage to
            # redrive to. It pages through the DLQ alarm; the README's runbook says what to do.
            raise ValueError("a CodeDeploy deployment event: resume the processor's scaling")
        if isinstance(event, dict) and event.keys() >= INVOCATION_RECORD_KEYS:
            arn = str(event["requestContext"].get("functionArn", ""))
            succeeded = self.stage_of_function.get(_function_name(arn))
            following = self.next_stage.get(succeeded) if succeeded else None
            if following is None:
                raise ValueError(f"cannot tell which stage follows {arn!r}")
            return following
        return self.entry


def _function_name(arn: str) -> str:
    """``arn:aws:lambda:r:a:function:NAME[:qualifier]`` -> ``NAME``."""
    parts = arn.split(":")
    return parts[6] if len(parts) > 6 else arn


# --- records files -------------------------------------------------------------------------------


def read_records(path: str | Path) -> list[Any]:
    """The records of a JSON array, a single JSON object, or NDJSON (one record per line).

    :raises RecordFileError: naming the file and the problem, in one line.
    """
    file = Path(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise RecordFileError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise RecordFileError(f"{file}: is a directory, not a records file") from None
    except UnicodeDecodeError as error:
        raise RecordFileError(f"{file}: not UTF-8 text (byte {error.start})") from None
    if not text.strip():
        raise RecordFileError(f"{file}: empty; expected a JSON array, a JSON object or NDJSON")
    try:
        whole = _strict_json(text)
    except ValueError as whole_error:
        lines = [line for line in text.splitlines() if line.strip()]
        # NDJSON is one object a line; anything else (a pretty-printed array cut off, one
        # object over several lines) is a JSON document with its error where it is.
        if len(lines) < 2 or not _is_json_object(lines[0]):
            raise RecordFileError(f"{file}: not valid JSON: {whole_error}") from None
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(_strict_json(line))
                except ValueError as error:
                    raise RecordFileError(
                        f"{file}: line {number} is not valid JSON (NDJSON): {error}"
                    ) from None
        return records
    return whole if isinstance(whole, list) else [whole]


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(_strict_json(line), dict)
    except ValueError:
        return False


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


# --- the commands --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendSummary:
    sent: int
    refused: list[tuple[int, str]]  # (index in the file, from 0; why)

    def line(self) -> str:
        return f"sent {self.sent} of {self.sent + len(self.refused)} records" + (
            f"; {len(self.refused)} refused by Lambda (first: record {self.refused[0][0] + 1} "
            f"of the file: {self.refused[0][1]})"
            if self.refused
            else ""
        )


def send(
    records: Sequence[Any],
    invoker: Invoker,
    entry: str,
    *,
    parallel: int = 8,
    progress: Callable[[str], None] = lambda line: None,
) -> SendSummary:
    """Invoke ``entry`` asynchronously for each record, ``parallel`` at a time."""
    refused: list[tuple[int, str]] = []

    def one(index: int) -> None:
        try:
            invoker.invoke(entry, records[index])
        except Exception as error:
            refused.append((index, f"{type(error).__name__}: {error}"))

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for done, _ in enumerate(pool.map(one, range(len(records))), start=1):
            if done % 100 == 0:
                progress(f"sent {done}/{len(records)}")
    return SendSummary(len(records) - len(refused), sorted(refused))


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    receipt_handle: str
    event: Any
    failed_stage: str
    error: str
    record_id: str | None
    age_seconds: float

    def is_rejection(self, entry: str) -> bool:
        """Refused by the entry stage's contract: it would fail the same way again. A crash
        there (``unexpected ...``, see ``pipeline_common.invocation.StageFailure``) is not."""
        return self.failed_stage == entry and not self.error.startswith(CRASH_PREFIX)

    def line(self) -> str:
        return (
            f"{self.failed_stage:<10} {self.record_id or '-'!s:<28} "
            f"{_age(self.age_seconds):>6}  {self.error}"
        )


def dead_letters(sqs: Any, pipeline: Pipeline, *, limit: int | None = None) -> list[DeadLetter]:
    """Every message in the DLQ (at most ``limit``), oldest first, left in the queue."""
    letters = receive_all(sqs, pipeline, limit)
    release(sqs, pipeline.dead_letter_queue_url, letters)
    return sorted(letters, key=lambda letter: -letter.age_seconds)


def receive_all(sqs: Any, pipeline: Pipeline, limit: int | None = None) -> list[DeadLetter]:
    """Receive each message once: each stays invisible until ``release`` or its deletion."""
    url = pipeline.dead_letter_queue_url
    seen: dict[str, DeadLetter] = {}
    now = time.time()
    while limit is None or len(seen) < limit:
        response = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10 if limit is None else min(10, limit - len(seen)),
            VisibilityTimeout=RECEIVE_VISIBILITY_SECONDS,
            MessageAttributeNames=["All"],
            AttributeNames=["SentTimestamp"],
        )
        messages = [m for m in response.get("Messages", []) if m["MessageId"] not in seen]
        if not messages:
            break
        for message in messages:
            seen[message["MessageId"]] = _letter(message, pipeline, now)
    return list(seen.values())


def release(sqs: Any, url: str, letters: Iterable[DeadLetter]) -> None:
    """Make received messages visible again at once: they stay in the queue, unconsumed."""
    for letter in letters:
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=letter.receipt_handle, VisibilityTimeout=0
        )


def _letter(message: Mapping[str, Any], pipeline: Pipeline, now: float) -> DeadLetter:
    try:
        event = json.loads(message["Body"])
    except ValueError:
        event = message["Body"]
    try:
        stage = pipeline.failed_stage(event)
    except ValueError:
        stage = "?"
    record = event.get("responsePayload") if isinstance(event, dict) else None
    record = record if isinstance(record, dict) else event
    record_id = record.get("id") if isinstance(record, dict) else None
    attributes = message.get("MessageAttributes", {})
    sent = int(message.get("Attributes", {}).get("SentTimestamp", now * 1000)) / 1000
    return DeadLetter(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        event=event,
        failed_stage=stage,
        error=attributes.get("ErrorMessage", {}).get("StringValue", ""),
        record_id=str(record_id) if record_id is not None else None,
        age_seconds=max(0.0, now - sent),
    )


@dataclass(frozen=True)
class RedriveSummary:
    redriven: int
    skipped_rejected: int
    refused: list[tuple[str, str]]  # (message id, why)
    dry_run: bool

    def line(self) -> str:
        verb = "would redrive" if self.dry_run else "redrove"
        text = f"{verb} {self.redriven}; skipped {self.skipped_rejected} validator rejections"
        if self.refused:
            text += f"; {len(self.refused)} refused and left in the queue"
        return text


def redrive(
    sqs: Any,
    pipeline: Pipeline,
    invoker: Invoker,
    *,
    dry_run: bool = False,
    max_messages: int | None = None,
    include_rejected: bool = False,
    progress: Callable[[str], None] = lambda line: None,
) -> RedriveSummary:
    """Re-invoke each dead letter's failed stage; delete it only once the invoke is accepted.

    Messages it does not redrive (skipped, refused, beyond ``max_messages``, or all of them on a
    dry run) are made visible again at the end, untouched.
    """
    url = pipeline.dead_letter_queue_url
    redriven, skipped = 0, 0
    refused: list[tuple[str, str]] = []
    kept: list[DeadLetter] = []
    for letter in sorted(receive_all(sqs, pipeline), key=lambda item: -item.age_seconds):
        if letter.is_rejection(pipeline.entry) and not include_rejected:
            skipped += 1
        elif max_messages is not None and redriven + len(refused) >= max_messages:
            pass
        elif letter.failed_stage == "?":
            refused.append((letter.message_id, "cannot tell which stage failed"))
        elif dry_run:
            named = letter.record_id or "a record without an id"
            progress(f"would redrive {named} to {letter.failed_stage}")
            redriven += 1
        else:
            try:
                invoker.invoke(letter.failed_stage, letter.event)
            except Exception as error:
                refused.append((letter.message_id, f"{type(error).__name__}: {error}"))
            else:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=letter.receipt_handle)
                redriven += 1
                if redriven % 100 == 0:
                    progress(f"redrove {redriven}")
                continue
        kept.append(letter)
    release(sqs, url, kept)
    return RedriveSummary(redriven, skipped, refused, dry_run)


def _finish(invoker: Invoker) -> None:
    """Let an in-process invoker run what it queued (Lambda needs no such step)."""
    finish = getattr(invoker, "finish", None)
    if finish is not None:
        finish()


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


# --- in-process, for the local emulator and the tests ----------------------------------------


class RunnerInvoker:
    """The in-process runner as the invoker: it runs the deployed code as Lambda's async invoke
    would (the local emulator cannot run Lambda code without Docker). Invocations are queued;
    ``finish`` runs them and everything they lead to."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner

    def invoke(self, stage: str, event: Any) -> None:
        self.runner.invoke_async(event, stage)  # as JSON, within Invoke's limits

    def finish(self) -> None:
        self.runner.drain()


def runner_pipeline(runner: Any) -> Pipeline:
    """The pipeline an in-process runner runs (``pipeline_tools.runner.AsyncPipeline``)."""
    specs = runner.specs
    (queue,) = {s.dead_letter_queue_url for s in specs.values() if s.dead_letter_queue_url}
    return Pipeline(
        entry=runner.entry,
        next_stage={name: spec.on_success for name, spec in specs.items()},
        stage_of_function={_function_name(spec.arn): name for name, spec in specs.items()},
        dead_letter_queue_url=queue,
    )


# --- on AWS --------------------------------------------------------------------------------------


class LambdaInvoker:
    """Lambda's asynchronous ``Invoke`` of each stage's ``live`` alias, retried on throttling."""

    def __init__(self, lambda_client: Any, alias_arns: Mapping[str, str], attempts: int = 6):
        self.client = lambda_client
        self.alias_arns = dict(alias_arns)
        self.attempts = attempts

    def invoke(self, stage: str, event: Any) -> None:
        payload = json.dumps(event, allow_nan=False).encode()
        for attempt in range(self.attempts):
            try:
                self.client.invoke(
                    FunctionName=self.alias_arns[stage], InvocationType="Event", Payload=payload
                )
                return
            except Exception as error:
                code = getattr(error, "response", {}).get("Error", {}).get("Code")
                if code not in THROTTLING_CODES or attempt == self.attempts - 1:
                    raise
                time.sleep(min(8.0, 0.2 * 2**attempt))


def deployed_pipeline(session: Any, stack_name: str) -> tuple[Pipeline, LambdaInvoker]:
    """The pipeline of a deployed stack, and the invoker of its aliases."""
    from pipeline_tools.local.deployed import DeployedStack

    stack = DeployedStack.read(session, stack_name)
    stages = StackTemplate.of(stack.template).stages
    names = {name: stack.physical[stage.function_id] for name, stage in stages.items()}
    pipeline = Pipeline.of(stack.template, names, stack.outputs["DlqUrl"])
    lam = session.client("lambda")
    aliases = {
        name: f"{lam.get_function(FunctionName=function)['Configuration']['FunctionArn']}:live"
        for name, function in names.items()
    }
    return pipeline, LambdaInvoker(lam, aliases)


def _positive(text: str) -> int:
    """An argparse type: a whole number from 1."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is below 1")
    return number


def add_commands(commands: Any) -> None:
    """Add ``send``, ``dead-letters`` and ``redrive`` to an argparse ``add_subparsers`` object
    (here, and in ``python -m pipeline_tools.local``)."""
    send_cmd = commands.add_parser("send", help="send records to validator:live")
    send_cmd.add_argument("records", type=Path, help="a JSON array, one JSON object, or NDJSON")
    send_cmd.add_argument(
        "--parallel", type=_positive, default=8, help="invokes at once (default 8)"
    )
    commands.add_parser("dead-letters", help="list the DLQ without consuming it")
    redrive_cmd = commands.add_parser("redrive", help="re-invoke each message's failed stage")
    redrive_cmd.add_argument("--dry-run", action="store_true", help="say what would happen")
    redrive_cmd.add_argument(
        "--max", type=_positive, dest="max_messages", help="at most N messages (N from 1)"
    )
    redrive_cmd.add_argument(
        "--include-rejected",
        action="store_true",
        help="redrive validator rejections too (they fail again unless the code changed)",
    )
    smoke_cmd = commands.add_parser(
        "smoke", help="send known records, check each is stored or rejected, clean up"
    )
    smoke_cmd.add_argument(
        "--timeout", type=_positive, default=180, help="seconds to wait (default 180)"
    )
    counts_cmd = commands.add_parser("counts", help="the records stored per type on a UTC day")
    counts_cmd.add_argument("--day", required=True, help="the UTC day, as YYYY-MM-DD")


def main(argv: Iterable[str] | None = None) -> int:
    """Against a deployed stack, with your AWS credentials (``AWS_ENDPOINT_URL`` is honoured)."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_tools.operate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--stack", default="DataPipeline-dev", help="default DataPipeline-dev")
    parser.add_argument(
        "--role-arn", help="assume this role first (the pipeline's smoke step, cross-account)"
    )
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        return _on_aws(args)
    except OperatorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


class OperatorError(RuntimeError):
    """What stops a command on AWS, said in one line (no region, no credentials, no stack)."""


def _session(session: Any, role_arn: str | None) -> Any:
    """``session``, or one with the credentials of ``role_arn`` (assumed for an hour)."""
    if role_arn is None:
        return session
    credentials = session.client("sts").assume_role(
        RoleArn=role_arn, RoleSessionName="pipeline-operator"
    )["Credentials"]
    import boto3

    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=session.region_name,
    )


def _on_aws(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    try:
        session = _session(boto3.Session(), args.role_arn)
        if args.command == "counts":
            from pipeline_tools.counts import print_counts
            from pipeline_tools.local.deployed import DeployedStack

            table = DeployedStack.read(session, args.stack).outputs["TableName"]
            return print_counts(session.client("dynamodb"), table, args.day)
        pipeline, invoker = deployed_pipeline(session, args.stack)
        if args.command == "smoke":
            from pipeline_tools.local.deployed import DeployedStack
            from pipeline_tools.smoke import run_smoke

            table = DeployedStack.read(session, args.stack).outputs["TableName"]
            dynamodb = session.client("dynamodb")
            return run_smoke(args, session.client("sqs"), dynamodb, table, pipeline, invoker)
        return run_command(args, session.client("sqs"), pipeline, invoker)
    except NoRegionError:
        raise OperatorError(
            "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or a region in your profile"
        ) from None
    except NoCredentialsError:
        raise OperatorError(
            "no AWS credentials: set AWS_PROFILE, or run `aws configure` / `aws sso login`"
        ) from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", str(error))
        if code == "ValidationError" and "does not exist" in message:
            raise OperatorError(
                f"stack {args.stack!r} does not exist in {session.region_name}: deploy it, or "
                "pass --stack NAME (default DataPipeline-dev)"
            ) from None
        raise OperatorError(f"{code or 'AWS error'}: {message}") from None


def run_command(
    args: argparse.Namespace,
    sqs: Any,
    pipeline: Pipeline,
    invoker: Invoker,
    out: TextIO | None = None,
) -> int:
    """``send``, ``dead-letters`` or ``redrive`` with parsed ``args``; prints one summary line
    (to ``out``, default standard output) and progress on standard error."""
    out = out or sys.stdout

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.command == "send":
        try:
            records = read_records(args.records)
        except RecordFileError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        summary = send(records, invoker, pipeline.entry, parallel=args.parallel, progress=progress)
        _finish(invoker)
        print(summary.line(), file=out)
        return 0 if not summary.refused else 1
    if args.command == "dead-letters":
        letters = dead_letters(sqs, pipeline)
        for letter in letters:
            print(letter.line(), file=out)
        print(f"{len(letters)} messages in the DLQ (left there)", file=out)
        return 0
    result = redrive(
        sqs,
        pipeline,
        invoker,
        dry_run=args.dry_run,
        max_messages=args.max_messages,
        include_rejected=args.include_rejected,
        progress=progress,
    )
    _finish(invoker)
    print(result.line(), file=out)
    return 0 if not result.refused else 1


if __name__ == "__main__":
    raise SystemExit(main())
