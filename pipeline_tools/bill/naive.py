"""The naive stack this project replaces, priced on the same code and workload."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pipeline_tools.bill.model import Capacity, StackModel

BASELINE_MEMORY_MB = 3008
BASELINE_TABLE_CAPACITY = 5
BASELINE_UTILIZATION = 0.7


def naive_settings(template: Mapping[str, Any]) -> dict[str, Any]:
    """``template`` as the naive stack runs the same code: Lambda's default logging (text format,
    no levels, Powertools at INFO) and the payload stored as plain JSON."""
    naive = copy.deepcopy(dict(template))
    for resource in naive["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function":
            props = resource["Properties"]
            group = props.get("LoggingConfig", {}).get("LogGroup")
            props["LoggingConfig"] = {"LogGroup": group} if group else {}
            variables = props.get("Environment", {}).get("Variables", {})
            if "POWERTOOLS_LOG_LEVEL" in variables:
                variables["POWERTOOLS_LOG_LEVEL"] = "INFO"
            if "PAYLOAD_ENCODING" in variables:
                variables["PAYLOAD_ENCODING"] = "json"
    return naive


def baseline_of(model: StackModel) -> StackModel:
    """The naive stack: the same functions at 3008 MB on x86_64, no provisioned concurrency; a
    table provisioned for the volume at 70 % (never below 5 RCU / 5 WCU) holding a counter item
    per type and day; text logs at INFO kept for ever; no tracing, custom metrics, alarms,
    dashboard or DLQ."""
    return StackModel(
        name=f"{model.name} (naive)",
        functions=tuple(
            replace(
                f,
                memory_mb=BASELINE_MEMORY_MB,
                architecture="x86_64",
                tracing="PassThrough",
                capacity=Capacity(),
                log_retention_days=None,
            )
            for f in model.functions
        ),
        table_billing="PROVISIONED",
        has_dead_letter_queue=False,
        record_retention_days=None,
        naive=True,
    )
