"""AWS Control Tower's proactive controls at synth: the rules that run, and the exemptions.

The rules are the plugin's own (``CfnGuardValidator`` of ``cdklabs-cdk-validator-cfnguard``),
read from its package; only those about the stack's resource types are loaded. A control this
stack does not meet is disabled by rule, with its reason, while the settings leave it unmet.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.resources
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
from constructs import IConstruct

from serverless_stack.config import PipelineConfig


@dataclass(frozen=True)
class ControlExemption:
    """A Control Tower proactive control this stack does not meet, disabled with its reason.

    Control Tower's rules are disabled by rule (``disabled_rules``), not acknowledged per
    resource: aws-cdk-lib recomputes a plugin's conclusion once any of its findings is
    acknowledged, from severities this plugin does not set, so one acknowledgment would pass
    every other finding of it. Each exemption applies only while the settings leave the control
    unmet.
    """

    rule: str
    control: str
    reason: str
    applies: Callable[[PipelineConfig], bool] = lambda config: True


CONTROL_TOWER_EXEMPTIONS: tuple[ControlExemption, ...] = (
    ControlExemption(
        "ct-cloudwatch-pr-2",
        "CT.CLOUDWATCH.PR.2: log groups keep logs at least a year",
        "Retention is the setting log_retention_days, 7 days by default: a valid record writes "
        "no log line in prod, and a dead-lettered record carries its reason in the DLQ message. "
        "An account that enforces the control sets 365 (priced by `make cost`).",
        applies=lambda config: config.settings.log_retention_days < 365,
    ),
    ControlExemption(
        "ct-cloudwatch-pr-3",
        "CT.CLOUDWATCH.PR.3: log groups are encrypted with a KMS key",
        "The key is the setting log_kms_key_arn, none by default: CloudWatch Logs encrypts every "
        "log group at rest, and the logs carry record ids, never payloads. An account that "
        "enforces the control names its customer-managed key ($1 a month, plus KMS requests).",
        applies=lambda config: not config.settings.log_kms_key_arn,
    ),
    ControlExemption(
        "ct-lambda-pr-3",
        "CT.LAMBDA.PR.3: functions run in a customer-managed VPC",
        "The stages call only DynamoDB's regional endpoint; their destinations and DLQ writes "
        "are made by the Lambda service, not from the function. A VPC would add ENIs, subnets "
        "and endpoints the stack does not own; it is not offered yet, so an account that "
        "enforces this control cannot deploy the stack.",
    ),
    ControlExemption(
        "ct-sqs-pr-1",
        "CT.SQS.PR.1: every queue has a dead-letter queue",
        "The only queue is the functions' dead-letter queue, the end of the redrive chain; the "
        "rule reads it as a work queue (it does not recognise a Lambda DLQ). Its messages are "
        "kept 14 days, alarmed on, and replayed by invoking a stage's live alias.",
    ),
)


def control_tower_exemptions(
    config: PipelineConfig, *, skip: frozenset[str] = frozenset()
) -> list[ControlExemption]:
    """The exemptions that apply to ``config`` (``skip`` names rules to leave enforced)."""
    return [e for e in CONTROL_TOWER_EXEMPTIONS if e.rule not in skip and e.applies(config)]


#: Where the plugin's package keeps Control Tower's rules.
_RULES_IN_PACKAGE = "package/rules/control-tower/cfn-guard/"
_RESOURCE_TYPE = re.compile(r"AWS::[A-Za-z0-9]+::[A-Za-z0-9]+")


@functools.cache
def control_tower_rules() -> dict[str, tuple[Path, frozenset[str]]]:
    """Every Control Tower rule the plugin ships: its name (``ct-lambda-pr-3``) -> its file and
    the resource types it evaluates, read from the plugin's own package (extracted once per
    release into the temporary directory), so the rules are exactly the plugin's."""
    release = importlib.metadata.version("cdklabs-cdk-validator-cfnguard")
    root = Path(tempfile.gettempdir()) / f"cdk-validator-cfnguard-{release}-rules"
    if not root.is_dir():
        archive = importlib.resources.files("cdklabs.cdk_validator_cfnguard._jsii") / (
            f"cdk-validator-cfnguard@{release}.jsii.tgz"
        )
        staging = Path(tempfile.mkdtemp(prefix="cfnguard-rules-"))
        with archive.open("rb") as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(_RULES_IN_PACKAGE)]
            tar.extractall(staging, members=members, filter="data")
        with contextlib.suppress(OSError):  # another process got there first
            (staging / _RULES_IN_PACKAGE).rename(root)
        shutil.rmtree(staging, ignore_errors=True)
    return {
        rule.stem: (rule, frozenset(_RESOURCE_TYPE.findall(rule.read_text())))
        for rule in sorted(root.rglob("*.guard"))
    }


def control_tower_rules_for(types: frozenset[str], exempt: frozenset[str]) -> list[str]:
    """The rule files that evaluate any of ``types`` and are not exempt. cfn-guard takes about
    5 s to load all of Control Tower's rules, and under 1 s for the two dozen that evaluate
    this stack's resource types; a rule about a type the stack does not have cannot fail."""
    return [
        str(path)
        for name, (path, evaluated) in control_tower_rules().items()
        if evaluated & types and name not in exempt
    ]


def resource_types(scope: IConstruct) -> frozenset[str]:
    """The CloudFormation resource types under ``scope``."""
    return frozenset(
        c.cfn_resource_type for c in scope.node.find_all() if isinstance(c, cdk.CfnResource)
    )
