"""The toolchain's monthly bill: a line of its own, apart from the pipeline's.

Usage::

    python -m pipeline_tools.toolchain_cost [--markdown] [TEMPLATE]
        (default: cdk.out/DataPipeline-Toolchain.template.json; ``make synth-toolchain`` first)

From the synthesized toolchain: every action of the pipeline (CodePipeline V2 bills each
action's execution in whole minutes, every type but manual approval and custom actions), the
CodeBuild projects behind its build actions and their compute type, the KMS keys (the
cross-account artifact key), the artifact bucket's expiry and the build logs' retention. From
``pipeline_tools/data/toolchain_workload.json``: how many pushes a month, and how long each
kind of action runs (assumptions, written there). Prices: ``pipeline_tools/data/prices.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_tools.bill.pricing import GB, PRICES_FILE, LineItem, load_prices
from pipeline_tools.template import load_template, resources

WORKLOAD_FILE = Path(__file__).resolve().parent / "data" / "toolchain_workload.json"
DEFAULT_TEMPLATE = Path("cdk.out/DataPipeline-Toolchain.template.json")
MB = 1024**2


@dataclass(frozen=True)
class Action:
    stage: str
    name: str
    category: str
    provider: str

    def kind(self) -> str:
        """The workload's name for how long this action runs."""
        if self.category == "Source":
            return "Source"
        if self.stage == "Assets":
            return "Asset"
        return self.name.rsplit(".", 1)[-1]


def actions_of(template: Mapping[str, Any]) -> list[Action]:
    (pipeline,) = resources(template, "AWS::CodePipeline::Pipeline").values()
    return [
        Action(
            stage["Name"], a["Name"], a["ActionTypeId"]["Category"], a["ActionTypeId"]["Provider"]
        )
        for stage in pipeline["Properties"]["Stages"]
        for a in stage["Actions"]
    ]


def _minutes(action: Action, workload: Mapping[str, Any]) -> int:
    if action.stage == "Prod" and action.kind() == "Deploy":
        return int(workload["prod_deploy_minutes"])  # the CodeDeploy canary of each alias
    return math.ceil(workload["minutes"][action.kind()])


def toolchain_bill(
    template: Mapping[str, Any], workload: Mapping[str, Any], prices: Mapping[str, Any]
) -> list[LineItem]:
    """The toolchain's monthly line items."""
    tc, cw = prices["toolchain"], prices["cloudwatch"]
    runs = workload["executions_per_month"]
    actions = actions_of(template)
    billed = [a for a in actions if a.category != "Approval"]
    action_minutes = runs * sum(_minutes(a, workload) for a in billed)
    builds = [a for a in actions if a.provider == "CodeBuild"]
    (compute,) = {
        p["Properties"]["Environment"]["ComputeType"]
        for p in resources(template, "AWS::CodeBuild::Project").values()
    }
    build_minutes = runs * sum(_minutes(a, workload) for a in builds)
    keys = len(resources(template, "AWS::KMS::Key"))
    days = _artifact_days(template)
    # Each execution's artifacts are kept `days`, and as noncurrent versions as long again.
    artifact_gb = runs * workload["artifact_mb_per_execution"] * MB / GB * min(1.0, days / 30) * 2
    log_gb = build_minutes * workload["build_log_mb_per_build_minute"] * MB / GB
    return [
        LineItem(
            "CodePipeline V2 action minutes",
            action_minutes * tc["codepipeline_v2_action_minute"],
            f"{action_minutes:,} minutes ({len(billed)} actions a run, {runs} runs)",
        ),
        LineItem(
            "CodeBuild minutes",
            build_minutes * tc["codebuild_minute"][compute],
            f"{build_minutes:,} minutes on {compute} ({len(builds)} builds a run)",
        ),
        LineItem(
            "Artifact bucket (S3)",
            artifact_gb * tc["s3_standard_gb_month"],
            f"{artifact_gb:.2f} GB",
        ),
        LineItem("KMS key (cross-account artifacts)", keys * tc["kms_key_month"], f"{keys} key"),
        LineItem(
            "CloudWatch Logs (builds)",
            log_gb * cw["logs_ingestion_per_gb"] + log_gb * cw["logs_storage_per_gb_month"],
            f"{log_gb:.2f} GB a month, kept a month",
        ),
    ]


def _artifact_days(template: Mapping[str, Any]) -> int:
    (bucket,) = resources(template, "AWS::S3::Bucket").values()
    rules = bucket["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
    return min((int(r["ExpirationInDays"]) for r in rules if "ExpirationInDays" in r), default=30)


def render(items: Sequence[LineItem], runs: int, markdown: bool = False) -> str:
    total = sum(i.usd for i in items)
    title = f"Toolchain (its own account, apart from the pipeline's bill), {runs} pushes a month"
    if markdown:
        lines = [f"**{title}**", "", "| line | monthly | basis |", "| --- | ---: | --- |"]
        lines += [f"| {i.name} | ${i.usd:,.2f} | {i.detail} |" for i in items]
        lines.append(f"| **total** | **${total:,.2f}** | |")
    else:
        lines = [title, *(f"  {i.name:<36} ${i.usd:>8,.2f}  {i.detail}" for i in items)]
        lines.append(f"  {'total':<36} ${total:>8,.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_tools.toolchain_cost")
    parser.add_argument("template", nargs="?", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    try:
        template = load_template(args.template)
    except (FileNotFoundError, ValueError) as error:
        print(f"toolchain cost: {error}", file=sys.stderr)
        return 1
    workload = json.loads(WORKLOAD_FILE.read_text())
    items = toolchain_bill(template, workload, load_prices(PRICES_FILE))
    print(render(items, workload["executions_per_month"], args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
