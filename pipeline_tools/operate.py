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

* ``send`` reads records from a JSON array, one JSON object, or NDJSON (``records_file``; a
  bad file gets one line naming the file and the problem) and invokes ``validator:live`` for
  each (``operations``).
* ``dead-letters`` lists the DLQ without consuming it (``dead_letters``).
* ``redrive`` re-invokes each message's failed stage (``operations``).
* ``smoke`` sends known records and checks where each ended (``smoke``).
* ``counts`` prints the records stored per type on a UTC day (``pipeline_tools/counts.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from pipeline_tools.arguments import OneLineParser
from pipeline_tools.aws_errors import explain
from pipeline_tools.dead_letters import peek
from pipeline_tools.operations import finish, redrive, send
from pipeline_tools.pipeline import Invoker, Pipeline
from pipeline_tools.records_file import records_argument
from pipeline_tools.stage_queues import deployed


def _positive(text: str) -> int:
    """An argparse type: a whole number from 1."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is below 1")
    return number


def _day(text: str) -> str:
    """An argparse type: a real date as YYYY-MM-DD, checked before any AWS call."""
    from pipeline_tools.counts import layout

    try:
        layout().check_day(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def add_commands(commands: Any) -> None:
    """Add ``send``, ``dead-letters`` and ``redrive`` to an argparse ``add_subparsers`` object
    (here, and in ``python -m pipeline_tools.local``)."""
    send_cmd = commands.add_parser("send", help="send records to validator:live")
    send_cmd.add_argument(
        "records", type=records_argument, help="a JSON array, one JSON object, or NDJSON"
    )
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
    counts_cmd.add_argument("--day", required=True, type=_day, help="the UTC day, as YYYY-MM-DD")


def main(argv: Iterable[str] | None = None) -> int:
    """Against a deployed stack, with your AWS credentials (``AWS_ENDPOINT_URL`` is honoured)."""
    parser = OneLineParser(prog="pipeline", description=__doc__.split("\n")[0])
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
    """Run the command on AWS; every AWS-side failure becomes one ``OperatorError`` line."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    region = None
    try:
        session = _session(boto3.Session(), args.role_arn)
        region = session.region_name
        return _command_on_aws(args, session)
    except (BotoCoreError, ClientError) as error:
        line = explain(error, stack=args.stack, region=region) or str(error)
        raise OperatorError(line) from None


def _command_on_aws(args: argparse.Namespace, session: Any) -> int:
    if args.command == "counts":
        from pipeline_tools.counts import print_counts
        from pipeline_tools.local.deployed import DeployedStack

        table = DeployedStack.read(session, args.stack).outputs["TableName"]
        return print_counts(session.client("dynamodb"), table, args.day)
    pipeline, invoker = deployed(session, args.stack)
    if args.command == "smoke":
        from pipeline_tools.local.deployed import DeployedStack
        from pipeline_tools.smoke import run_smoke

        table = DeployedStack.read(session, args.stack).outputs["TableName"]
        dynamodb = session.client("dynamodb")
        return run_smoke(args, session.client("sqs"), dynamodb, table, pipeline, invoker)
    return run_command(args, session.client("sqs"), pipeline, invoker)


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
        records = args.records  # read and checked by the parser (records_argument)
        summary = send(records, invoker, pipeline.entry, parallel=args.parallel, progress=progress)
        finish(invoker)
        print(summary.line(), file=out)
        return 0 if not summary.refused else 1
    if args.command == "dead-letters":
        letters = peek(sqs, pipeline.dead_letter_queue_url, pipeline.failed_stage)
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
    finish(invoker)
    print(result.line(), file=out)
    return 0 if not result.refused else 1


if __name__ == "__main__":
    raise SystemExit(main())
