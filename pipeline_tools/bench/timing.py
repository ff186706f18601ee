"""Timing whole processes with pyperf, interleaved so a shared machine's load hits every figure
alike.

Each repetition runs every command once, in turn, through ``python -m pyperf command`` (one
process, one value, no warm-up: a cold process is what is measured), appending the value to one
pyperf results file per run of the benchmarks. Each figure is then reported as its median and
its spread (standard deviation), with the minimum and maximum of pyperf's values.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyperf


@dataclass(frozen=True)
class Command:
    """A process to time: its arguments, the variables added to its environment, its folder."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None


def run_once(name: str, command: Command, results: Path, env: Mapping[str, str]) -> None:
    """One timed run of ``command`` under ``name``, appended to ``results``."""
    pyperf_args = [
        *("--processes", "1", "--values", "1", "--warmups", "0", "--loops", "1"),
        *("--copy-env", "--quiet", "--name", name, "--append", str(results)),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "pyperf", "command", *pyperf_args, "--", *command.argv],
        cwd=command.cwd,
        env={**env, **command.env},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command.argv)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


def interleaved(
    commands: Mapping[str, Command], repeat: int, results: Path, env: Mapping[str, str]
) -> dict[str, list[float]]:
    """Run each command ``repeat`` times, alternating; each figure's values, in seconds."""
    for _ in range(repeat):
        for name, command in commands.items():
            run_once(name, command, results, env)
    suite = pyperf.BenchmarkSuite.load(str(results))
    return {name: list(suite.get_benchmark(name).get_values()) for name in commands}


@dataclass(frozen=True)
class Summary:
    """A figure: its median, spread (standard deviation; none for one value), min and max."""

    median: float
    stdev: float | None
    min: float
    max: float


def summary(values: list[float]) -> Summary:
    return Summary(
        median=statistics.median(values),
        stdev=statistics.stdev(values) if len(values) > 1 else None,
        min=min(values),
        max=max(values),
    )
