"""What each cost lever saves: the bill with the lever as set, against the bill with it undone.

Usage::

    python -m pipeline_tools.cost_levers [--markdown] [TEMPLATE]
    (default: cdk.out/per-record/DataPipeline-prod.template.json, prod on the per-record path)

Each lever is undone in a copy of the synthesized template (the code still comes from the
assembly's assets), the code is metered again where the lever changes what it consumes, and
both are priced by the cost report at 1 M and 10 M records a month. The README's table of levers
is this command's output. The levers are the per-record design's: on the batched path a record
is a fraction of an invocation, so what a lever saves an invocation weighs less.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_tools.bill.pricing import load_prices
from pipeline_tools.bill.report import report
from pipeline_tools.bill.usage import CodeUsage, measure
from pipeline_tools.bill.workload import Workload
from pipeline_tools.template import load_template

VOLUMES = (1_000_000, 10_000_000)
Template = dict[str, Any]


@dataclass(frozen=True)
class Lever:
    """A setting that cuts the bill, and how to undo it in a template."""

    name: str
    setting: str
    undo: Callable[[Template], None]
    #: Whether undoing it changes what the code consumes (then the code is metered again).
    metered: bool = False


def _functions(template: Template) -> Iterator[dict[str, Any]]:
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function":
            yield resource["Properties"]


def _trace_everything(template: Template) -> None:
    for props in _functions(template):
        props["TracingConfig"] = {"Mode": "Active"}


def _log_every_record(template: Template) -> None:
    for props in _functions(template):
        props["LoggingConfig"]["ApplicationLogLevel"] = "DEBUG"
        props["Environment"]["Variables"]["POWERTOOLS_LOG_LEVEL"] = "DEBUG"


def _keep_lambdas_own_lines(template: Template) -> None:
    for props in _functions(template):
        props["LoggingConfig"]["SystemLogLevel"] = "INFO"


def _keep_records_for_ever(template: Template) -> None:
    for props in _functions(template):
        variables = props.get("Environment", {}).get("Variables", {})
        variables.pop("RECORD_RETENTION_DAYS", None)


def _plain_json_payload(template: Template) -> None:
    for props in _functions(template):
        variables = props.get("Environment", {}).get("Variables", {})
        if "PAYLOAD_ENCODING" in variables:
            variables["PAYLOAD_ENCODING"] = "json"


def _warm_around_the_clock(template: Template) -> None:
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget":
            actions = resource["Properties"].pop("ScheduledActions", [])
            floors = [a["ScalableTargetAction"].get("MinCapacity", 0) for a in actions]
            resource["Properties"]["MinCapacity"] = max(
                [resource["Properties"]["MinCapacity"], *floors]
            )


LEVERS = (
    Lever(
        "Tracing only where it pays",
        "`functions.<stage>.tracing`: PassThrough (undone: Active on every stage)",
        _trace_everything,
    ),
    Lever(
        "Application log level",
        "`log_level` INFO: warnings, errors and EMF lines only (undone: DEBUG, a line a record)",
        _log_every_record,
        metered=True,
    ),
    Lever(
        "System log level",
        "`system_log_level` WARN: no START/REPORT lines (undone: INFO, which `make rightsize` "
        "needs; staging keeps it)",
        _keep_lambdas_own_lines,
        metered=True,
    ),
    Lever(
        "Record retention",
        "`record_retention_days` 60 (undone: kept for ever): point-in-time recovery; the "
        "storage line, left out of the comparison, falls too",
        _keep_records_for_ever,
        metered=True,
    ),
    Lever(
        "Compact stored item",
        "`payload_encoding` deflate (undone: json): a 1 KB record's item under 1 KB",
        _plain_json_payload,
        metered=True,
    ),
    Lever(
        "Provisioned-concurrency window",
        "`auto_scaling.schedule`: business hours only (undone: the same floor all week)",
        _warm_around_the_clock,
    ),
)


@dataclass(frozen=True)
class Saving:
    lever: Lever
    usd: Mapping[int, float]


def savings(
    assembly_dir: Path,
    stack_name: str,
    template: Mapping[str, Any],
    workload: Workload,
    prices: Mapping[str, Any],
) -> list[Saving]:
    """Each lever's monthly saving at each of :data:`VOLUMES` (bill undone minus bill as set)."""
    metered = sum(lever.metered for lever in LEVERS)
    print(
        f"cost levers: metering {stack_name}'s code as set and with each of {metered} levers "
        "undone ...",
        file=sys.stderr,
        flush=True,
    )
    usage, naive = measure(assembly_dir, stack_name, template, workload, quiet=True)

    def compared(t: Mapping[str, Any], u: CodeUsage, volume: int) -> float:
        return report(t, stack_name, workload.at(volume), prices, u, naive).stack.compared

    found = []
    for lever in LEVERS:
        undone: Template = copy.deepcopy(dict(template))
        lever.undo(undone)
        undone_usage = (
            measure(assembly_dir, stack_name, undone, workload, quiet=True)[0]
            if lever.metered
            else usage
        )
        found.append(
            Saving(
                lever,
                {
                    v: compared(undone, undone_usage, v) - compared(template, usage, v)
                    for v in VOLUMES
                },
            )
        )
    return found


def render(found: Sequence[Saving], markdown: bool) -> str:
    if markdown:
        lines = [
            "| lever | setting | saves at 1 M a month | saves at 10 M a month |",
            "| --- | --- | ---: | ---: |",
        ]
        lines += [
            f"| {s.lever.name} | {s.lever.setting} | "
            + " | ".join(f"${s.usd[v]:,.2f}" for v in VOLUMES)
            + " |"
            for s in found
        ]
        return "\n".join(lines)
    width = max(len(s.lever.name) for s in found) + 2
    lines = [f"{'lever':<{width}}{'1 M':>10}{'10 M':>10}"]
    lines += [
        f"{s.lever.name:<{width}}" + "".join(f"{f'${s.usd[v]:,.2f}':>10}" for v in VOLUMES)
        for s in found
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_tools.cost_levers")
    parser.add_argument(
        "template",
        nargs="?",
        type=Path,
        default=Path("cdk.out/per-record/DataPipeline-prod.template.json"),
        help="a per-record template (default: prod's, as make synth-all writes it)",
    )
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    try:
        template = load_template(args.template)
    except FileNotFoundError as error:
        print(f"levers: {error}", file=sys.stderr)
        return 1
    name = args.template.name.removesuffix(".template.json")
    found = savings(args.template.parent, name, template, Workload.load(), load_prices())
    print(render(found, args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
