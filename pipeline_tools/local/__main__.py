"""``python -m pipeline_tools.local COMMAND``: the stack, deployed locally, no AWS account.

``up``     start the emulator (moto on 127.0.0.1), bootstrap it, ``cdk deploy`` the dev stack,
           report what the emulator did not create, drive the sample records through the
           deployed code, print the results, and stop the emulator (``--keep`` leaves it up;
           ``--ingestion batched`` deploys the batched path, whose queues the runner polls).
``drive``  send records (default: the samples) through a kept emulator's stack, and print what
           became of them (the DLQ is read, not consumed).
``send``, ``dead-letters``, ``redrive``: the operator commands of ``pipeline_tools.operate``,
           on a kept emulator's stack.
``down``   ``cdk destroy`` the stack in a kept emulator and stop it.

Records files are a JSON array, one JSON object, or NDJSON.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pipeline_tools.arguments import OneLineParser
from pipeline_tools.local.deployed import DeployedStack
from pipeline_tools.local.emulator_gaps import find_gaps, render, split_gaps
from pipeline_tools.local.local import (
    SAMPLE_RECORDS,
    Emulator,
    LocalDeployError,
    aws_environment,
    aws_pointed_at,
    bootstrap,
    deploy,
    destroy,
    drive,
    free_port,
    operate,
    render_drive,
    stack_name,
)
from pipeline_tools.operate import add_commands
from pipeline_tools.records_file import records_argument

#: ``serverless_stack.config.INGESTION_MODES`` (a test holds them equal): importing the settings
#: would load aws-cdk-lib, and with it jsii's Node process, into every local command.
INGESTION_MODES = ("per_record", "batched")

#: The environment the local emulator deploys.
ENVIRONMENT = "dev"


def up(
    environment: str, port: int, keep: bool, records: list[Any], ingestion: str | None = None
) -> int:
    emulator = Emulator(port)
    print(f"Starting the emulator on {emulator.endpoint} ...", flush=True)
    emulator.start()
    try:
        env = aws_environment(emulator)
        print("Bootstrapping ...", flush=True)
        bootstrap(env)
        mode = f" -c ingestion={ingestion}" if ingestion else ""
        print(f"cdk deploy {stack_name(environment)}{mode} --method=direct ...", flush=True)
        deploy(env, environment, ingestion=ingestion)
        import boto3

        with aws_pointed_at(emulator):
            session = boto3.Session(region_name="us-east-1")
            gaps = find_gaps(session, DeployedStack.read(session, stack_name(environment)))
        print(render(gaps))
        _, unknown = split_gaps(gaps)
        if unknown:
            print(
                "The emulator dropped something that is not on "
                "pipeline_tools/local/known_gaps.json: what you see below would not prove what "
                "you think.",
                file=sys.stderr,
            )
            return 1
        print()
        print(render_drive(drive(emulator, environment, records), len(records)))
    finally:
        if keep:
            print(
                f"\nThe emulator keeps running on {emulator.endpoint} "
                "(`make destroy-local` tears it down)."
            )
        else:
            emulator.stop()
            print("\nThe emulator was stopped.")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="pipeline local", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start, bootstrap, deploy, drive the samples")
    up_parser.add_argument("--keep", action="store_true", help="leave the emulator running")
    up_parser.add_argument("--port", type=int, default=0, help="default: a free port")
    up_parser.add_argument(
        "--ingestion",
        choices=INGESTION_MODES,
        help="the path records take (default: the environment's in cdk.json)",
    )
    drive_parser = commands.add_parser("drive", help="drive records through a kept emulator")
    for sub in (up_parser, drive_parser):
        sub.add_argument(
            "--records",
            type=records_argument,
            default=str(SAMPLE_RECORDS),
            help="a JSON array, one JSON object, or NDJSON",
        )
    commands.add_parser("down", help="destroy the stack in a kept emulator and stop it")
    add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        kept = Emulator.kept()
        stopped = kept is not None and not kept.answers()
        if stopped and kept is not None:
            # It exited (killed, the machine restarted) or hangs: its stack is gone with it.
            # Stop what may be left of its process group, and clear its record.
            kept.stop()
        running = None if stopped else kept
        if args.command != "up":
            return _on_running(running, args, stopped=stopped)
        if running:
            print("An emulator is already running: `make destroy-local` first.", file=sys.stderr)
            return 1
        return up(ENVIRONMENT, args.port or free_port(), args.keep, args.records, args.ingestion)
    except LocalDeployError as error:
        print(f"local deploy: {error}", file=sys.stderr)
        return 1


#: Said when the emulator a ``make deploy-local KEEP=1`` left has exited since.
STOPPED = "The emulator `make deploy-local KEEP=1` left has stopped (its stack went with it)"


def _on_running(
    emulator: Emulator | None, args: argparse.Namespace, *, stopped: bool = False
) -> int:
    """``drive``, an operator command or ``down``, on the emulator that is running."""
    if emulator is None and args.command == "down":
        # A second `make destroy-local`, or one after the emulator died: nothing is left to do.
        print(
            f"{STOPPED}: nothing to destroy."
            if stopped
            else "No emulator is running: nothing to destroy."
        )
        return 0
    if emulator is None:
        said = STOPPED if stopped else "No emulator is running"
        print(f"{said}: start one with `make deploy-local KEEP=1`.", file=sys.stderr)
        return 1
    if args.command == "drive":
        print(render_drive(drive(emulator, ENVIRONMENT, args.records), len(args.records)))
        return 0
    if args.command in ("send", "dead-letters", "redrive", "counts", "smoke"):
        return _operate_on(emulator, args)
    try:
        destroy(aws_environment(emulator), ENVIRONMENT)
        print(f"Destroyed {stack_name(ENVIRONMENT)}.")
    finally:
        emulator.stop()
        print("The emulator was stopped.")
    return 0


def _operate_on(emulator: Emulator, args: argparse.Namespace) -> int:
    """An operator command on the emulator; one line if the emulator stops answering during it."""
    from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

    try:
        return operate(emulator, ENVIRONMENT, args)
    except (EndpointConnectionError, ConnectionClosedError):
        if emulator.answers():
            raise
        emulator.stop()
        print(
            f"{STOPPED} during the command: start one with `make deploy-local KEEP=1`.",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
