"""Start the emulator, bootstrap, deploy with the real CDK CLI, drive records, tear down."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_tools.counts import daily_counts, print_counts
from pipeline_tools.dead_letters import DeadLetter, peek
from pipeline_tools.local.deployed import DeployedStack, queue_mappings, specs_from_deployment
from pipeline_tools.operate import run_command
from pipeline_tools.pipeline import Pipeline, RunnerInvoker, runner_pipeline
from pipeline_tools.runner.event_source import QueuePipeline, WallClock
from pipeline_tools.runner.runner import AsyncPipeline, Outcome
from pipeline_tools.runner.runtime import environment_variables
from pipeline_tools.stage_queues import QueueInvoker, is_batched, queue_pipeline

ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = ROOT / ".local"
STATE_FILE = STATE_DIR / "emulator.json"
SAMPLE_RECORDS = Path(__file__).resolve().parent / "sample_records.json"
ACCOUNT, REGION = "123456789012", "us-east-1"
#: The longest the batched path's pollers run in the emulator before giving up on a queue.
QUEUE_SECONDS = 900.0
#: The reference item the drive seeds, so that one record type has a category.
SEED_CATEGORIES = {"order": "sales"}


class LocalDeployError(RuntimeError):
    """A step of the local deploy failed; the message carries the step's output."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Emulator:
    """The moto server (``pipeline_tools.local.emulator``) in a child process on 127.0.0.1."""

    port: int
    pid: int | None = None

    @property
    def endpoint(self) -> str:
        # "localhost", not 127.0.0.1: with an IP, the CLI's TemplateURL makes moto look for
        # a bucket named "127".
        return f"http://localhost:{self.port}"

    def start(self, timeout: float = 30) -> None:
        STATE_DIR.mkdir(exist_ok=True)
        log = (STATE_DIR / "emulator.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline_tools.local.emulator", "--port", str(self.port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = process.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LocalDeployError(
                    f"the emulator exited at start; see {STATE_DIR}/emulator.log"
                )
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()
                STATE_FILE.write_text(json.dumps({"port": self.port, "pid": self.pid}))
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise LocalDeployError(f"the emulator did not answer on port {self.port} in {timeout} s")

    def stop(self) -> None:
        if self.pid is not None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                for _ in range(50):
                    os.kill(self.pid, 0)
                    time.sleep(0.1)
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        STATE_FILE.unlink(missing_ok=True)
        self.pid = None

    def answers(self) -> bool:
        """Whether the emulator answers on its port (its process may have exited)."""
        try:
            urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2).close()
        except OSError:
            return False
        return True

    @classmethod
    def kept(cls) -> Emulator | None:
        """The emulator a previous ``up --keep`` recorded, alive or not."""
        if not STATE_FILE.is_file():
            return None
        state = json.loads(STATE_FILE.read_text())
        return cls(port=state["port"], pid=state["pid"])


def aws_environment(emulator: Emulator) -> dict[str, str]:
    """The environment for the CDK CLI and boto3: the emulator, fake credentials, no profile."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k not in ("CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION")
    }
    env.update(
        {
            "AWS_ENDPOINT_URL": emulator.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "PATH": os.pathsep.join(
                [
                    str(ROOT / "node_modules" / ".bin"),
                    str(Path(sys.executable).parent),
                    env.get("PATH", ""),
                ]
            ),
        }
    )
    return env


def cdk(args: list[str], env: Mapping[str, str], cwd: Path = ROOT, timeout: int = 300) -> str:
    """Run the project's pinned CDK CLI; raise with its output when it fails."""
    binary = ROOT / "node_modules" / ".bin" / "cdk"
    if not binary.exists():
        raise LocalDeployError("the CDK CLI is not installed: run `make install`")
    result = subprocess.run(
        [str(binary), *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise LocalDeployError(
            f"cdk {' '.join(args[:2])} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout + result.stderr


def stack_name(environment: str) -> str:
    return f"DataPipeline-{environment}"


def context_args(environment: str, ingestion: str | None = None) -> list[str]:
    """The deploy's context: the environment, the emulator's settings and, if given, the
    path records take (``-c ingestion=MODE``, over ``cdk.json``)."""
    mode = ["-c", f"ingestion={ingestion}"] if ingestion else []
    return ["-c", f"environment={environment}", "-c", "local_emulator=true", *mode]


def bootstrap(env: Mapping[str, str]) -> None:
    """``cdk bootstrap``; it synthesizes the app too, into the local target's own output, so it
    never meets another CLI in the project's ``cdk.out``."""
    cdk(["bootstrap", f"aws://{ACCOUNT}/{REGION}", "--output", str(_output_dir(ROOT))], env)


def deploy(
    env: Mapping[str, str],
    environment: str = "dev",
    project: Path = ROOT,
    ingestion: str | None = None,
) -> str:
    """``cdk deploy --method=direct`` (change sets lose the outputs on moto, and updates fail);
    ``ingestion``: the path records take, over ``cdk.json`` (``per_record`` or ``batched``)."""
    flags = ["--method=direct", "--require-approval", "never"]
    return _stack_command("deploy", flags, env, environment, project, ingestion)


def destroy(env: Mapping[str, str], environment: str = "dev", project: Path = ROOT) -> str:
    return _stack_command("destroy", ["--force"], env, environment, project)


def _stack_command(
    command: str,
    flags: list[str],
    env: Mapping[str, str],
    environment: str,
    project: Path,
    ingestion: str | None = None,
) -> str:
    """``cdk <command> <stack>`` for the local target, its output kept out of the project's."""
    return cdk(
        [
            command,
            stack_name(environment),
            *context_args(environment, ingestion),
            *flags,
            "--output",
            str(_output_dir(project)),
        ],
        env,
        cwd=project,
    )


def _output_dir(project: Path) -> Path:
    return project / ".local" / "cdk.out"


@contextmanager
def aws_pointed_at(emulator: Emulator) -> Iterator[None]:
    """Point this process's boto3 (and the handlers it runs) at the emulator."""
    wanted: dict[str, str | None] = {k: None for k in os.environ if k.startswith("AWS_")}
    wanted.update({k: v for k, v in aws_environment(emulator).items() if k.startswith("AWS_")})
    with environment_variables(wanted):
        yield


@dataclass
class DriveResult:
    outcomes: list[Outcome]
    stored: list[dict[str, Any]]
    #: ``{(type, day): n}`` for the days of the stored records, read by ``counts``' reader.
    counters: dict[tuple[str, str], int]
    dead_letters: list[DeadLetter]
    notes: list[str]
    #: The batched path: batches each stage ran (its event source mapping's invocations).
    batches: dict[str, int] | None = None


@contextmanager
def deployed_runner(
    emulator: Emulator, environment: str
) -> Iterator[tuple[Any, DeployedStack, AsyncPipeline | QueuePipeline, list[str]]]:
    """The runner over the code deployed in the emulator: ``(session, stack, runner, notes)``.

    The handlers' own output (Powertools JSON logs, EMF metrics) goes to ``.local/handlers.log``,
    as it would go to CloudWatch Logs, so that what the commands print stays readable.
    """
    import boto3

    with aws_pointed_at(emulator), tempfile.TemporaryDirectory() as code_root:
        session = boto3.Session(region_name=REGION)
        stack = DeployedStack.read(session, stack_name(environment))
        specs, notes = specs_from_deployment(session, stack, Path(code_root))
        for record_type, category in SEED_CATEGORIES.items():
            session.client("dynamodb").put_item(
                TableName=stack.outputs["TableName"],
                Item={
                    "pk": {"S": f"CATEGORY#{record_type}"},
                    "sk": {"S": "META"},
                    "category": {"S": category},
                },
            )
        STATE_DIR.mkdir(exist_ok=True)
        with (STATE_DIR / "handlers.log").open("a") as log, redirect_stdout(log):
            runner = _runner(session, stack, specs, notes)
            notes.append(f"handler logs and metrics: {STATE_DIR / 'handlers.log'}")
            yield session, stack, runner, notes


def _runner(
    session: Any, stack: DeployedStack, specs: Mapping[str, Any], notes: list[str]
) -> AsyncPipeline | QueuePipeline:
    """The runner of the deployed stack's path: Lambda's asynchronous invokes, or its SQS
    event source mappings polling the stages' queues in the emulator."""
    if not is_batched(stack.template):
        return AsyncPipeline(specs, session.client("sqs"))
    runner = QueuePipeline(
        specs, session.client("sqs"), queue_mappings(session, stack), WallClock()
    )
    # Every record is in its queue before the pollers start: waiting out a window adds nothing.
    runner.gathered = True
    notes.append("the stages read their queues: the runner polls them as their mappings do")
    return runner


class RunnerQueueInvoker(QueueInvoker):
    """The batched path's invoker in the emulator: records go into the stages' queues, and
    ``finish`` runs the mappings' pollers until every queue is empty (retries wait in real
    time, for at most :data:`QUEUE_SECONDS`)."""

    def __init__(self, sqs: Any, queue_urls: Mapping[str, str], runner: QueuePipeline) -> None:
        super().__init__(sqs, queue_urls)
        self.runner = runner

    def finish(self) -> None:
        self.runner.run(max_seconds=QUEUE_SECONDS)


def pipeline_and_invoker(
    session: Any, stack: DeployedStack, runner: AsyncPipeline | QueuePipeline
) -> tuple[Pipeline, Any]:
    """The deployed stack's pipeline, and the invoker that feeds the runner its records."""
    if isinstance(runner, QueuePipeline):
        pipeline, urls = queue_pipeline(stack.template, stack.physical, stack.outputs["DlqUrl"])
        return pipeline, RunnerQueueInvoker(session.client("sqs"), urls, runner)
    return runner_pipeline(runner), RunnerInvoker(runner)


def drive(emulator: Emulator, environment: str, records: list[Any]) -> DriveResult:
    """Send ``records`` through the code deployed in the emulator; read back what it did.

    The DLQ is read, not consumed: its messages stay for ``dead-letters`` and ``redrive``.
    """
    with deployed_runner(emulator, environment) as (session, stack, runner, notes):
        batches = None
        if isinstance(runner, QueuePipeline):
            pipeline, invoker = pipeline_and_invoker(session, stack, runner)
            refused = invoker.invoke_many(pipeline.entry, records)
            notes += [f"record {i} refused by SQS: {why}" for i, why in refused]
            invoker.finish()
            outcomes: list[Outcome] = []
            batches = dict(runner.tally.invocations)
        else:
            outcomes = runner.run(records)
        ddb = session.client("dynamodb")
        table = stack.outputs["TableName"]
        items = [
            i for page in ddb.get_paginator("scan").paginate(TableName=table) for i in page["Items"]
        ]
        stored = [
            {k: next(iter(v.values())) for k, v in i.items()}
            for i in items
            if i["pk"]["S"].startswith("RECORD#")
        ]
        days = sorted({str(record["timestamp"])[:10] for record in stored})
        counters = {
            (record_type, day): n
            for day in days
            for record_type, n in daily_counts(ddb, table, day).items()
        }
        letters = peek(session.client("sqs"), stack.outputs["DlqUrl"])
        return DriveResult(outcomes, stored, counters, letters, notes, batches)


def operate(emulator: Emulator, environment: str, args: Any) -> int:
    """``send``, ``dead-letters``, ``redrive`` or ``counts`` (``pipeline_tools.operate``) on the
    emulator."""
    out = sys.stdout  # the handlers' output goes to the log; the summary to the caller
    with deployed_runner(emulator, environment) as (session, stack, runner, _notes):
        if args.command == "counts":
            table = stack.outputs["TableName"]
            return print_counts(session.client("dynamodb"), table, args.day, out=out)
        pipeline, invoker = pipeline_and_invoker(session, stack, runner)
        if args.command == "smoke":
            from pipeline_tools.smoke import run_smoke

            return run_smoke(
                args,
                session.client("sqs"),
                session.client("dynamodb"),
                stack.outputs["TableName"],
                pipeline,
                invoker,
                out=out,
            )
        return run_command(args, session.client("sqs"), pipeline, invoker, out=out)


def render_drive(result: DriveResult, sent: int) -> str:
    entry = "the validator's queue" if result.batches is not None else "validator:live"
    lines = [f"Sent {sent} records to {entry}.", "How the deployed functions were read:"]
    lines += [f"  {n}" for n in result.notes]
    lines.append(f"Stored ({len(result.stored)}):")
    for item in sorted(result.stored, key=lambda i: i["id"]):
        lines.append(
            f"  {item['id']:<14} type {item['type']:<8} category {item.get('category', '-'):<14}"
            f" timestamp {item['timestamp']}"
        )
    lines.append("Daily counts (the `counts --day` reader):")
    for (record_type, day), count in sorted(result.counters.items()):
        lines.append(f"  {day} {record_type}: {count}")
    duplicates = sum(
        1
        for o in result.outcomes
        if isinstance(o.result, dict) and o.result.get("status") == "duplicate"
    )
    if result.batches is None:
        lines.append(f"Duplicates recognised (stored nothing): {duplicates}")
    else:
        ran = ", ".join(f"{stage} {n}" for stage, n in sorted(result.batches.items()))
        lines.append(f"Batches each stage ran: {ran}")
    lines.append(f"Dead-letter queue ({len(result.dead_letters)}):")
    for letter in result.dead_letters:
        lines.append(f"  {letter.record_id!r}: {letter.error}")
    return "\n".join(lines)


def copy_project(target: Path) -> Path:
    """A copy of what ``cdk deploy`` needs (to change a handler without touching the repo)."""
    for name in ("app.py", "cdk.json"):
        shutil.copy2(ROOT / name, target / name)
    for name in ("lib", "serverless_stack", "lambda_src"):
        shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    return target
