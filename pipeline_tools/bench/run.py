"""Benchmarks: synth, handler import (cold start), asset size, the storage designs under the
conflict rule, the batched path's work a record (``batch_work.py``) and the test suite, each
against its floor or baseline in the same run, with interleaved repetitions; writes
BENCHMARKS.md (and ``data/batch_work.json``, the figures the batched bill takes).

Usage: ``make bench`` (or ``python -m pipeline_tools.bench.run [--repeat N] [--skip-suite]``).
Each process is timed by pyperf (``pipeline_tools/bench/timing.py``).
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
import zipfile
from pathlib import Path

from pipeline_tools.bench import batch_work, conflicts
from pipeline_tools.bench.designs import DESIGNS
from pipeline_tools.bench.timing import Command, interleaved, summary
from pipeline_tools.template import asset_dirs
from serverless_stack.stages import STAGES

ROOT = Path(__file__).resolve().parents[2]
CDK = ROOT / "node_modules" / ".bin" / "cdk"
NODE = ROOT / "node_modules" / ".bin" / "node"
TARGETS = {"synth": 2.0, "import": 1.3, "asset_kb": 64, "suite": 8.0, "write_units": 2.0}


def env() -> dict[str, str]:
    path = os.pathsep.join(
        [
            str(ROOT / "node_modules" / ".bin"),
            str(Path(sys.executable).parent),
            os.environ.get("PATH", ""),
        ]
    )
    return {**os.environ, "PATH": path, "AWS_DEFAULT_REGION": "us-east-1"}


def cdk_synth(out: Path, *args: str) -> Command:
    """``cdk synth`` of this app (or with ``--app``, another) into ``out``, as a timed process."""
    return Command((str(CDK), "synth", "--quiet", *args, "-o", str(out)), cwd=ROOT)


def empty_synth(out: Path) -> Command:
    """The floor: ``cdk synth`` of pipeline_tools/bench/empty_app.py, same CLI, same Node."""
    return cdk_synth(out, "--app", f"{sys.executable} pipeline_tools/bench/empty_app.py")


def synth_benchmark(repeat: int, out: Path) -> dict[str, list[float]]:
    return interleaved(
        {
            "empty app synth": empty_synth(out / "empty"),
            "this app synth (dev)": cdk_synth(out / "app"),
        },
        repeat,
        out / "synth.json",
        env(),
    )


#: What a handler's import is measured against: the interpreter starting with nothing to import
#: (subtracted from every import), and ``import boto3``, the floor of a function that calls AWS.
START_UP = "python start-up"


def import_benchmark(
    repeat: int,
    code_dirs: dict[str, Path],
    environments: dict[str, dict[str, str]],
    results: Path,
) -> dict[str, list[float]]:
    """Fresh interpreters importing each stage's handler, under the stage's own environment
    variables from prod's template (so a PassThrough stage imports with
    ``POWERTOOLS_TRACE_DISABLED``, as in Lambda), interleaved with the floors."""
    lambda_env = {
        "TABLE_NAME": "bench",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "POWERTOOLS_SERVICE_NAME": "bench",
        "PYTHONDONTWRITEBYTECODE": "1",
    }

    def probe(
        module: str | None, path: Path | None = None, variables: dict[str, str] | None = None
    ) -> Command:
        extra = {**lambda_env, **(variables or {})}
        if path:
            extra["PYTHONPATH"] = str(path)
        return Command((sys.executable, "-c", f"import {module}" if module else "pass"), extra)

    commands = {START_UP: probe(None), "import boto3": probe("boto3")}
    for stage in STAGES:
        commands[f"import {stage}.handler"] = probe(
            f"{stage}.handler", code_dirs[stage], environments[stage]
        )
    return interleaved(commands, repeat, results, env())


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


def asset_sizes(out: Path, stack: str = "DataPipeline-dev") -> dict[str, int]:
    """Zipped size (deflate, as the CLI uploads it) of each function's asset."""
    sizes = {}
    for stage, asset in asset_dirs(out, stack).items():
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
        prod = cdk_synth(work / "prod", "-c", "environment=prod")
        subprocess.run(prod.argv, cwd=ROOT, env=env(), check=True, capture_output=True)
        code_dirs = _stage_dirs(work / "prod", "DataPipeline-prod")
        environments, tracing = stage_settings(work / "prod", "DataPipeline-prod")
        print("imports ...", flush=True)
        imports = import_benchmark(args.repeat * 3, code_dirs, environments, work / "imports.json")
        print("the batched path's work a record ...", flush=True)
        stage_work = batch_work.measure(work / "prod", "DataPipeline-prod")
        batch_work.save(stage_work)
        print("storage designs under the conflict rule ...", flush=True)
        storage = conflicts.ladder(
            list(DESIGNS),
            conflicts.RECORDS,
            conflicts.RATES,
            lambda line: print(line, flush=True),
        )
        suite: dict[str, list[float]] = {}
        if not args.skip_suite:
            print("test suite ...", flush=True)
            pytest = (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider")
            suite = interleaved(
                {
                    "empty app synth (suite floor)": empty_synth(work / "empty2"),
                    "test suite (pytest)": Command(
                        (*pytest, "-n", "2", "--dist", "loadfile"), cwd=ROOT
                    ),
                },
                1,
                work / "suite.json",
                env(),
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = render(versions(), synth, imports, tracing, sizes, storage, suite, stage_work)
    args.output.write_text(report)
    print(report)
    return 0


def _stage_dirs(out: Path, stack: str) -> dict[str, Path]:
    """The stages' assets in ``out`` (the work folder, removed when the run ends)."""
    return asset_dirs(out, stack)


def _row(name: str, values: list[float], unit: str = "s", scale: float = 1.0) -> str:
    s = summary(values)
    spread = f"± {s.stdev * scale:.3f} {unit}" if s.stdev is not None else "-"
    return (
        f"| {name} | {s.median * scale:.3f} {unit} | {spread} | {s.min * scale:.3f} {unit} "
        f"| {s.max * scale:.3f} {unit} | {len(values)} |"
    )


def _ratio(a: list[float], b: list[float], floor: list[float] | None = None) -> float:
    """The ratio of the medians; with ``floor``, of each median less the floor's."""
    base = statistics.median(floor) if floor else 0.0
    return (statistics.median(a) - base) / (statistics.median(b) - base)


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
        r = _ratio(imports[f"import {stage}.handler"], imports["import boto3"], imports[START_UP])
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
        f"| storage (markers): count items kept for {conflicts.RECORDS} records of a day and "
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
    stage_work: dict[str, dict[str, float]],
) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`pipeline_tools/bench/run.py`). "
        f"Machine: {machine['cores']} cores, "
        f"{machine['machine']}, Python {machine['python']}, Node {machine['node']} "
        "(the project's pinned Node 22). Each figure is whole processes timed by pyperf "
        "(`pipeline_tools/bench/timing.py`), its repetitions interleaved with its floor's, and "
        "medians compared, so load on this shared machine hits both sides of each ratio alike. "
        "An import's ratio is of the medians less the interpreter's start-up.",
        "",
        "## Figures",
        "",
        "| measurement | median | spread (stdev) | min | max | runs |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
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
        f"{conflicts.RECORDS} records of one type and day per run, 8 processors at once, a "
        "transaction holding its items 20 ms, Lambda's three attempts as rounds "
        "(`python -m pipeline_tools.bench.conflicts`). A design stops at its first rate that "
        'dead-letters a valid record. "Achieved" is what this machine\'s moto sustained. '
        '"Aged": after two roll-ups at once and the deletions TTL makes a week later; the '
        "roll-up's read units are one roll-up's.",
        "",
        *conflicts.render(storage),
        "",
        *batch_work.render(stage_work),
    ]
    notes = (Path(__file__).resolve().parent / "NOTES.md").read_text()
    return "\n".join(lines) + "\n\n" + notes


if __name__ == "__main__":
    raise SystemExit(main())
