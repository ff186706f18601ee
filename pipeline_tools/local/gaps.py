"""What the emulator did not create, or did not keep, compared with the deployed template.

Users must never believe something was deployed when it was not: every resource of the template
is looked up in the emulator, and the properties that matter are read back and compared. Each
gap is either on the documented allowlist (``known_gaps.json``, with its reason) or fails the
local deploy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_tools.local.deployed import DeployedStack

KNOWN_GAPS_FILE = Path(__file__).resolve().parent / "known_gaps.json"


@dataclass(frozen=True)
class Gap:
    logical_id: str
    resource_type: str
    property: str | None  # None: the resource itself is missing
    detail: str

    def key(self) -> tuple[str, str | None]:
        return (self.resource_type, self.property)

    def describe(self) -> str:
        what = "not created" if self.property is None else f"{self.property} not kept"
        return f"{self.logical_id} ({self.resource_type}): {what}; {self.detail}"


def known_gaps(path: Path = KNOWN_GAPS_FILE) -> dict[tuple[str, str | None], str]:
    return {
        (g["type"], g.get("property")): g["reason"] for g in json.loads(path.read_text())["gaps"]
    }


def find_gaps(session: Any, stack: DeployedStack) -> list[Gap]:
    """Every resource the emulator lacks, and every compared property it did not keep."""
    gaps = []
    for logical_id, resource in stack.template["Resources"].items():
        kind = resource["Type"]
        if kind == "AWS::CDK::Metadata":
            continue
        if logical_id not in stack.physical:
            gaps.append(Gap(logical_id, kind, None, "the emulator reports no physical resource"))
    lam = session.client("lambda")
    for logical_id, resource in stack.of_type("AWS::Lambda::Function").items():
        if logical_id not in stack.physical:
            continue
        wanted = resource["Properties"]
        config = lam.get_function(FunctionName=stack.physical[logical_id])
        got = config["Configuration"]
        tags = config.get("Tags") or {}
        checks = {
            "Handler": (wanted.get("Handler"), got.get("Handler")),
            "Runtime": (wanted.get("Runtime"), got.get("Runtime")),
            "MemorySize": (wanted.get("MemorySize"), got.get("MemorySize")),
            "Timeout": (wanted.get("Timeout"), got.get("Timeout")),
            "Architectures": (wanted.get("Architectures", ["x86_64"]), got.get("Architectures")),
            "TracingConfig": (
                wanted.get("TracingConfig", {}).get("Mode", "PassThrough"),
                (got.get("TracingConfig") or {}).get("Mode"),
            ),
            "Layers": (len(wanted.get("Layers", [])), len(got.get("Layers") or [])),
            "DeadLetterConfig": ("DeadLetterConfig" in wanted, bool(got.get("DeadLetterConfig"))),
            "LoggingConfig": (
                bool(wanted.get("LoggingConfig", {}).get("LogGroup")),
                bool((got.get("LoggingConfig") or {}).get("LogGroup")),
            ),
            "Tags": (
                sorted(t["Key"] for t in wanted.get("Tags", [])),
                sorted(k for k in tags if not k.startswith("aws:")),
            ),
        }
        for prop, (expected, actual) in checks.items():
            if expected != actual:
                gaps.append(
                    Gap(
                        logical_id,
                        "AWS::Lambda::Function",
                        prop,
                        f"template {expected!r}, emulator {actual!r}",
                    )
                )
    for logical_id, resource in stack.of_type("AWS::Lambda::EventInvokeConfig").items():
        p = resource["Properties"]
        function_id = p["FunctionName"].get("Ref") if isinstance(p["FunctionName"], dict) else None
        if logical_id not in stack.physical or function_id not in stack.physical:
            continue
        got = lam.get_function_event_invoke_config(
            FunctionName=stack.physical[function_id], Qualifier="live"
        )
        if got.get("MaximumRetryAttempts") != p.get("MaximumRetryAttempts"):
            gaps.append(
                Gap(
                    logical_id,
                    "AWS::Lambda::EventInvokeConfig",
                    "MaximumRetryAttempts",
                    f"template {p.get('MaximumRetryAttempts')}, emulator "
                    f"{got.get('MaximumRetryAttempts')}",
                )
            )
        if bool(p.get("DestinationConfig")) != bool(got.get("DestinationConfig")):
            gaps.append(
                Gap(
                    logical_id,
                    "AWS::Lambda::EventInvokeConfig",
                    "DestinationConfig",
                    "the on-success destination was not kept",
                )
            )
    logs = session.client("logs")
    for logical_id, resource in stack.of_type("AWS::Logs::LogGroup").items():
        if logical_id not in stack.physical:
            continue
        groups = logs.describe_log_groups(logGroupNamePrefix=stack.physical[logical_id])[
            "logGroups"
        ]
        retention = groups[0].get("retentionInDays") if groups else None
        if retention != resource["Properties"].get("RetentionInDays"):
            gaps.append(
                Gap(
                    logical_id,
                    "AWS::Logs::LogGroup",
                    "RetentionInDays",
                    f"template {resource['Properties'].get('RetentionInDays')}, "
                    f"emulator {retention}",
                )
            )
    ddb = session.client("dynamodb")
    for logical_id, resource in stack.of_type("AWS::DynamoDB::Table").items():
        if logical_id not in stack.physical:
            continue
        table = ddb.describe_table(TableName=stack.physical[logical_id])["Table"]
        billing = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
        if billing != resource["Properties"].get("BillingMode"):
            gaps.append(
                Gap(
                    logical_id,
                    "AWS::DynamoDB::Table",
                    "BillingMode",
                    f"template {resource['Properties'].get('BillingMode')}, emulator {billing}",
                )
            )
    return gaps


def stand_ins(path: Path = KNOWN_GAPS_FILE) -> list[dict[str, str]]:
    """What the emulator answers with a stand-in rather than AWS's own value."""
    return list(json.loads(path.read_text()).get("stand_ins", []))


def left_out(path: Path = KNOWN_GAPS_FILE) -> list[dict[str, str]]:
    """What the app synthesized for the emulator does not make (the emulator lacks it)."""
    return list(json.loads(path.read_text()).get("left_out", []))


def split_gaps(gaps: list[Gap]) -> tuple[list[tuple[Gap, str]], list[Gap]]:
    """(allowlisted gaps with their reasons, gaps that are not on the allowlist)."""
    allowed = known_gaps()
    known = [(g, allowed[g.key()]) for g in gaps if g.key() in allowed]
    unknown = [g for g in gaps if g.key() not in allowed]
    return known, unknown


def render(gaps: list[Gap]) -> str:
    known, unknown = split_gaps(gaps)
    lines = [
        f"What the emulator did not create or keep ({len(gaps)} gaps, "
        f"{len(unknown)} not on the allowlist):"
    ]
    by_key: dict[tuple[str, str | None], list[Gap]] = {}
    for gap, _ in known:
        by_key.setdefault(gap.key(), []).append(gap)
    for (kind, prop), found in sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        what = "not created" if prop is None else f"{prop} not kept"
        reason = known_gaps()[(kind, prop)]
        lines.append(f"  known  {kind} {what} ×{len(found)}: {reason}")
    for gap in unknown:
        lines.append(f"  NEW    {gap.describe()}")
    for stand_in in stand_ins():
        lines.append(f"  stand-in  {stand_in['what']}: {stand_in['reason']}")
    for missing in left_out():
        lines.append(f"  left out  {missing['what']}: {missing['reason']}")
    return "\n".join(lines)
