"""The complete monthly bill of the synthesized stack, line by line, against the naive stack.

Usage::

    python -m pipeline_tools.cost [--workload FILE] [--records-per-month N] [--sweep]
                                  [--chart PNG] [--markdown] [TEMPLATE ...]

With no template it reads ``cdk.out/DataPipeline-{dev,staging,prod}.template.json`` (``make
cost`` synthesizes them first). Every line the stack causes is priced: what drives cost from the
template (memory, tracing, logs, provisioned concurrency and its scaling, recovery, alarms,
dashboards), what the code consumes as ``pipeline_tools/meter.py`` measures it, the volume of
``pipeline_tools/data/workload.json``, and the list prices of ``pipeline_tools/data/prices.json``
(docs/cost.md says what each line counts). CodeDeploy has no charge for Lambda
(https://aws.amazon.com/codedeploy/pricing/).

The naive stack is the one this project replaces (:func:`baseline_of`). Record storage is the
same data on both sides, so the comparison (``ratio``) leaves it out of both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline_tools.arguments import OneLineParser
from pipeline_tools.bill.pricing import (
    COST_TARGETS,
    PRICES_FILE,
    SWEEP,
    Bill,
    Report,
    break_even,
    load_prices,
)
from pipeline_tools.bill.render import render, render_ages, render_sweep
from pipeline_tools.bill.report import report
from pipeline_tools.bill.usage import CodeUsage, measure
from pipeline_tools.bill.workload import WORKLOAD_FILE, CostInputError, Workload
from pipeline_tools.template import load_template


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m pipeline_tools.cost", description=__doc__.split("\n")[0])
    parser.add_argument(
        "templates",
        nargs="*",
        type=Path,
        help="synthesized templates, in their cloud assembly (default: "
        "cdk.out/DataPipeline-{dev,staging,prod})",
    )
    parser.add_argument(
        "--workload", type=Path, help=f"workload profile JSON (default: {WORKLOAD_FILE})"
    )
    parser.add_argument(
        "--records-per-month", type=int, help="the volume to price (default: the workload's)"
    )
    parser.add_argument(
        "--sweep", action="store_true", help=f"also price {', '.join(f'{v:,}' for v in SWEEP)}"
    )
    parser.add_argument("--chart", type=Path, help="write a PNG chart of the last template")
    parser.add_argument(
        "--against",
        type=Path,
        help="with --chart: also chart this template's bill (another design of the same stack, "
        "e.g. cdk.out/per-record/DataPipeline-prod.template.json)",
    )
    parser.add_argument("--prices", type=Path, default=PRICES_FILE, help="price file")
    parser.add_argument(
        "--markdown",
        action="store_true",
        default=os.environ.get("MARKDOWN", "") not in ("", "0"),
        help="Markdown tables, for the docs (also MARKDOWN=1)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check the workload and volume, and exit (make cost runs it before its synths)",
    )
    return parser


def _workload(args: argparse.Namespace) -> Workload:
    """The workload to price: the profile, at --records-per-month if given."""
    workload = Workload.load(
        args.workload, say=lambda line: print(line, file=sys.stderr, flush=True)
    )
    if args.records_per_month is None:
        return workload
    if args.records_per_month < 1:
        raise CostInputError(f"--records-per-month = {args.records_per_month}: must be 1 or more")
    return workload.at(args.records_per_month)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    templates = args.templates or [
        Path(f"cdk.out/DataPipeline-{e}.template.json") for e in ("dev", "staging", "prod")
    ]
    try:
        workload = _workload(args)
        if args.check:
            return 0
        prices = load_prices(args.prices)
        outputs = []
        for path in templates:
            name = path.name.removesuffix(".template.json")
            template = load_template(path)
            usage, naive = measure(path.parent, name, template, workload)

            def bill(
                volume: int,
                month: int | None = None,
                t: Mapping[str, Any] = template,
                n: str = name,
                u: CodeUsage = usage,
                b: CodeUsage = naive,
            ) -> Report:
                return report(t, n, workload.at(volume, month), prices, u, b)

            def first_month(volume: int) -> Report:
                return bill(volume, workload.months[0])

            outputs.append(render(bill(workload.records_per_month), args.markdown))
            if len(workload.months) > 1:
                ages = [bill(workload.records_per_month, m) for m in workload.months]
                outputs.append(render_ages(name, ages, args.markdown))
            if args.sweep:
                results = [bill(v, m) for v in SWEEP for m in workload.months]
                outputs.append(render_sweep(name, results, break_even(first_month), args.markdown))
            if args.chart and path == templates[-1]:
                from pipeline_tools.bill.chart import chart

                chart(
                    [bill(v) for v in COST_TARGETS],
                    args.chart,
                    break_even(first_month),
                    workload.months[0],
                    against=_bills(args.against, workload, prices) if args.against else (),
                )
                print(f"chart: {args.chart}", file=sys.stderr)
    except (CostInputError, FileNotFoundError, json.JSONDecodeError) as error:
        print(f"cost report: {error}", file=sys.stderr)
        return 1
    print("\n\n".join(outputs))
    return 0


def _bills(path: Path, workload: Workload, prices: Mapping[str, Any]) -> list[Bill]:
    """The bills of the template at ``path`` at the chart's volumes (``COST_TARGETS``)."""
    name = path.name.removesuffix(".template.json")
    template = load_template(path)
    usage, naive = measure(path.parent, name, template, workload, quiet=True)
    return [
        report(template, name, workload.at(v), prices, usage, naive).stack for v in COST_TARGETS
    ]


if __name__ == "__main__":
    raise SystemExit(main())
