"""The constructs as a library: the wheel built from lib/ is all another project needs.

A consumer's environment is made here as a user would have it, offline: a fresh virtual
environment with no checkout on its path, the built wheel installed into it, and exactly the
distributions its metadata declares (and theirs) made available from this project's installed
ones, file by file. There, the example app copied into an empty folder synthesizes with
`cdk synth`, and a stack with ``ScalingPause`` synthesizes with the hook code the wheel ships.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, docs_text

LIB = ROOT / "lib"
PACKAGE = LIB / "src" / "constructs_lib"
EXAMPLE = ROOT / "examples" / "orders"
NODE_BIN = ROOT / "node_modules" / ".bin"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


def _requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement.strip())
    assert match, requirement
    return metadata.Distribution.from_name(match.group(0)).metadata["Name"]


def _closure(names: list[str]) -> set[str]:
    """The installed distributions ``names`` need, theirs included (extras and markers that do
    not apply here are skipped, as pip skips them)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        for requirement in metadata.requires(name) or []:
            if ";" in requirement and not _marker_applies(requirement.split(";", 1)[1]):
                continue
            todo.append(_requirement_name(requirement.split(";", 1)[0]))
    return seen


def _marker_applies(marker: str) -> bool:
    from packaging.markers import Marker

    return Marker(marker).evaluate({"extra": ""})


def _link_distribution(name: str, site: Path) -> None:
    """Every file of the installed distribution ``name``, linked into ``site``."""
    dist = metadata.distribution(name)
    for file in dist.files or []:
        if file.parts[0] == "..":  # console scripts in bin/: not needed to import
            continue
        source = Path(str(dist.locate_file(file)))
        target = site / file
        if source.exists() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip wheel lib/` builds (from a copy: setuptools writes build/ in the tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "lib"
    shutil.copytree(
        LIB, source, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build")
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp), str(source)], tmp
    )
    (built,) = tmp.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def consumer(wheel, tmp_path_factory) -> dict[str, str]:
    """A fresh venv holding the wheel and its declared dependencies only: the environment in
    which its commands run (the pinned Node 22 and CDK CLI on PATH, nothing of this checkout)."""
    venv = tmp_path_factory.mktemp("consumer") / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], venv.parent)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], venv)
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], venv
        ).stdout.strip()
    )
    declared = _declared(wheel)
    for name in _closure(declared):
        _link_distribution(name, site)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    system_path = [p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(ROOT))]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), str(NODE_BIN), *system_path])
    return env


def _declared(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(name).decode()
    return [
        _requirement_name(line.split(":", 1)[1])
        for line in text.splitlines()
        if line.startswith("Requires-Dist:")
    ]


def test_the_wheel_has_its_own_name_version_types_and_hook_code(wheel):
    project = tomllib.loads((LIB / "pyproject.toml").read_text())["project"]
    assert wheel.name.startswith(f"serverless_pipeline_constructs-{project['version']}-")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "constructs_lib/py.typed" in names
    assert "constructs_lib/handlers/release_hook/handler.py" in names
    # the constructs only: no app, no tools, no runtime code, no command
    assert not [
        n
        for n in names
        if n.split("/")[0]
        in ("pipeline_tools", "serverless_stack", "lambda_src", "validator", "processor")
    ]
    assert not [n for n in names if n.endswith("entry_points.txt")]


def test_the_version_is_one_semver_in_the_package_and_the_changelog():
    import constructs_lib

    version = tomllib.loads((LIB / "pyproject.toml").read_text())["project"]["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert constructs_lib.__version__ == version
    assert re.search(rf"^## {re.escape(version)} ", (LIB / "CHANGELOG.md").read_text(), re.M)


def _imported_top_levels() -> set[str]:
    """The top-level modules the constructs import (the shipped hook code is not imported)."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        if "handlers" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__", "constructs_lib"}


def test_it_declares_exactly_the_distributions_it_imports(wheel):
    owners = metadata.packages_distributions()
    imported = {owners[name][0].lower() for name in _imported_top_levels()}
    assert imported == {name.lower() for name in _declared(wheel)}
    assert not _imported_top_levels() & {
        "pipeline_tools",
        "serverless_stack",
        "lambda_src",
        "pipeline_common",
        "boto3",
        "botocore",
        "pydantic",
    }


def test_the_declared_dependencies_are_all_it_needs(consumer):
    """pip sees every requirement met in the consumer's venv, and nothing of this checkout."""
    _run(["python", "-m", "pip", "check"], Path("/"), consumer)
    probe = subprocess.run(
        ["python", "-c", "import constructs_lib; print(constructs_lib.__file__); import boto3"],
        cwd="/",
        env=consumer,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.stdout.strip() and not probe.stdout.startswith(str(ROOT))
    assert "No module named 'boto3'" in probe.stderr  # only what is declared is there


def test_the_example_copied_into_an_empty_folder_synthesizes_with_cdk_synth(consumer, tmp_path):
    project = tmp_path / "my-orders"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("cdk.out", "__pycache__"))
    result = _run(["cdk", "synth", "--quiet"], project, consumer)
    template = json.loads((project / "cdk.out" / "OrdersExample.template.json").read_text())
    types = {r["Type"] for r in template["Resources"].values()}
    assert {"AWS::Lambda::Alias", "AWS::SQS::Queue", "AWS::Logs::LogGroup"} <= types
    # Node 22 from package.json: jsii prints no end-of-life banner
    assert "!!" not in result.stderr, result.stderr[:2000]


CONSUMER_APP = """
from aws_cdk import App, Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from constructs_lib.alarm_topic import AlarmTopic
from constructs_lib.data_table import DataTable
from constructs_lib.dead_letter_queue import dead_letter_queue
from constructs_lib.deployment import DeploymentPreference, deployment_config
from constructs_lib.monitoring import PipelineMonitoring
from constructs_lib.optimized_function import OptimizedFunction
from constructs_lib.powertools_layer import powertools_layer
from constructs_lib.release_probe import ReleaseProbe
from constructs_lib.scaling import ProvisionedConcurrencyScaling
from constructs_lib.scaling_pause import ScalingPause
from constructs_lib.scheduled_function import ScheduledFunction

app = App()
stack = Stack(app, "Consumer")
code = lambda_.Code.from_inline("def handler(event, context): return event")
common = dict(code=code, handler="index.handler", runtime=lambda_.Runtime.PYTHON_3_14)
layer = powertools_layer(
    stack, "Powertools", release="3.37.0", runtime=lambda_.Runtime.PYTHON_3_14,
    architecture=lambda_.Architecture.ARM_64,
)
table = DataTable(stack, "Table", removal_policy=RemovalPolicy.DESTROY, deletion_protection=False)
queue = dead_letter_queue(stack, "Failures")
pause = ScalingPause(stack, "Pause")
scaling = ProvisionedConcurrencyScaling(min_capacity=1, max_capacity=4)
fn = OptimizedFunction(
    stack, "Worker",
    function_props=lambda_.FunctionProps(
        **common, memory_size=256, layers=[layer], dead_letter_queue=queue
    ),
    provisioned_concurrency=scaling,
    deployment=DeploymentPreference(
        config=deployment_config("canary_10_percent_5_minutes"),
        pre_traffic_hook=pause.function,
    ),
)
pause.attach(fn, scaling)
probe = ReleaseProbe(stack, "Probe")
probed = OptimizedFunction(
    stack, "Probed",
    function_props=lambda_.FunctionProps(**common, memory_size=128),
    deployment=DeploymentPreference(
        config=deployment_config("all_at_once"), pre_traffic_hook=probe.function
    ),
)
probe.attach(probed)
ScheduledFunction(
    stack, "Hourly", function_props=lambda_.FunctionProps(**common),
    schedule=events.Schedule.rate(Duration.hours(1)),
)
monitoring = PipelineMonitoring(
    stack, "Monitoring", alarm_action=AlarmTopic(stack, "Alarms"), dashboard=False
)
monitoring.monitor_function("Worker", fn)
app.synth()
"""


def test_every_construct_synthesizes_from_the_wheel_and_the_hooks_deploy_its_code(
    consumer, tmp_path
):
    (tmp_path / "app.py").write_text(CONSUMER_APP)
    _run(["python", "app.py"], tmp_path, {**consumer, "CDK_OUTDIR": str(tmp_path / "out")})
    template = json.loads((tmp_path / "out" / "Consumer.template.json").read_text())
    hooks = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"].get("Handler") == "release_hook.handler.lambda_handler"
    ]
    assert len(hooks) == 2  # ScalingPause's and ReleaseProbe's
    for hook in hooks:
        asset = hook["Code"]["S3Key"].removesuffix(".zip")
        shipped = tmp_path / "out" / f"asset.{asset}" / "release_hook" / "handler.py"
        assert shipped.read_text() == (PACKAGE / "handlers/release_hook/handler.py").read_text()
    types = {r["Type"] for r in template["Resources"].values()}
    assert {
        "AWS::DynamoDB::Table",
        "AWS::Events::Rule",
        "AWS::CodeDeploy::DeploymentGroup",
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::SNS::Topic",
    } <= types


def test_the_docs_give_the_library_install_and_pin():
    page = docs_text("constructs")
    assert "pip install ./lib" in page or "pip install /path/to/this/checkout/lib" in page
    assert "serverless-pipeline-constructs==0.1.0" in page
