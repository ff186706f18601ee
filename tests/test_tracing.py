"""A stage that does not trace never imports the X-Ray SDK: Powertools' ``Tracer()`` imports
``aws_xray_sdk.core`` when constructed, even with POWERTOOLS_TRACE_DISABLED (about 140 ms of a
cold start); a stage that traces gets the real Tracer."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PROBE = (
    "import sys, {stage}.handler as h; "
    "print(type(h.tracer).__name__, 'aws_xray_sdk' in sys.modules)"
)


@pytest.mark.parametrize("stage", ["enricher", "processor"])
@pytest.mark.parametrize(
    ("disabled", "expected"), [("true", "NoTracer False"), (None, "Tracer True")]
)
def test_the_x_ray_sdk_is_imported_only_where_the_stage_traces(stage, disabled, expected):
    environment = {k: v for k, v in os.environ.items() if k != "POWERTOOLS_TRACE_DISABLED"} | {
        "TABLE_NAME": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    if disabled is not None:
        environment["POWERTOOLS_TRACE_DISABLED"] = disabled  # as the stack sets for PassThrough
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(stage=stage)],
        cwd=ROOT / "lambda_src",
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == expected


def test_the_stack_disables_powertools_tracing_exactly_where_tracing_is_pass_through(
    template_json,
):
    from tests.helpers import function_ids, props

    for template in template_json.values():
        for fn_id in function_ids(template).values():
            fn = props(template["Resources"][fn_id])
            disabled = fn["Environment"]["Variables"].get("POWERTOOLS_TRACE_DISABLED")
            assert (disabled == "true") == (fn["TracingConfig"]["Mode"] == "PassThrough")
