"""Print a short summary of a synthesized pipeline template.

Usage: ``python -m pipeline_tools.summary cdk.out/DataPipeline-dev.template.json``
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

from pipeline_tools.template import StackTemplate, load_template, resources


def summarize(template: dict[str, Any]) -> list[str]:
    """One line per function, then the table, queues, alarms and resource counts."""
    stack = StackTemplate.of(template)
    aliases = stack.resources("AWS::Lambda::Alias")
    targets = stack.resources("AWS::ApplicationAutoScaling::ScalableTarget").values()
    groups = stack.resources("AWS::CodeDeploy::DeploymentGroup")
    lines = ["Functions:"]
    for name, stage in stack.stages.items():
        p = stage.properties
        alias_id = stage.alias_id or ""
        alias = aliases[alias_id]["Properties"] if alias_id else {}
        pc = _provisioned_concurrency(alias_id, alias, targets)
        lines.append(
            f"  {name:<10} {p['MemorySize']:>5} MB  {p['Runtime']} "
            f"{'/'.join(p.get('Architectures', ['x86_64']))}  timeout {p['Timeout']} s  "
            f"alias {alias.get('Name', '-')}  provisioned concurrency {pc}"
        )
        update = aliases.get(alias_id, {}).get("UpdatePolicy", {})
        lines.append(f"             deploys {_deployment(update, groups)}")
    for table in resources(template, "AWS::DynamoDB::Table").values():
        p = table["Properties"]
        pitr = p.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")
        ttl = p.get("TimeToLiveSpecification", {}).get("AttributeName")
        lines.append(
            f"Table: {p.get('BillingMode', 'PROVISIONED')}, PITR {'on' if pitr else 'off'}, "
            f"deletion protection {'on' if p.get('DeletionProtectionEnabled') else 'off'}, "
            f"removal {table.get('DeletionPolicy', 'Delete')}, "
            f"TTL {'on ' + ttl if ttl else 'off (records kept for ever)'}"
        )
    retention = sorted(
        {
            g["Properties"].get("RetentionInDays", "never expires")
            for g in resources(template, "AWS::Logs::LogGroup").values()
        },
        key=str,
    )
    lines.append(f"Log groups: retention {', '.join(map(str, retention))} days")
    counts = Counter(r["Type"] for r in template.get("Resources", {}).values())
    lines.append(
        f"Alarms: {counts['AWS::CloudWatch::Alarm']}, "
        f"queues: {counts['AWS::SQS::Queue']}, resources: {sum(counts.values())}"
    )
    lines.append("Outputs: " + ", ".join(sorted(template.get("Outputs", {}))))
    return lines


def _deployment(update: dict[str, Any], groups: dict[str, Any]) -> str:
    """How the alias takes a new version: its CodeDeploy config and rollback alarms."""
    group_ref = update.get("CodeDeployLambdaAliasUpdate", {}).get("DeploymentGroupName", {})
    group = groups.get(group_ref.get("Ref", "") if isinstance(group_ref, dict) else "")
    if group is None:
        return "at once (no CodeDeploy deployment group)"
    p = group["Properties"]
    config = str(p.get("DeploymentConfigName", "")).removeprefix("CodeDeployDefault.Lambda")
    alarms = p.get("AlarmConfiguration", {})
    count = len(alarms.get("Alarms", [])) if alarms.get("Enabled") else 0
    return f"with CodeDeploy {config}, rolling back on {count} alarms"


def _provisioned_concurrency(alias_id: str, alias: dict[str, Any], targets: Any) -> str:
    """The alias's fixed value, or the range of the scalable target that owns it."""
    fixed = alias.get("ProvisionedConcurrencyConfig", {}).get("ProvisionedConcurrentExecutions")
    if fixed:
        return str(fixed)
    for target in targets:
        t = target["Properties"]
        if alias_id and alias_id in str(t["ResourceId"]):
            actions = len(t.get("ScheduledActions", []))
            schedule = f", {actions} scheduled actions" if actions else ""
            return f"auto-scaled {t['MinCapacity']}-{t['MaxCapacity']}{schedule}"
    return "0"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m pipeline_tools.summary <template.json>", file=sys.stderr)
        return 2
    try:
        template = load_template(args[0])
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{args[0]}:")
    print("\n".join(summarize(template)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
