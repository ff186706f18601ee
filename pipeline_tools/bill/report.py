"""A stack's report: its bill, on the path its template takes, beside the naive stack's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline_tools.bill.batching import price_batched
from pipeline_tools.bill.model import StackModel, model_from_template
from pipeline_tools.bill.naive import baseline_of
from pipeline_tools.bill.pricing import Bill, Report, price
from pipeline_tools.bill.usage import CodeUsage
from pipeline_tools.bill.workload import Workload


def price_stack(
    model: StackModel, usage: CodeUsage, workload: Workload, prices: Mapping[str, Any]
) -> Bill:
    """The monthly bill of ``model`` on its own path: its stages' queues read in batches
    (``ingestion.mode: batched``), or a record an invocation."""
    if model.batching is not None:
        return price_batched(model, usage, workload, prices)
    return price(model, usage, workload, prices)


def report(
    template: Mapping[str, Any],
    name: str,
    workload: Workload,
    prices: Mapping[str, Any],
    usage: CodeUsage,
    naive_usage: CodeUsage,
) -> Report:
    """The stack of ``template`` priced as it runs, and the naive stack (a record an
    invocation, on the same code) beside it."""
    model = model_from_template(template, name)
    return Report(
        price_stack(model, usage, workload, prices),
        price(baseline_of(model), naive_usage, workload, prices),
        workload,
        prices,
    )
