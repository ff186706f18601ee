"""How each stage's runtime code is packaged.

Every stage's asset is ``lambda_src/`` minus the *other* stages: its own package plus the
shared ``pipeline_common`` package, and nothing else (no caches, no tests). A change to one
stage therefore changes only that stage's asset hash, version and alias.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_lambda as lambda_

from serverless_stack.config import FUNCTION_NAMES as STAGES

LAMBDA_SRC = Path(__file__).resolve().parent.parent / "lambda_src"
_ALWAYS_EXCLUDED = ("**/__pycache__", "**/*.pyc", "**/tests", "**/.mypy_cache", "**/.ruff_cache")


def stage_code(stage: str) -> lambda_.Code:
    """The asset of ``stage``: ``lambda_src/<stage>/`` and ``lambda_src/pipeline_common/``."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    others = [name for name in STAGES if name != stage]
    return lambda_.Code.from_asset(str(LAMBDA_SRC), exclude=[*others, *_ALWAYS_EXCLUDED])


def stage_handler(stage: str) -> str:
    """The handler of ``stage``: ``<stage>.handler.lambda_handler``."""
    return f"{stage}.handler.lambda_handler"
