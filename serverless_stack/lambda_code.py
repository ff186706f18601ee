"""How each stage's runtime code is packaged.

Every stage's asset is ``lambda_src/`` minus the *other* stages: its own package plus the
shared ``pipeline_common`` package, and nothing else (no caches, no tests). A change to one
stage therefore changes only that stage's asset hash, version and alias.

``lambda_src/requirements.txt`` pins what the handlers need beyond the runtime (Powertools). It
is not packaged: Lambda gets that release from AWS's public layer, resolved from the same line.
"""

from __future__ import annotations

import re
from pathlib import Path

from aws_cdk import aws_lambda as lambda_

from serverless_stack.stages import STAGES

LAMBDA_SRC = Path(__file__).resolve().parent.parent / "lambda_src"
RUNTIME_REQUIREMENTS = LAMBDA_SRC / "requirements.txt"
_ALWAYS_EXCLUDED = (
    "**/__pycache__",
    "**/*.pyc",
    "**/tests",
    "**/.mypy_cache",
    "**/.ruff_cache",
    "requirements.txt",
)
_POWERTOOLS_PIN = re.compile(r"^aws-lambda-powertools(\[[\w,]+\])?==(?P<release>[^\s;#]+)", re.M)


#: The hourly count roll-up (``lambda_src/rollup``): its own package and ``pipeline_common``.
ROLLUP = "rollup"
ROLLUP_HANDLER = f"{ROLLUP}.handler.lambda_handler"


def stage_code(stage: str) -> lambda_.Code:
    """The asset of ``stage``: ``lambda_src/<stage>/`` and ``lambda_src/pipeline_common/``."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    others = [name for name in STAGES if name != stage]
    return lambda_.Code.from_asset(str(LAMBDA_SRC), exclude=[*others, ROLLUP, *_ALWAYS_EXCLUDED])


def rollup_code() -> lambda_.Code:
    """The asset of the count roll-up: ``lambda_src/rollup/`` and ``pipeline_common/``."""
    return lambda_.Code.from_asset(str(LAMBDA_SRC), exclude=[*STAGES, *_ALWAYS_EXCLUDED])


def stage_handler(stage: str, *, batched: bool = False) -> str:
    """The handler of ``stage``: ``<stage>.handler.lambda_handler`` for one record an
    invocation, ``<stage>.handler.batch_handler`` for batches of its SQS queue."""
    return f"{stage}.handler.{'batch_handler' if batched else 'lambda_handler'}"


def powertools_release(requirements: Path = RUNTIME_REQUIREMENTS) -> str:
    """The Powertools release pinned (``==``) in ``lambda_src/requirements.txt``.

    :raises ValueError: when the file holds no exact pin, naming the file and what it needs.
    """
    found = _POWERTOOLS_PIN.findall(requirements.read_text())
    if len(found) != 1:
        raise ValueError(
            f"{requirements} must pin Powertools exactly once, e.g. "
            f"'aws-lambda-powertools[tracer]==3.37.0'; found {len(found)} pins"
        )
    return str(found[0][1])
