"""What a synth for the local emulator (``-c local_emulator=true``) changes, and only there.

The emulator has no CodeDeploy (``pipeline_tools/local/known_gaps.json``, "left_out"), so the
stack goes without deployment groups; and it cannot evaluate the bootstrap-version rule's SSM
parameter on update, so that rule is left out. Real accounts always get both.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk

CONTEXT_KEY = "local_emulator"


def is_local_emulator(app: cdk.App) -> bool:
    """Whether the app is synthesized for the local emulator."""
    return str(app.node.try_get_context(CONTEXT_KEY)).lower() == "true"


def stack_options(app: cdk.App) -> dict[str, Any]:
    """``PipelineStack`` keyword arguments for this synth: none unless for the emulator."""
    if not is_local_emulator(app):
        return {}
    return {
        "deployments": False,
        "synthesizer": cdk.DefaultStackSynthesizer(generate_bootstrap_version_rule=False),
    }
