"""The README's commands work as written, from a fresh shell, in a fresh copy of the project.

Every command the README shows (``make ...``, ``npx cdk ...``, ``python -m ...``, ``aws ...``)
is either run here, or named with the test that already runs it, or needs an AWS account. A
command added to the README without a place in one of those lists fails this test.

The fresh copy holds the project's tracked files, with the installed ``.venv`` and
``node_modules`` linked in (what ``make install`` makes), and the shell has nothing of this
session: no virtual environment on ``PATH``, no AWS variables.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, docs_text, project_copy

#: Run here, in this order, as the README writes them (later ones read what earlier ones made).
RUN = [
    "make synth",
    "npx cdk synth -c environment=prod",
    ".venv/bin/python -m pipeline_tools.iam_check cdk.out/DataPipeline-dev.template.json"
    " lambda_src",
    "make rightsize",
    ".venv/bin/python -m serverless_stack.settings_schema",
    ".venv/bin/pipeline --help",
    "make synth-toolchain",
]
#: Run by another test (named), or by CI itself.
COVERED = {
    "make test": ".ci/run",
    "make deploy-local": "tests/test_local_deploy.py",
    "make deploy-local KEEP=1": "tests/test_local_deploy.py",
    "make destroy-local": "tests/test_local_deploy.py",
    ".venv/bin/python -m pipeline_tools.local drive --records my.json": (
        "tests/test_local_deploy.py"
    ),
    "make install": "every make target",
    "make help": "tests/test_cli.py (every target listed once)",
    "make synth-example": "tests/test_example.py (from a fresh shell)",
    "make api-docs": "tests/test_api_reference.py (its pdoc command)",
    "npx cdk synth -c synth=toolchain": "make synth-toolchain, here (its recipe)",
    ".venv/bin/python -m pipeline_tools.toolchain_cost": "tests/test_toolchain.py (the bill)",
    "npx cdk synth -c environment=<env>": "npx cdk synth -c environment=prod, here",
    "make synth ENV=prod": "make synth, here, with the environment's default",
    "make synth-all": "make test (before checkov)",
    "npx cdk synth -c environment=prod -c ingestion=batched": (
        "make synth-all (its recipe's -c ingestion=per_record into cdk.out/per-record), "
        "tests/test_settings_cli.py (the CLI)"
    ),
    "make checkov": "make test",
    "make bench": "pipeline_tools/bench (writes BENCHMARKS.md; minutes, not a test)",
    'make rightsize LOGS="enricher.log validator.log"': "make rightsize, here",
    ".venv/bin/python -m pipeline_tools.rightsize --function enricher -": "tests/test_rightsize.py",
    (
        ".venv/bin/python -m pipeline_tools.cost --workload my.json "
        "cdk.out/DataPipeline-prod.template.json"
    ): "tests/test_cost.py",
    "source .venv/bin/activate": "the shell set-up the commands below it assume",
    # The Commands table's synopses of the commands above:
    "make synth [ENV=prod]": "make synth, here",
    "make cost": "tests/test_cost.py (the report's CLI, terminal and Markdown)",
    "make cost MARKDOWN=1": "tests/test_cost.py (the report's CLI, terminal and Markdown)",
    "make cost [MARKDOWN=1] [WORKLOAD=file.json] [RECORDS=N]": "tests/test_cost.py",
    "make cost-chart": "tests/test_cost.py (the chart)",
    ".venv/bin/python -m pipeline_tools.cost_levers --markdown": "tests/test_cost.py (the levers)",
    'make rightsize LOGS="a.log b.log"': "make rightsize, here",
    "make deploy-local [KEEP=1] [INGESTION=batched]": "tests/test_local_deploy.py",
    "make deploy-local INGESTION=batched": "tests/test_local_deploy.py (the batched fixture)",
    ".venv/bin/python -m pipeline_tools.local up": "tests/test_local_deploy.py",
    ".venv/bin/python -m pipeline_tools.local dead-letters": "tests/test_local_deploy.py",
    ".venv/bin/python -m pipeline_tools.local send fixed.ndjson": "tests/test_local_deploy.py",
    ".venv/bin/python -m pipeline_tools.local send broken.json": "tests/test_local_deploy.py",
    ".venv/bin/python -m pipeline_tools.local redrive --dry-run": "tests/test_local_deploy.py",
    ".venv/bin/python -m pipeline_tools.local send|dead-letters|redrive": (
        "tests/test_local_deploy.py"
    ),
    ".venv/bin/python -m pipeline_tools.local send|dead-letters|redrive|counts": (
        "tests/test_local_deploy.py"
    ),
    ".venv/bin/python -m pipeline_tools.operate send|dead-letters|redrive|counts": (
        "tests/test_operate.py (its errors), tests/test_local_deploy.py (on the emulator)"
    ),
    ".venv/bin/python -m pipeline_tools.bench.conflicts": (
        "make bench (its storage section; minutes, not a test)"
    ),
}
#: Need an AWS account and credentials: never run by the tests.
NEEDS_AWS = (
    "aws ",
    "npx cdk bootstrap",
    "npx cdk deploy",
    ".venv/bin/python -m pipeline_tools.operate",
)

_COMMAND = re.compile(r"^(make|npx cdk|\.venv/bin/python -m|aws|source|\.venv/bin/pipeline) ")


def readme_commands() -> set[str]:
    """Commands in the README's code blocks and inline code, comments and prompts stripped."""
    text = docs_text()
    found = set()
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #", 1)[0].strip()
            if _COMMAND.match(command):
                found.add(command)
    for inline in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
        inline = inline.replace("\\|", "|")  # a pipe escaped in a table cell
        if _COMMAND.match(inline):
            found.add(inline.strip())
    return found


def readme_snippets() -> list[str]:
    """The README's Python programs meant to be run as they are (marked "# After `make synth`")."""
    text = docs_text()
    return [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if b.startswith("# After")]


def test_every_readme_command_is_run_covered_or_needs_an_account():
    unplaced = {
        c
        for c in readme_commands()
        if c not in RUN and c not in COVERED and not c.startswith(NEEDS_AWS)
    }
    assert unplaced == set(), f"README commands nobody checks: {sorted(unplaced)}"
    assert set(RUN) <= readme_commands(), "a command checked here is no longer in the README"


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return project_copy(tmp_path_factory.mktemp("fresh") / "project")


def ordinary_path() -> str:
    """The user's PATH as their login shell has it: this session's PATH less any virtual
    environment and the project's node_modules/.bin (which tests/conftest.py put in front).
    So ``python3`` is whatever interpreter the user has, often the very one the venv was
    made from."""
    kept = [
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry
        and not (Path(entry) / "activate").is_file()
        and not entry.startswith(str(ROOT / "node_modules"))
        and Path(entry) != Path(os.environ.get("VIRTUAL_ENV", "/nonexistent")) / "bin"
    ]
    return os.pathsep.join(kept or ["/usr/local/bin", "/usr/bin", "/bin"])


def test_the_readme_commands_work_from_a_fresh_shell(fresh_copy: Path):
    shell = {"HOME": os.environ.get("HOME", "/root"), "PATH": ordinary_path()}
    # The shell's python3 is the user's, not the project's venv (its pyenv shim, here).
    probe = subprocess.run(
        ["bash", "-c", "python3 -c 'import sys; print(sys.prefix)'"],
        env=shell,
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0 and ".venv" not in probe.stdout, probe
    for command in RUN:
        line = command  # as written: no venv activated (`.venv/bin/...` names it)
        result = subprocess.run(
            ["bash", "-c", line],
            cwd=fresh_copy,
            env=shell,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, (
            f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        )
    snippets = readme_snippets()
    assert snippets, "the README's runner example is marked to be run"
    for snippet in snippets:
        result = subprocess.run(
            ["bash", "-c", "source .venv/bin/activate && python -"],
            input=snippet,
            cwd=fresh_copy,
            env=shell,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"{snippet}\n{result.stderr[-3000:]}"
        assert "completed" in result.stdout and "dead_lettered" in result.stdout, result.stdout
    schema = (fresh_copy / "serverless_stack" / "settings.schema.json").read_text()
    assert schema == (ROOT / "serverless_stack" / "settings.schema.json").read_text()
