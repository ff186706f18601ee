"""Benchmarks: synth, handler import (cold start), asset size, the storage designs under the
conflict rule and the test suite, each against its floor or baseline in the same run, with
interleaved repetitions; writes BENCHMARKS.md.

Usage: ``make bench`` (or ``python -m pipeline_tools.bench.run [--repeat N] [--skip-suite]``).
It is not a test.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from pipeline_tools.bench import conflicts
from pipeline_tools.bench.designs import DESIGNS
from pipeline_tools.template import asset_dirs
from serverless_stack.stages import STAGES

ROOT = Path(__file__).resolve().parents[2]
CDK = ROOT / "node_modules" / ".bin" / "cdk"
NODE = ROOT / "node_modules" / ".bin" / "node"
TARGETS = {"synth": 2.0, "import": 1.3, "asset_kb": 64, "suite": 8.0, "write_units": 2.0}
STORAGE_RECORDS = 300
STORAGE_RATES = (50.0, 400.0)


def env() -> dict[str, str]:
    path = os.pathsep.join(
        [
            str(ROOT / "node_modules" / ".bin"),
            str(Path(sys.executable).parent),
            os.environ.get("PATH", ""),
        ]
    )
    return {**os.environ, "PATH": path, "AWS_DEFAULT_REGION": "us-east-1"}


def timed(command: list[str], extra_env: dict[str, str] | None = None, cwd: Path = ROOT) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=cwd, env={**env(), **(extra_env or {})}, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return elapsed


def interleaved(runs: dict[str, Callable[[], float]], repeat: int) -> dict[str, list[float]]:
    """Run each measurement ``repeat`` times, alternating, so load hits all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            samples[name].append(run())
    return samples


def stats(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def empty_synth(out: Path) -> float:
    """The floor: ``cdk synth`` of pipeline_tools/bench/empty_app.py, same CLI, same Node."""
    return timed(
        [
            str(CDK),
            "synth",
            "--quiet",
            "--app",
            f"{sys.executable} pipeline_tools/bench/empty_app.py",
            "-o",
            str(out),
        ]
    )


def synth_benchmark(repeat: int, out: Path) -> dict[str, list[float]]:
    app_out, empty_out = out / "app", out / "empty"
    return interleaved(
        {
            "empty app synth": lambda: empty_synth(empty_out),
            "this app synth (dev)": lambda: timed(
                [str(CDK), "synth", "--quiet", "-o", str(app_out)]
            ),
        },
        repeat,
    )


def import_benchmark(
    repeat: int, code_dirs: dict[str, Path], environments: dict[str, dict[str, str]]
) -> dict[str, list[float]]:
    """Fresh interpreters; each measures its own import with perf_counter (no start-up noise),
    under the stage's own environment variables from prod's template (so a PassThrough stage
    imports with ``POWERTOOLS_TRACE_DISABLED``, as in Lambda)."""
    probe = (
        "import time, sys; t = time.perf_counter(); import {module}; "
        "sys.stdout.write(str(time.perf_counter() - t))"
    )
    lambda_env = {
        "TABLE_NAME": "bench",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "POWERTOOLS_SERVICE_NAME": "bench",
        "PYTHONDONTWRITEBYTECODE": "1",
    }

    def measure(
        module: str, path: Path | None, variables: dict[str, str] | None = None
    ) -> Callable[[], float]:
        def run() -> float:
            extra = {**lambda_env, **(variables or {})}
            if path:
                extra["PYTHONPATH"] = str(path)
            result = subprocess.run(
                [sys.executable, "-c", probe.format(module=module)],
                env={**env(), **extra},
                capture_output=True,
                text=True,
                check=True,
            )
            return float(result.stdout)

        return run

    runs = {"import boto3": measure("boto3", None)}
    for stage in STAGES:
        runs[f"import {stage}.handler"] = measure(
            f"{stage}.handler", code_dirs[stage], environments[stage]
        )
    return interleaved(runs, repeat)


def stage_settings(out: Path, stack: str) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Each stage's environment variables (template values that are strings) and tracing."""
    from pipeline_tools.template import StackTemplate

    model = StackTemplate.of(json.loads((out / f"{stack}.template.json").read_text()))
    environments, tracing = {}, {}
    for name, stage in model.stages.items():
        variables = stage.properties.get("Environment", {}).get("Variables", {})
        environments[name] = {k: v for k, v in variables.items() if isinstance(v, str)}
        tracing[name] = stage.properties.get("TracingConfig", {}).get("Mode", "PassThrough")
    return environments, tracing


def asset_sizes(out: Path) -> dict[str, int]:
    """Zipped size (deflate, as the CLI uploads it) of each function's asset."""
    sizes = {}
    for stage, asset in asset_dirs(out, "DataPipeline-dev").items():
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(asset.rglob("*")):
                if file.is_file():
                    archive.write(file, file.relative_to(asset))
        sizes[stage] = len(buffer.getvalue())
    return sizes


def versions() -> dict[str, str]:
    node = subprocess.run([str(NODE), "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "node": node,
        "machine": f"{platform.system()} {platform.machine()}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-suite", action="store_true", help="leave the test suite out")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        print("synth ...", flush=True)
        synth = synth_benchmark(args.repeat, work)
        sizes = asset_sizes(work / "app")
        # Imports as prod runs them: its assets, its environment variables, its tracing modes.
        timed([str(CDK), "synth", "--quiet", "-c", "environment=prod", "-o", str(work / "prod")])
        code_dirs = _stage_dirs(work / "prod", "DataPipeline-prod")
        environments, tracing = stage_settings(work / "prod", "DataPipeline-prod")
        print("imports ...", flush=True)
        imports = import_benchmark(args.repeat * 3, code_dirs, environments)
        print("storage designs under the conflict rule ...", flush=True)
        storage = conflicts.ladder(
            list(DESIGNS),
            STORAGE_RECORDS,
            STORAGE_RATES,
            lambda line: print(line, flush=True),
        )
        suite: dict[str, list[float]] = {}
        if not args.skip_suite:
            print("test suite ...", flush=True)
            suite = interleaved(
                {
                    "empty app synth (suite floor)": lambda: empty_synth(work / "empty2"),
                    "test suite (pytest)": lambda: timed(
                        [
                            sys.executable,
                            "-m",
                            "pytest",
                            "-q",
                            "-p",
                            "no:cacheprovider",
                            "-n",
                            "2",
                            "--dist",
                            "loadfile",
                        ]
                    ),
                },
                1,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = render(versions(), synth, imports, tracing, sizes, storage, suite)
    args.output.write_text(report)
    print(report)
    return 0


def _stage_dirs(out: Path, stack: str) -> dict[str, Path]:
    """The stages' assets in ``out`` (the work folder, removed when the run ends)."""
    return asset_dirs(out, stack)


def _row(name: str, values: list[float], unit: str = "s", scale: float = 1.0) -> str:
    s = stats(values)
    return (
        f"| {name} | {s['min'] * scale:.3f} {unit} | {s['median'] * scale:.3f} {unit} | "
        f"{s['max'] * scale:.3f} {unit} | {len(values)} |"
    )


def _ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(a) / statistics.median(b)


def _met(value: float, target: float) -> str:
    return "yes" if value <= target else "no"


def _target_rows(
    synth: dict[str, list[float]],
    imports: dict[str, list[float]],
    tracing: dict[str, str],
    sizes: dict[str, int],
    suite: dict[str, list[float]],
) -> list[str]:
    """Synth, imports, assets and the suite against their targets."""
    synth_ratio = _ratio(synth["this app synth (dev)"], synth["empty app synth"])
    lines = [
        f"| synth of this app / empty app | {synth_ratio:.2f}× | ≤ {TARGETS['synth']}× | "
        f"{_met(synth_ratio, TARGETS['synth'])} |"
    ]
    for stage in STAGES:
        r = _ratio(imports[f"import {stage}.handler"], imports["import boto3"])
        # The target holds where a stage does not trace; a traced stage imports the X-Ray SDK.
        applies = tracing[stage] == "PassThrough"
        target = f"≤ {TARGETS['import']}×" if applies else "none (traced)"
        met = _met(r, TARGETS["import"]) if applies else "-"
        lines.append(
            f"| import {stage}.handler / import boto3 (prod, tracing {tracing[stage]}) | "
            f"{r:.2f}× | {target} | {met} |"
        )
    for stage, size in sizes.items():
        kb = size / 1024
        lines.append(
            f"| {stage} zipped asset (own code; Powertools comes from its layer) | "
            f"{kb:.1f} KB | ≤ {TARGETS['asset_kb']} KB | {_met(kb, TARGETS['asset_kb'])} |"
        )
    if suite:
        r = _ratio(suite["test suite (pytest)"], suite["empty app synth (suite floor)"])
        lines.append(
            f"| test suite / empty app synth | {r:.1f}× | ≤ {TARGETS['suite']}× | "
            f"{_met(r, TARGETS['suite'])} |"
        )
    return lines


def _storage_rows(storage: list[conflicts.StorageRun]) -> list[str]:
    """The count-marker design against its targets: nothing dead-lettered, write units."""
    markers = [r for r in storage if r.design == "markers"]
    if not markers:
        return []
    dead = sum(r.dead_lettered for r in markers)
    units = max(r.write_units_per_record for r in markers)
    top = max((r.achieved_rate for r in markers if not r.dead_lettered), default=0.0)
    kept = max(r.count_items for r in markers)
    bounded = kept <= 2  # the day and type's total, and the watermark
    exact = all(r.counts_exact for r in markers)
    return [
        f"| storage (markers): valid records dead-lettered, up to {top:.0f}/s achieved | "
        f"{dead} | 0 | {'yes' if dead == 0 else 'no'} |",
        f"| storage (markers): write units per record | {units:.2f} | ≤ "
        f"{TARGETS['write_units']:g} | {_met(units, TARGETS['write_units'])} |",
        f"| storage (markers): count items kept for {STORAGE_RECORDS} records of a day and "
        f"type, after the markers' TTL | {kept} | ≤ 2 | {'yes' if bounded else 'no'} |",
        f"| storage (markers): counts exact after roll-ups and TTL | {'yes' if exact else 'no'} "
        f"| yes | {'yes' if exact else 'no'} |",
    ]


def render(
    machine: dict[str, str],
    synth: dict[str, list[float]],
    imports: dict[str, list[float]],
    tracing: dict[str, str],
    sizes: dict[str, int],
    storage: list[conflicts.StorageRun],
    suite: dict[str, list[float]],
) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`pipeline_tools/bench/run.py`). "
        f"Machine: {machine['cores']} cores, "
        f"{machine['machine']}, Python {machine['python']}, Node {machine['node']} "
        "(the project's pinned Node 22). Repetitions are interleaved and medians compared, so "
        "load on this shared machine hits both sides of each ratio alike.",
        "",
        "## Figures",
        "",
        "| measurement | min | median | max | runs |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(_row(name, values) for name, values in synth.items()),
        *(_row(name, values, "ms", 1000) for name, values in imports.items()),
        *(_row(name, values) for name, values in suite.items()),
        "",
        "## Against the targets",
        "",
        "| figure | measured | target | met |",
        "| --- | ---: | ---: | --- |",
        *_target_rows(synth, imports, tracing, sizes, suite),
        *_storage_rows(storage),
        "",
        "## Storage designs under DynamoDB's conflict rule",
        "",
        f"{STORAGE_RECORDS} records of one type and day per run, 8 processors at once, a "
        "transaction holding its items 20 ms, Lambda's three attempts as rounds "
        "(`python -m pipeline_tools.bench.conflicts`). A design stops at its first rate that "
        'dead-letters a valid record. "Achieved" is what this machine\'s moto sustained. '
        '"Aged": after two roll-ups at once and the deletions TTL makes a week later; the '
        "roll-up's read units are one roll-up's.",
        "",
        *conflicts.render(storage),
    ]
    notes = (Path(__file__).resolve().parent / "NOTES.md").read_text()
    return "\n".join(lines) + "\n\n" + notes


if __name__ == "__main__":
    raise SystemExit(main())
