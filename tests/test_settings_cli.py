"""Settings through the CDK CLI, as users set them: the CLI drops null-valued context keys
before the app sees them (``{"m": null}`` arrives as ``{}``), so the app reads cdk.json's nulls
back and refuses them, in one line, like any other bad value."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, project_copy


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's tracked files, with the installed .venv and node_modules linked in."""
    return project_copy(tmp_path_factory.mktemp("settings") / "project")


def synth_with(project: Path, path: list[str], value: object) -> subprocess.CompletedProcess:
    """``npx cdk synth`` of dev with cdk.json's ``pipeline.dev.<path>`` set to ``value``."""
    original = (project / "cdk.json").read_text()
    config = json.loads(original)
    block = config["context"]["pipeline"]["dev"]
    for key in path[:-1]:
        block = block.setdefault(key, {})
    block[path[-1]] = value
    (project / "cdk.json").write_text(json.dumps(config, indent=2))
    try:
        return subprocess.run(
            ["npx", "cdk", "synth", "--quiet", "-c", "environment=dev", "-o", "out"],
            cwd=project,
            env={**os.environ, "PATH": f"{ROOT / 'node_modules' / '.bin'}:{os.environ['PATH']}"},
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        (project / "cdk.json").write_text(original)


@pytest.mark.parametrize(
    ("path", "words"),
    [
        (["functions", "validator", "memory_mb"], "functions.validator.memory_mb = None"),
        (["log_retention_days"], "log_retention_days = None"),
    ],
)
def test_a_null_setting_stops_cdk_synth_naming_the_key(project, path, words):
    result = synth_with(project, path, None)
    assert result.returncode != 0
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("Configuration error")]
    assert f"invalid setting pipeline.dev.{words}" in line
    assert "Traceback" not in result.stderr


def test_the_same_setting_with_a_value_synthesizes(project):
    result = synth_with(project, ["functions", "validator", "memory_mb"], 256)
    assert result.returncode == 0, result.stderr[-2000:]


def make_in(project: Path, *arguments: str) -> subprocess.CompletedProcess:
    """``make ARGUMENTS`` in ``project`` as a user types it, from their PATH."""
    from tests.test_readme_commands import ordinary_path

    return subprocess.run(
        ["make", "--no-print-directory", *arguments],
        cwd=project,
        env={"PATH": ordinary_path(), "HOME": os.environ.get("HOME", "/tmp")},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_make_synth_ends_a_settings_error_with_that_line_alone(project):
    """GNU make follows a failed recipe with "make: *** [...] Error 1" and the CLI adds
    "Subprocess exited with error 1": neither follows the one settings-error line."""
    result = make_in(project, "synth", "ENV=qa")
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert lines[0] == "cdk synth --quiet -c environment=qa"  # what make would echo
    assert len(lines) == 2, result.stderr
    assert lines[1].startswith("Makefile:")
    assert "Configuration error in cdk.json: invalid setting environment = 'qa'" in lines[1]
    assert "Error 1" not in result.stderr and "Subprocess exited" not in result.stderr
    assert result.stdout == ""


def test_make_synth_toolchain_ends_a_settings_error_with_that_line_alone(project):
    original = (project / "cdk.json").read_text()
    config = json.loads(original)
    config["context"]["toolchain"]["account"] = "12345"
    (project / "cdk.json").write_text(json.dumps(config, indent=2))
    try:
        result = make_in(project, "synth-toolchain")
    finally:
        (project / "cdk.json").write_text(original)
    assert result.returncode != 0
    (line,) = result.stderr.splitlines()[1:]
    assert "invalid setting toolchain.account = '12345'" in line, line
    assert "Error 1" not in result.stderr and "Traceback" not in result.stderr


def test_make_synth_shows_any_other_failure_and_names_the_command(project):
    """A failure that is not a settings error keeps its output, then one line naming it."""
    app = project / "app.py"
    original = app.read_text()
    app.write_text(original.replace("application.synth()", "raise SystemExit('boom: no synth')"))
    try:
        result = make_in(project, "synth")
    finally:
        app.write_text(original)
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert "boom: no synth" in lines
    assert lines[-1].endswith(
        "cdk synth --quiet -c environment=dev failed (exit status 1); its output is above.  Stop."
    )


def test_the_synth_filter_holds_the_settings_error_and_drops_the_cli_epilogue():
    import io

    from pipeline_tools.cdk_synth import shown_and_held

    shown = io.StringIO()
    held = shown_and_held(
        [
            "[Warning at /X] a warning\n",
            "Configuration error in cdk.json: invalid setting a = 1: must be 2\n",
            "python3 app.py: Subprocess exited with error 1\n",
            "\n",
        ],
        shown,
    )
    assert held == "Configuration error in cdk.json: invalid setting a = 1: must be 2"
    assert shown.getvalue() == "[Warning at /X] a warning\n"


def test_ingestion_on_the_command_line_takes_the_batched_path_for_one_synth(project):
    """``npx cdk synth -c ingestion=batched``: the environment's stages read queues, cdk.json
    untouched; a mode that is not one is one line naming ``ingestion``."""
    env = {**os.environ, "PATH": f"{ROOT / 'node_modules' / '.bin'}:{os.environ['PATH']}"}

    def synth(*context: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["npx", "cdk", "synth", "--quiet", "-c", "environment=dev", *context, "-o", "out"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    result = synth("-c", "ingestion=batched")
    assert result.returncode == 0, result.stderr[-2000:]
    template = json.loads((project / "out" / "DataPipeline-dev.template.json").read_text())
    kinds = [r["Type"] for r in template["Resources"].values()]
    assert kinds.count("AWS::Lambda::EventSourceMapping") == 3
    assert "IngestQueueUrl" in template["Outputs"]
    refused = synth("-c", "ingestion=fast")
    assert refused.returncode != 0
    (line,) = [x for x in refused.stderr.splitlines() if x.startswith("Configuration error")]
    assert "invalid setting ingestion (-c) = 'fast': must be one of per_record, batched" in line


def test_the_mappings_metrics_set_in_cdk_json_reach_the_template(project):
    """``ingestion.mapping_metrics`` as a user sets it in cdk.json, through the CLI: each
    mapping's ``MetricsConfig`` and a ``FailedInvokeEventCount`` alarm on each; a ``null``
    there (which the CLI drops) is one line naming the key."""
    result = synth_with(project, ["ingestion"], {"mode": "batched", "mapping_metrics": True})
    assert result.returncode == 0, result.stderr[-2000:]
    template = json.loads((project / "out" / "DataPipeline-dev.template.json").read_text())
    resources = template["Resources"].values()
    configs = [
        r["Properties"].get("MetricsConfig")
        for r in resources
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    assert configs == [{"Metrics": ["EventCount"]}] * 3
    alarms = [
        r
        for r in resources
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"].get("MetricName") == "FailedInvokeEventCount"
    ]
    assert len(alarms) == 3
    refused = synth_with(project, ["ingestion"], {"mode": "batched", "mapping_metrics": None})
    assert refused.returncode != 0
    (line,) = [x for x in refused.stderr.splitlines() if x.startswith("Configuration error")]
    assert "invalid setting pipeline.dev.ingestion.mapping_metrics = None" in line
