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


#: A compared property: its name, the template's value, the emulator's, and what differs.
Compared = tuple[str, Any, Any, str]


def find_gaps(session: Any, stack: DeployedStack) -> list[Gap]:
    """Every resource the emulator lacks, and every compared property it did not keep."""
    gaps = [
        Gap(logical_id, resource["Type"], None, "the emulator reports no physical resource")
        for logical_id, resource in stack.template["Resources"].items()
        if resource["Type"] != "AWS::CDK::Metadata" and logical_id not in stack.physical
    ]
    for kind, compare in _COMPARISONS.items():
        for logical_id, resource in stack.of_type(kind).items():
            if logical_id not in stack.physical:
                continue
            gaps += [
                Gap(logical_id, kind, prop, detail)
                for prop, expected, actual, detail in compare(session, stack, logical_id, resource)
                if expected != actual
            ]
    return gaps


def _kept(prop: str, expected: Any, actual: Any, *, quoted: bool = False) -> Compared:
    shown = (repr(expected), repr(actual)) if quoted else (str(expected), str(actual))
    return prop, expected, actual, f"template {shown[0]}, emulator {shown[1]}"


def _function(session: Any, stack: DeployedStack, logical_id: str, resource: Any) -> list[Compared]:
    wanted = resource["Properties"]
    config = session.client("lambda").get_function(FunctionName=stack.physical[logical_id])
    got = config["Configuration"]
    tags = config.get("Tags") or {}
    pairs = {
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
    return [_kept(prop, *pair, quoted=True) for prop, pair in pairs.items()]


def _invoke_config(
    session: Any, stack: DeployedStack, logical_id: str, resource: Any
) -> list[Compared]:
    p = resource["Properties"]
    function_id = p["FunctionName"].get("Ref") if isinstance(p["FunctionName"], dict) else None
    if function_id not in stack.physical:
        return []
    got = session.client("lambda").get_function_event_invoke_config(
        FunctionName=stack.physical[function_id], Qualifier="live"
    )
    kept = bool(p.get("DestinationConfig")), bool(got.get("DestinationConfig"))
    return [
        _kept(
            "MaximumRetryAttempts", p.get("MaximumRetryAttempts"), got.get("MaximumRetryAttempts")
        ),
        ("DestinationConfig", *kept, "the on-success destination was not kept"),
    ]


def _log_group(
    session: Any, stack: DeployedStack, logical_id: str, resource: Any
) -> list[Compared]:
    groups = session.client("logs").describe_log_groups(
        logGroupNamePrefix=stack.physical[logical_id]
    )["logGroups"]
    retention = groups[0].get("retentionInDays") if groups else None
    return [_kept("RetentionInDays", resource["Properties"].get("RetentionInDays"), retention)]


def _table(session: Any, stack: DeployedStack, logical_id: str, resource: Any) -> list[Compared]:
    table = session.client("dynamodb").describe_table(TableName=stack.physical[logical_id])
    billing = table["Table"].get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    return [_kept("BillingMode", resource["Properties"].get("BillingMode"), billing)]


_COMPARISONS = {
    "AWS::Lambda::Function": _function,
    "AWS::Lambda::EventInvokeConfig": _invoke_config,
    "AWS::Logs::LogGroup": _log_group,
    "AWS::DynamoDB::Table": _table,
}


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
