"""The benchmark harness (pyperf) records what it runs, and the figures it derives are the
arithmetic of its values. Nothing here is timed against a target: make bench does that."""

from __future__ import annotations

import os
import sys

import pytest

from pipeline_tools.bench import conflicts, run
from pipeline_tools.bench.timing import Command, interleaved, summary


def test_interleaved_records_every_repetition_of_every_command_with_pyperf(tmp_path):
    commands = {
        "start-up": Command((sys.executable, "-c", "pass")),
        "sleep": Command((sys.executable, "-c", "import time; time.sleep(0.05)")),
    }
    values = interleaved(commands, 3, tmp_path / "results.json", dict(os.environ))
    assert {name: len(v) for name, v in values.items()} == {"start-up": 3, "sleep": 3}
    # a process that sleeps 50 ms takes at least that long, whatever the machine
    assert min(values["sleep"]) >= 0.05
    assert (tmp_path / "results.json").is_file()


def test_a_failing_command_stops_the_benchmark_naming_it(tmp_path):
    failing = {"fails": Command((sys.executable, "-c", "raise SystemExit(3)"))}
    with pytest.raises(RuntimeError, match="raise SystemExit"):
        interleaved(failing, 1, tmp_path / "results.json", dict(os.environ))


def test_the_summary_and_the_ratios_are_the_values_arithmetic():
    s = summary([1.0, 2.0, 6.0])
    assert (s.median, s.min, s.max) == (2.0, 1.0, 6.0)
    assert s.stdev == pytest.approx(2.6457513, rel=1e-6)  # sqrt(((1-3)² + (2-3)² + (6-3)²) / 2)
    assert summary([4.0]).stdev is None
    # an import's ratio is net of the interpreter's start-up: (0.30 - 0.10) / (0.20 - 0.10)
    assert run._ratio([0.30], [0.20], [0.10]) == pytest.approx(2.0)
    assert run._ratio([0.30], [0.20]) == pytest.approx(1.5)


def test_the_storage_comparison_run_alone_uses_make_benchs_records_and_rates(monkeypatch, capsys):
    """Run as the docs say, it runs what make bench's table shows, and prints each run's JSON
    line as soon as that run ends (not all at the end)."""
    import inspect

    asked = []

    def ladder(designs, count, rates, progress, finished):
        asked.append((count, rates))
        finished(conflicts.StorageRun("markers", rates[0], count, count, 0, 1.0, 2.0, 0))
        assert capsys.readouterr().out.count("\n") == 1  # printed before the ladder goes on
        return []

    monkeypatch.setattr(conflicts, "ladder", ladder)
    assert conflicts.main([]) == 0
    assert asked == [(conflicts.RECORDS, conflicts.RATES)]
    source = inspect.getsource(run.main)
    assert "conflicts.RECORDS" in source and "conflicts.RATES" in source


def test_benchmarks_md_asset_sizes_are_a_fresh_runs(dev_assembly):
    """The deterministic figures of BENCHMARKS.md (each stage's zipped asset) are what this
    code gives now; the timings are exempt (they are the machine's). Regenerate with make bench."""
    import re

    from tests.conftest import ROOT

    directory, name, _ = dev_assembly
    fresh = {
        stage: f"{size / 1024:.1f} KB" for stage, size in run.asset_sizes(directory, name).items()
    }
    written = dict(
        re.findall(
            r"^\| (\w+) zipped asset \(.*?\) \| ([\d.]+ KB) \|",
            (ROOT / "BENCHMARKS.md").read_text(),
            re.M,
        )
    )
    assert written == fresh
