"""One environment's pipeline stack, with everything that goes with it at synth.

The CDK app (``app.py``) adds it to the app, and the toolchain (``serverless_stack/toolchain.py``)
to each of its deployment stages, so a stage deploys exactly what ``cdk synth -c
environment=<env>`` synthesizes: cdk-nag's AwsSolutions and Serverless packs and AWS Control
Tower's proactive controls on the scope, their acknowledgments, the checkov skips, and the cost
allocation tags on every taggable resource.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from serverless_stack.checkov_skips import skip_checkov_checks
from serverless_stack.compliance import acknowledge_findings, attach_rule_packs
from serverless_stack.config import PipelineConfig
from serverless_stack.stack import PipelineStack


def stack_name(environment: str) -> str:
    return f"DataPipeline-{environment}"


def cost_tags(config: PipelineConfig) -> dict[str, str]:
    return {
        "Environment": config.environment,
        "Project": "DataProcessing",
        "ManagedBy": "CDK",
        "CostCenter": config.settings.cost_center,
    }


def add_pipeline(
    scope: Construct,
    config: PipelineConfig,
    *,
    skip_acknowledgments: frozenset[str] = frozenset(),
    **stack_options: Any,
) -> PipelineStack:
    """The pipeline stack of ``config``'s environment in ``scope`` (an app or a stage), checked
    and tagged; ``skip_acknowledgments`` leaves named acknowledgments out (tests use it)."""
    name = stack_name(config.environment)
    stack = PipelineStack(
        scope,
        name,
        config=config,
        stack_name=name,
        description=f"Cost-optimized serverless data pipeline ({config.environment})",
        **stack_options,
    )
    attach_rule_packs(scope, config, skip=skip_acknowledgments)
    acknowledge_findings(stack, skip=skip_acknowledgments)
    skip_checkov_checks(stack)
    for key, value in cost_tags(config).items():
        cdk.Tags.of(scope).add(key, value)
    return stack
