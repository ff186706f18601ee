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
