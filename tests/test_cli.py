"""``pipeline``, the one command line: each command reaches its module, errors are one line."""

from __future__ import annotations

import os
import subprocess

import pytest

from pipeline_tools import cli
from tests.conftest import ROOT


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("send", "dead-letters", "redrive", "counts", "local", "cost", "rightsize"):
        assert command in out


def test_no_command_is_one_usage_line_and_the_list_of_commands(capsys):
    assert cli.main([]) == 2
    usage, heading, *commands = capsys.readouterr().err.splitlines()
    assert usage.startswith("usage: pipeline [--stack NAME]") and heading == "commands:"
    assert [line.split()[0] for line in commands] == [*cli.OPERATOR_COMMANDS, *cli._tools()]


def test_help_has_no_restructuredtext_markup(capsys):
    assert cli.main(["--help"]) == 0
    assert "``" not in capsys.readouterr().out


def test_an_unknown_command_is_one_line(capsys):
    assert cli.main(["deploy"]) == 2
    assert capsys.readouterr().err == (
        "error: pipeline: unknown command 'deploy'; the commands: send, dead-letters, redrive, "
        "counts, smoke, local, cost, rightsize\n"
    )


def test_operator_commands_reach_aws_and_say_what_is_missing(monkeypatch, capsys):
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    assert cli.main(["--stack", "DataPipeline-prod", "counts", "--day", "2026-11-29"]) == 1
    assert capsys.readouterr().err.startswith("error: no AWS region")


def test_local_commands_reach_the_emulator_tool(monkeypatch, capsys):
    from pipeline_tools.local import __main__ as local

    monkeypatch.setattr(local.Emulator, "kept", staticmethod(lambda: None))
    assert cli.main(["local", "down"]) == 0
    assert capsys.readouterr().out == "No emulator is running: nothing to destroy.\n"


def test_cost_and_rightsize_are_their_modules(capsys):
    assert cli.main(["cost", "/nonexistent/t.template.json"]) == 1
    assert "/nonexistent/t.template.json" in capsys.readouterr().err
    assert cli.main(["rightsize", str(ROOT / "tests" / "data" / "enricher-report.log")]) == 0


@pytest.mark.skipif(
    not (ROOT / ".venv" / "bin" / "pipeline").exists(), reason="make install puts it in .venv"
)
def test_the_installed_command_runs_without_an_activated_venv():
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "pipeline"), "--help"],
        env={"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "pipeline local up" in result.stdout


def test_make_help_lists_every_target_with_one_line_each():
    import re
    import subprocess

    from tests.conftest import ROOT
    from tests.test_readme_commands import ordinary_path

    makefile = (ROOT / "Makefile").read_text()
    phony = set(re.search(r"^\.PHONY: (.*)$", makefile, re.M)[1].split())  # type: ignore[index]
    result = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT,
        env={"PATH": ordinary_path()},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stderr == ""
    listed = [line.split()[1] for line in result.stdout.splitlines()]
    assert sorted(listed) == sorted(phony)  # each once, none left out
    assert all(len(line.split(maxsplit=2)) == 3 for line in result.stdout.splitlines())


def test_make_cost_echoes_no_recipe_on_stdout():
    """`make cost MARKDOWN=1` prints only the bill on stdout: no recipe of it, or of the synths
    it runs first, is echoed there (make echoes a recipe line not marked with @ on stdout)."""
    import re

    from tests.conftest import ROOT

    makefile = (ROOT / "Makefile").read_text()
    for target in ("cost", "synth-all", "synth-toolchain"):
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
        assert recipe, target
        lines = [line for line in recipe[1].splitlines() if not line.startswith("\t  ")]
        assert lines and all(line.startswith("\t@") for line in lines), (target, lines)
        assert all(">&2" in line for line in lines if line.startswith('\t@echo "')), target


def test_an_emulator_that_dies_during_a_command_is_one_line(monkeypatch, capsys):
    import argparse

    from botocore.exceptions import EndpointConnectionError

    from pipeline_tools.local import __main__ as cli_local

    class Dead:
        stopped = False

        def answers(self) -> bool:
            return False

        def stop(self) -> None:
            self.stopped = True

    def dies(emulator, environment, args):
        raise EndpointConnectionError(endpoint_url="http://localhost:1")

    monkeypatch.setattr(cli_local, "operate", dies)
    dead = Dead()
    assert cli_local._operate_on(dead, argparse.Namespace(command="dead-letters")) == 1  # type: ignore[arg-type]
    (line,) = capsys.readouterr().err.splitlines()
    assert "has stopped" in line and "during the command" in line and dead.stopped


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["cost", "WORKLOAD=/nonexistent/workload.json"], "cannot read the workload profile"),
        (["cost", "RECORDS=0"], "--records-per-month = 0: must be 1 or more"),
        (["rightsize", "LOGS=/nonexistent/report.log"], "cannot read /nonexistent/report.log"),
    ],
)
def test_a_bad_make_input_is_one_line_before_any_synth(arguments, says):
    """make's inputs are checked while make reads the Makefile: one line, through $(error),
    with no synth before it and no "make: *** [...] Error 1" after it."""
    from tests.conftest import ROOT
    from tests.test_readme_commands import ordinary_path

    result = subprocess.run(
        ["make", "--no-print-directory", *arguments],
        cwd=ROOT,
        env={"PATH": ordinary_path(), "HOME": str(ROOT / ".pytest_cache")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("Makefile:") and says in line, line
    assert "cdk synth" not in result.stderr
