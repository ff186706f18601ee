#!/usr/bin/env python3
"""CDK entry point: ``npx cdk synth [-c environment=dev|staging|prod]``, or the toolchain that
deploys them all with ``npx cdk synth -c synth=toolchain`` (``make synth-toolchain``).

Reads the environment from context, validates its settings, builds the pipeline stack and tags
every taggable resource once, at the app, for cost allocation.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_VENV = Path(__file__).resolve().parent / ".venv"
CDK_JSON = Path(__file__).resolve().parent / "cdk.json"
_VENV_PYTHON = _VENV / "bin" / "python"
try:
    import aws_cdk as cdk
except ImportError:  # `npx cdk ...` from a shell without the venv: use the project's venv
    # A venv is known by sys.prefix: its `python` resolves to the interpreter it was made
    # from, so comparing executables cannot tell the two apart.
    if _VENV_PYTHON.exists() and Path(sys.prefix).resolve() != _VENV.resolve():
        os.execv(str(_VENV_PYTHON), [str(_VENV_PYTHON), *sys.argv])
    sys.exit("aws-cdk-lib is not installed for this Python: run `make install` (it creates .venv)")

from serverless_stack import local_emulator  # noqa: E402  (after the venv check above)
from serverless_stack.assembly import add_pipeline  # noqa: E402
from serverless_stack.config import (  # noqa: E402
    ConfigError,
    load_config,
    with_ingestion,
    with_nulls_restored,
)


def build_app(
    app: cdk.App | None = None, *, skip_acknowledgments: frozenset[str] = frozenset()
) -> cdk.App:
    """Build the app for the ``environment`` in the context (or, with ``-c synth=toolchain``,
    the toolchain that deploys every environment); raises ``ConfigError``.

    cdk-nag's AwsSolutions and Serverless packs and AWS Control Tower's proactive controls run
    at synth; ``skip_acknowledgments`` leaves named acknowledgments and Control Tower exemptions
    out (tests use it to show each one is needed).
    """
    app = app or cdk.App()
    settings = with_nulls_restored(app.node.try_get_context("pipeline"), CDK_JSON)
    if app.node.try_get_context("synth") == "toolchain":
        from serverless_stack.toolchain import add_toolchain

        add_toolchain(app, app.node.try_get_context("toolchain"), settings)
        return app
    environment = app.node.try_get_context("environment")
    # `-c ingestion=batched`: this synth takes the batched path (docs/batching.md).
    settings = with_ingestion(settings, environment, app.node.try_get_context("ingestion"))
    config = load_config(environment, settings)
    add_pipeline(
        app,
        config,
        skip_acknowledgments=skip_acknowledgments,
        **local_emulator.stack_options(app),
    )
    return app


if __name__ == "__main__":
    try:
        application = build_app()
    except ConfigError as error:
        sys.exit(f"Configuration error in cdk.json: {error}")
    application.synth()
