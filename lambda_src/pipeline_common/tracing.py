"""Powertools' Tracer only where a stage traces.

``Tracer()`` imports the X-Ray SDK (``aws_xray_sdk.core``) when it is constructed, even with
``POWERTOOLS_TRACE_DISABLED`` set: about 140 ms of a cold start, paid again at every scale-out.
The stack sets that variable on every stage whose ``tracing`` is PassThrough, so there the
stage gets a stand-in whose decorators return the function unchanged, and the SDK is never
imported. Where a stage traces (``tracing: Active``), it gets Powertools' own Tracer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


class NoTracer:
    """Tracer's decorators, doing nothing: the stage does not trace."""

    def capture_lambda_handler(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        return handler

    def capture_method(self, method: Callable[..., Any]) -> Callable[..., Any]:
        return method


def stage_tracer() -> Any:
    """Powertools' Tracer where the stage traces; else a :class:`NoTracer`."""
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in ("true", "1"):
        return NoTracer()
    from aws_lambda_powertools import Tracer

    return Tracer()
