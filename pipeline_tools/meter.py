"""Meter what the real handlers consume: DynamoDB units, stored bytes, log bytes, EMF metrics.

The cost report prices what it can from the template; what the code itself causes is measured
here instead of assumed. The handlers are imported from the synthesized assets and run in the
in-process runner (``pipeline_tools/runner``) against moto, on a sample of records of the
workload's size. Each DynamoDB call is sized by DynamoDB's own rules (``dynamodb_meter``);
the logs are what CloudWatch Logs would ingest, and each distinct EMF metric is one custom
metric (``log_meter``); the sample is ``sample_records``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline_tools.dynamodb_meter import DynamoDBMeter, item_bytes
from pipeline_tools.log_meter import LogMeter
from pipeline_tools.runner.provision import provision
from pipeline_tools.runner.runner import AsyncPipeline
from pipeline_tools.runner.spec import FunctionSpec, specs_from_template
from pipeline_tools.sample_records import SAMPLE_TYPES, sample_records
from pipeline_tools.template import StackTemplate, asset_dirs

# --- what the meter found ---------------------------------------------------------------------


@dataclass
class StageUsage:
    """What one stage consumed over the sample."""

    invocations: int = 0
    write_units: float = 0.0
    read_units: float = 0.0
    application_log_bytes: int = 0
    system_log_bytes: int = 0
    log_events: int = 0

    @property
    def log_bytes(self) -> int:
        return self.application_log_bytes + self.system_log_bytes

    def per_invocation(self, value: float) -> float:
        return value / self.invocations if self.invocations else 0.0


@dataclass
class Metering:
    """Per-stage usage for a sample of valid records and one of invalid ones."""

    records: int
    valid: dict[str, StageUsage]
    invalid: dict[str, StageUsage]
    invalid_records: int
    #: Average size of a stored record item, and whether items carry the TTL attribute.
    item_bytes: float
    items_expire: bool
    #: The other items the code wrote for the valid records (the count markers): how many per
    #: record, their average size, and whether they carry the TTL attribute.
    marker_items_per_record: float = 0.0
    marker_item_bytes: float = 0.0
    markers_expire: bool = False
    #: Distinct custom metrics: (namespace, name, ((dimension, value), ...)).
    metrics: frozenset[tuple[str, str, tuple[tuple[str, str], ...]]] = field(
        default_factory=frozenset
    )


def meter(
    assembly_dir: str | Path,
    stack_name: str,
    *,
    record_bytes: int,
    records: int = 40,
    invalid_records: int = 4,
    progress: Any = None,
    template: Mapping[str, Any] | None = None,
) -> Metering:
    """Run ``records`` valid and ``invalid_records`` invalid records through the stack's code.

    Needs moto (a development dependency): everything runs inside ``mock_aws``.

    :param template: the stack's template with settings changed (the code still comes from the
        assembly's assets). :default: the synthesized template
    """
    import boto3
    from moto import mock_aws

    if template is None:
        template = json.loads((Path(assembly_dir) / f"{stack_name}.template.json").read_text())
    say = progress or (lambda line: None)
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        metered = _MeteredPipeline(template, assembly_dir, stack_name, session)
        say(f"metering {stack_name}: {records} valid records of {record_bytes} bytes")
        valid = metered.run(sample_records(records, record_bytes))
        stored, markers = metered.items()
        say(f"metering {stack_name}: {invalid_records} invalid records")
        bad = [
            {**r, "timestamp": "not a date"} for r in sample_records(invalid_records, 200, "bad")
        ]
        invalid = metered.run(bad)
    ttl = metered.ttl_attribute

    def expire(items: list[dict[str, Any]]) -> bool:
        return ttl is not None and bool(items) and all(ttl in i for i in items)

    def average_bytes(items: list[dict[str, Any]]) -> float:
        return sum(item_bytes(i) for i in items) / len(items) if items else 0.0

    return Metering(
        records=records,
        valid=valid,
        invalid=invalid,
        invalid_records=invalid_records,
        item_bytes=average_bytes(stored),
        items_expire=expire(stored),
        marker_items_per_record=len(markers) / records,
        marker_item_bytes=average_bytes(markers),
        markers_expire=expire(markers),
        metrics=frozenset().union(*(m.metrics for m in metered.logs.values())),
    )


class _MeteredPipeline:
    """The stack's code provisioned in moto, every stage's DynamoDB client and logs metered."""

    def __init__(
        self, template: Mapping[str, Any], assembly_dir: str | Path, stack_name: str, session: Any
    ) -> None:
        model = StackTemplate.of(template)
        tables = model.resources("AWS::DynamoDB::Table")
        (table,) = tables.values()
        key_names = [k["AttributeName"] for k in table["Properties"]["KeySchema"]]
        ttl = table["Properties"].get("TimeToLiveSpecification", {})
        self.ttl_attribute = ttl.get("AttributeName") if ttl.get("Enabled") else None
        physical = provision(template, session, prefix="meter")
        (self.table_name,) = (physical[i]["Ref"] for i in tables)
        self.reader = session.client("dynamodb")
        for record_type in SAMPLE_TYPES:
            self.reader.put_item(
                TableName=self.table_name,
                Item={
                    "pk": {"S": f"CATEGORY#{record_type}"},
                    "sk": {"S": "META"},
                    "category": {"S": "commerce"},
                },
            )
        specs = specs_from_template(template, asset_dirs(assembly_dir, stack_name), physical)
        if model.resources("AWS::Lambda::EventSourceMapping"):
            specs = {name: _record_at_a_time(spec) for name, spec in specs.items()}
        self.pipeline = AsyncPipeline(specs, session.client("sqs"))
        self.dynamo = {stage: DynamoDBMeter(self.reader, key_names) for stage in specs}
        for stage, function in self.pipeline.functions.items():
            for value in vars(function.module).values():
                model_of = getattr(getattr(value, "meta", None), "service_model", None)
                if model_of is not None and model_of.service_name == "dynamodb":
                    self.dynamo[stage].attach(value)
        self.logs = {
            stage: LogMeter(model.stages[stage].properties.get("LoggingConfig", {}), spec.memory_mb)
            for stage, spec in specs.items()
        }

    def run(self, records: Sequence[Mapping[str, Any]]) -> dict[str, StageUsage]:
        return _run(self.pipeline, self.dynamo, self.logs, records)

    def items(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The stored records and the count markers (the seeded categories left out)."""
        paginator = self.reader.get_paginator("scan")
        scan = [i for page in paginator.paginate(TableName=self.table_name) for i in page["Items"]]
        stored = [i for i in scan if i["pk"]["S"].startswith("RECORD#")]
        seeded = {f"CATEGORY#{t}" for t in SAMPLE_TYPES}
        markers = [
            i for i in scan if not i["pk"]["S"].startswith("RECORD#") and i["pk"]["S"] not in seeded
        ]
        return stored, markers


def _record_at_a_time(spec: FunctionSpec) -> FunctionSpec:
    """A stage of the batched path (``ingestion.mode: batched``) run on one record at a time,
    as the bill prices it (``pipeline_tools/bill/batching.py``): the same code's per-record
    entry point (``handle``, behind ``lambda_handler``), each stage handing on to its
    ``NEXT_STAGE``; a refused record tried once and sent to the DLQ, as its batch sends it. The
    queues' own calls are priced from their count, so no role policy is enforced here."""
    return replace(
        spec,
        handler=spec.handler.replace(".batch_handler", ".lambda_handler"),
        on_success=spec.environment.get("NEXT_STAGE"),
        retry_attempts=0,
        dead_letter_queue_url=spec.environment.get("DEAD_LETTER_QUEUE_URL"),
        policy=None,
    )


def _run(
    pipeline: AsyncPipeline,
    dynamo: Mapping[str, DynamoDBMeter],
    logs: Mapping[str, LogMeter],
    records: Sequence[Mapping[str, Any]],
) -> dict[str, StageUsage]:
    """Run ``records`` through ``pipeline``, one invocation at a time, and meter each."""
    usage = {stage: StageUsage() for stage in pipeline.specs}
    before = {s: (m.write_units, m.read_units) for s, m in dynamo.items()}
    invoke = pipeline.functions
    originals = {stage: function.invoke for stage, function in invoke.items()}

    def metered(stage: str) -> Any:
        def call(event: Any, request_id: str) -> Any:
            service = pipeline.specs[stage].environment.get("POWERTOOLS_SERVICE_NAME", stage)
            with logs[stage].capture(service) as buffer:
                try:
                    return originals[stage](event, request_id)
                finally:
                    usage[stage].invocations += 1
                    logs[stage].account(buffer.getvalue(), usage[stage])

        return call

    for stage, function in invoke.items():
        function.invoke = metered(stage)  # type: ignore[method-assign]
    try:
        pipeline.run(list(records))
    finally:
        for stage, function in invoke.items():
            function.invoke = originals[stage]  # type: ignore[method-assign]
    for stage, meter_ in dynamo.items():
        usage[stage].write_units = meter_.write_units - before[stage][0]
        usage[stage].read_units = meter_.read_units - before[stage][1]
    return usage
