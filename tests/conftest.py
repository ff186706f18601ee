"""Shared fixtures: every environment is synthesized once per test session.

A synth costs seconds (most of it jsii start-up), so templates are built once here and every
test asserts on the same ``Template`` objects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# jsii runs Node: use the project's pinned, supported Node (node_modules/.bin/node) when present.
os.environ["PATH"] = f"{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}"
# Handlers run in-process: no X-Ray daemon, and never real credentials.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "DataPipelineTest")
for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(variable, None)
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"

import aws_cdk as cdk  # noqa: E402  (after PATH is set, so jsii starts the right Node)
import pytest  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

ENVIRONMENTS = ("dev", "staging", "prod")


def docs_text(page: str | None = None) -> str:
    """The README and the topic pages under docs/ (or one of them: ``"cost"``, ...)."""
    if page is not None:
        return (ROOT / "docs" / f"{page}.md").read_text()
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(path.read_text() for path in pages)


def cdk_context() -> dict[str, Any]:
    """The context of ``cdk.json`` (feature flags and the per-environment settings)."""
    return json.loads((ROOT / "cdk.json").read_text())["context"]


def synth_app(environment: str, overrides: Mapping[str, Any] | None = None) -> cdk.Stack:
    """Build the real app for ``environment`` and return its pipeline stack."""
    from app import build_app

    context = {**cdk_context(), "environment": environment, **(overrides or {})}
    app = build_app(cdk.App(context=context))
    (stack,) = [c for c in app.node.children if isinstance(c, cdk.Stack)]
    return stack


@pytest.fixture(scope="session")
def stacks() -> dict[str, cdk.Stack]:
    return {name: synth_app(name) for name in ENVIRONMENTS}


@pytest.fixture(scope="session")
def toolchain() -> tuple[Any, dict[str, Any], Path]:
    """The toolchain stack, its template and its cloud assembly directory (one synth)."""
    from app import build_app

    app = build_app(cdk.App(context={**cdk_context(), "synth": "toolchain"}))
    (stack,) = [c for c in app.node.children if isinstance(c, cdk.Stack)]
    assembly = app.synth()
    return stack, Template.from_stack(stack).to_json(), Path(assembly.directory)


@pytest.fixture(scope="session")
def templates(stacks: dict[str, cdk.Stack]) -> dict[str, Template]:
    return {name: Template.from_stack(stack) for name, stack in stacks.items()}


@pytest.fixture(scope="session")
def template_json(templates: dict[str, Template]) -> dict[str, dict[str, Any]]:
    return {name: template.to_json() for name, template in templates.items()}


@pytest.fixture(params=["dev", "prod"])
def env_name(request: pytest.FixtureRequest) -> str:
    """Run a test on the dev and the prod template."""
    return str(request.param)


def assembly_of(stack: cdk.Stack) -> tuple[Path, str, dict[str, Any]]:
    """A stack's cloud assembly directory, stack name and template (its app synthesizes once)."""
    directory = Path(cdk.Stage.of(stack).synth().directory)
    template = json.loads((directory / stack.template_file).read_text())
    return directory, stack.artifact_id, template


@pytest.fixture(scope="session")
def dev_assembly(stacks: dict[str, cdk.Stack]) -> tuple[Path, str, dict[str, Any]]:
    """The dev stack's cloud assembly directory, stack name and template (one synth)."""
    return assembly_of(stacks["dev"])


@contextmanager
def pipeline_on_moto(assembly: tuple[Path, str, dict[str, Any]]) -> Iterator[Any]:
    """A stack's real handler code on moto, wired as its template wires it."""
    import boto3
    from moto import mock_aws

    from pipeline_tools.runner import AsyncPipeline, specs_from_assembly
    from pipeline_tools.runner.provision import provision

    directory, stack_name, template = assembly
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        physical = provision(template, session)
        specs = specs_from_assembly(directory, stack_name, physical)
        runner = AsyncPipeline(specs, session.client("sqs"))
        without_retry_waits(runner)
        runner.session = session  # type: ignore[attr-defined]
        runner.physical = physical  # type: ignore[attr-defined]
        yield runner


@pytest.fixture(scope="session")
def per_record_prod() -> cdk.Stack:
    """prod on the per-record path (``-c ingestion=per_record``), as ``make synth-all`` writes
    it to cdk.out/per-record: today's design, priced beside the batched one."""
    return synth_app("prod", {"ingestion": "per_record"})


@pytest.fixture(scope="session")
def per_record_stacks(stacks: dict[str, cdk.Stack], per_record_prod: cdk.Stack) -> dict[str, Any]:
    """Every environment on the per-record path: the tests of its wiring (asynchronous
    invokes, destinations, the runner's ``AsyncPipeline``) run on these."""
    return {**stacks, "prod": per_record_prod}


@pytest.fixture(scope="session")
def per_record_json(per_record_stacks: dict[str, cdk.Stack]) -> dict[str, dict[str, Any]]:
    return {name: Template.from_stack(s).to_json() for name, s in per_record_stacks.items()}


@pytest.fixture(scope="session")
def batched_assembly() -> tuple[Path, str, dict[str, Any]]:
    """dev on the batched path (``ingestion.mode: batched``, 50 a batch, a 5 s window)."""
    import copy

    settings = copy.deepcopy(cdk_context()["pipeline"])
    settings["dev"]["ingestion"] = {
        "mode": "batched",
        "batch_size": 50,
        "batching_window_seconds": 5,
    }
    return assembly_of(synth_app("dev", {"pipeline": settings}))


@contextmanager
def queue_pipeline_on_moto(assembly: tuple[Path, str, dict[str, Any]]) -> Iterator[Any]:
    """A batched stack's real handler code on moto, each stage fed by its emulated SQS event
    source mapping, the whole test on the run's virtual clock."""
    import boto3
    from moto import mock_aws

    from pipeline_tools.runner import specs_from_assembly
    from pipeline_tools.runner.event_source import QueuePipeline, mappings_from_template
    from pipeline_tools.runner.provision import provision

    directory, stack_name, template = assembly
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        physical = provision(template, session)
        specs = specs_from_assembly(directory, stack_name, physical)
        runner = QueuePipeline(
            specs, session.client("sqs"), mappings_from_template(template, physical)
        )
        runner.session = session  # type: ignore[attr-defined]
        runner.physical = physical  # type: ignore[attr-defined]
        runner.table = specs["processor"].environment["TABLE_NAME"]  # type: ignore[attr-defined]
        runner.dlq = specs["validator"].environment["DEAD_LETTER_QUEUE_URL"]  # type: ignore[attr-defined]
        with runner.clock.driving_moto():
            yield runner


def queued_dead_letters(runner: Any) -> list[dict[str, Any]]:
    """Every message in a queue pipeline's DLQ, with its attributes (received, not deleted)."""
    found: list[dict[str, Any]] = []
    while True:
        answer = runner.sqs.receive_message(
            QueueUrl=runner.dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        if not answer.get("Messages"):
            return found
        found += answer["Messages"]


@pytest.fixture
def pipeline(dev_assembly):
    """The dev stack's real handler code, on moto, wired as the template wires it."""
    with pipeline_on_moto(dev_assembly) as runner:
        yield runner


def without_retry_waits(runner: Any) -> None:
    """The handlers' in-process retries, with their attempts but without their waits (an
    injected fault that never clears would otherwise cost seconds of real sleep)."""
    from dataclasses import replace

    for function in runner.functions.values():
        policy = getattr(function.module, "RETRY", None)
        if policy is not None:
            function.module.RETRY = replace(policy, sleep=lambda seconds: None)


def stored_and_counted(
    client: Any, table: str
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], int]]:
    """The record items of ``table``, and its counts as ``{(type, day): n}``, each day that has
    a marker or a total read with the project's own reader
    (``pipeline_common.counts.daily_counts``)."""
    from pipeline_common.counts import MARKER_PREFIX, TOTAL_PREFIX, daily_counts, parse_markers

    items = [
        i for page in client.get_paginator("scan").paginate(TableName=table) for i in page["Items"]
    ]
    records = [i for i in items if i["pk"]["S"].startswith("RECORD#")]
    markers = [i for i in items if i["pk"]["S"].startswith(MARKER_PREFIX)]
    days = {m.day for i in markers for m in parse_markers(i)} | {
        i["pk"]["S"][len(TOTAL_PREFIX) :] for i in items if i["pk"]["S"].startswith(TOTAL_PREFIX)
    }
    counts = {
        (record_type, day): n
        for day in sorted(days)
        for record_type, n in daily_counts(client, table, day).items()
    }
    return records, counts


def project_copy(target: Path) -> Path:
    """The project's files copied to ``target``, with the installed ``.venv`` and
    ``node_modules`` linked in (what ``make install`` makes): a fresh clone, installed.

    It asks no git: the pipeline's Synth step runs the suite in the zip CodePipeline hands
    CodeBuild, which has no ``.git`` (and CI runs it in a ``git archive`` export). What
    ``.gitignore`` names (installs, caches, synth output) is left out, as a clone has none.
    """
    import shutil

    ignored = [
        line.strip().rstrip("/")
        for line in (ROOT / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    shutil.copytree(
        ROOT, target, ignore=shutil.ignore_patterns(".git", *ignored), dirs_exist_ok=True
    )
    for installed in (".venv", "node_modules"):
        (target / installed).symlink_to(ROOT / installed)
    return target


def load_event(name: str) -> Any:
    """A sample event from ``tests/events/<name>.json``."""
    return json.loads((ROOT / "tests" / "events" / f"{name}.json").read_text())


def sample_record(**changes: Any) -> dict[str, Any]:
    """The valid sample record with ``changes`` applied (``...`` removes a field)."""
    record = load_event("valid_record")
    for key, value in changes.items():
        if value is ...:
            record.pop(key)
        else:
            record[key] = value
    return dict(record)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the ``summary`` property that a test recorded (the fault run's counts)."""
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", []):
                if name == "summary":
                    terminalreporter.write_line(
                        f"{report.nodeid.split('::')[-1]} ({outcome}): {value}"
                    )
