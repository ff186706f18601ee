"""Meter what the real handlers consume: DynamoDB units, stored bytes, log bytes, EMF metrics.

The cost report prices what it can from the template; what the code itself causes is measured
here instead of assumed. The handlers are imported from the synthesized assets and run in the
in-process runner (``pipeline_tools/runner``) against moto, on a sample of records of the
workload's size, and every DynamoDB call they make is sized by DynamoDB's own rules:

* an item's size is the sum of its attribute names and values: strings and binaries by their
  UTF-8 / raw length, numbers about 1 byte per two significant digits plus 1, booleans and
  nulls 1 byte, lists and maps 3 bytes plus 1 per element plus their contents
  (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html);
* a write costs 1 unit per started KB of the *larger* of the item before and after it; a read
  of the whole item 1 unit per started 4 KB, half that when eventually consistent, whatever a
  projection returns (same page);
* a transaction costs two units for each of those, per item
  (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html,
  "Capacity management for transactions");
* a write whose condition fails still consumes write units
  (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html);
  a cancelled transaction is metered as if it had run, which is the most it can cost.

Logs are what CloudWatch Logs would ingest: the lines the code writes to stdout after Lambda's
log-level filtering (a JSON line without a ``level`` counts as INFO,
https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html), plus
Lambda's own lines for the function's format and system log level (INFO: ``platform.start`` and
``platform.report``; WARN: none; the text format: START, END and REPORT), each event counted
with the 26 bytes PutLogEvents adds to it
(https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutLogEvents.html).
Every distinct EMF metric (namespace, name and dimension values) is one custom metric.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import random
import sys
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_tools import runtime_source
from pipeline_tools.runner.provision import provision
from pipeline_tools.runner.runner import AsyncPipeline
from pipeline_tools.runner.spec import specs_from_template
from pipeline_tools.template import StackTemplate, asset_dirs

KB = 1024
READ_UNIT_BYTES = 4 * KB
#: PutLogEvents counts each event as its UTF-8 message plus 26 bytes.
LOG_EVENT_OVERHEAD_BYTES = 26
#: Lambda's application log levels, most detailed first; Python's WARNING and CRITICAL are
#: Lambda's WARN and FATAL.
LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
LEVEL_ALIASES = {"WARNING": "WARN", "CRITICAL": "FATAL"}
#: The system lines Lambda writes per invocation, by log format and system log level.
SYSTEM_LINES = {
    ("JSON", "DEBUG"): ("start", "runtime_done", "report"),
    ("JSON", "INFO"): ("start", "report"),
    ("JSON", "WARN"): (),
    ("Text", None): ("text_start", "text_end", "text_report"),
}
#: The record types of the sample, each with a reference category in the table.
SAMPLE_TYPES = ("order", "payment", "refund", "shipment")


# --- DynamoDB sizing --------------------------------------------------------------------------


#: DynamoDB's item-size rule, one definition for the processor (which sizes its items to choose
#: an encoding) and the meter: ``lambda_src/pipeline_common/item_size.py``.
_SIZE = runtime_source.load("pipeline_common/item_size.py")
value_bytes = _SIZE.value_bytes
number_bytes = _SIZE.number_bytes
item_bytes = _SIZE.item_bytes


def write_units(size: int) -> int:
    """Write units for a write of ``size`` bytes (the larger of before and after): 1 per KB."""
    return max(1, math.ceil(size / KB))


def read_units(size: int, *, consistent: bool = False) -> float:
    """Read units for reading an item of ``size`` bytes: 1 per 4 KB, half if eventual."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


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


# --- the meter --------------------------------------------------------------------------------


#: Reads of many items, sized from their response. (A ``Scan`` is not: it is billed on every
#: item it reads, before its filter, and the response holds only what passed.)
MANY_ITEM_READS = ("Query", "BatchGetItem")


class DynamoDBMeter:
    """Sizes every DynamoDB call of a client, reading items through its own (unmetered) client."""

    def __init__(self, reader: Any, key_names: Sequence[str]) -> None:
        self.reader = reader
        self.key_names = tuple(key_names)
        self.write_units = 0.0
        self.read_units = 0.0
        self._before: list[tuple[str, dict[str, Any], int]] = []
        self._params: Mapping[str, Any] = {}

    def attach(self, client: Any) -> None:
        client.meta.events.register("provide-client-params.dynamodb.*", self._before_call)
        client.meta.events.register("after-call.dynamodb.*", self._after_call)

    def _key(self, table: str, item_or_key: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        return table, {k: item_or_key[k] for k in self.key_names if k in item_or_key}

    def _item(self, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.reader.get_item(
            TableName=table, Key=dict(key), ConsistentRead=True
        ).get("Item")
        return found

    def _targets(self, operation: str, params: Mapping[str, Any]) -> list[tuple[str, dict, str]]:
        """(table, key, kind) of each item the call touches; kind: read, write or check."""
        if operation == "TransactWriteItems":
            targets = []
            for entry in params["TransactItems"]:
                (kind, spec), *_ = entry.items()
                key = spec["Item"] if kind == "Put" else spec["Key"]
                table, k = self._key(spec["TableName"], key)
                targets.append((table, k, "check" if kind == "ConditionCheck" else "write"))
            return targets
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            key = params["Item"] if operation == "PutItem" else params["Key"]
            table, k = self._key(params["TableName"], key)
            return [(table, k, "write")]
        if operation == "GetItem":
            table, k = self._key(params["TableName"], params["Key"])
            return [(table, k, "read")]
        if operation in MANY_ITEM_READS:
            return []  # sized from what they return (_after_call)
        raise NotImplementedError(f"the meter does not size {operation} yet")

    def _before_call(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        operation = model.name
        self._params = params
        self._before = [
            (
                operation,
                {"table": t, "key": k, "kind": kind, "params": params},
                item_bytes(self._item(t, k)),
            )
            for t, k, kind in self._targets(operation, params)
        ]

    def _after_call(self, model: Any, parsed: Mapping[str, Any], **_: Any) -> None:
        if model.name in MANY_ITEM_READS:
            self.read_units += self._many_item_read_units(model.name, self._params, parsed)
        factor = 2 if model.name == "TransactWriteItems" else 1
        for index, (operation, target, before) in enumerate(self._before):
            if target["kind"] == "read":
                self.read_units += read_units(
                    before, consistent=bool(target["params"].get("ConsistentRead"))
                )
                continue
            after = item_bytes(self._item(target["table"], target["key"]))
            size = max(before, after, _request_item_bytes(operation, target["params"], index))
            self.write_units += factor * write_units(size)
        self._before = []

    def _many_item_read_units(
        self, operation: str, params: Mapping[str, Any], parsed: Mapping[str, Any]
    ) -> float:
        """Read units of a ``Query`` page (the sum of its items' full sizes, rounded
        up to 4 KB once) or of a ``BatchGetItem`` (each item rounded up on its own)
        (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html).
        A projection does not lower it: the full items are sized."""
        if operation == "BatchGetItem":
            units = 0.0
            for table, items in parsed.get("Responses", {}).items():
                consistent = bool(params["RequestItems"][table].get("ConsistentRead"))
                for item in items:
                    size = item_bytes(self._item(table, self._key(table, item)[1]))
                    units += read_units(size, consistent=consistent)
            return units
        table = params["TableName"]
        size = sum(
            item_bytes(self._item(table, self._key(table, i)[1])) for i in parsed.get("Items", [])
        )
        return read_units(size, consistent=bool(params.get("ConsistentRead")))


def _request_item_bytes(operation: str, params: Mapping[str, Any], index: int) -> int:
    """The size of the item a put would write (what a cancelled put is charged on)."""
    if operation == "TransactWriteItems":
        entry = params["TransactItems"][index]
        return item_bytes(entry.get("Put", {}).get("Item"))
    return item_bytes(params.get("Item")) if operation == "PutItem" else 0


class LogMeter:
    """Captures what a function writes to stdout during an invocation, as CloudWatch gets it."""

    def __init__(self, logging_config: Mapping[str, Any], memory_mb: int) -> None:
        self.format = logging_config.get("LogFormat", "Text")
        self.level = logging_config.get("ApplicationLogLevel", "INFO")
        system = logging_config.get("SystemLogLevel", "INFO") if self.format == "JSON" else None
        self.system_lines = SYSTEM_LINES[(self.format, system)]
        self.memory_mb = memory_mb
        self.metrics: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()

    @contextlib.contextmanager
    def capture(self, service: str) -> Iterator[io.StringIO]:
        """Route stdout, and the stream of ``service``'s Powertools logger, into a buffer."""
        buffer = io.StringIO()
        handlers = [
            h for h in logging.getLogger(service).handlers if isinstance(h, logging.StreamHandler)
        ]
        streams = [h.setStream(buffer) for h in handlers]
        try:
            with contextlib.redirect_stdout(buffer):
                yield buffer
        finally:
            for handler, stream in zip(handlers, streams, strict=True):
                handler.setStream(stream)

    def account(self, output: str, usage: StageUsage) -> None:
        """Add one invocation's output, filtered as Lambda filters it, and its system lines."""
        for line in output.splitlines():
            if not line.strip():
                continue
            parsed = _json_object(line)
            if parsed is not None and "_aws" in parsed:
                self.metrics.update(emf_metrics(parsed))
            if self.format == "JSON" and not self._kept(parsed):
                continue
            usage.application_log_bytes += len(line.encode()) + LOG_EVENT_OVERHEAD_BYTES
            usage.log_events += 1
        for kind in self.system_lines:
            usage.system_log_bytes += len(system_line(kind, self.memory_mb).encode())
            usage.system_log_bytes += LOG_EVENT_OVERHEAD_BYTES
            usage.log_events += 1

    def _kept(self, parsed: Mapping[str, Any] | None) -> bool:
        level = str((parsed or {}).get("level", "INFO")).upper()
        level = LEVEL_ALIASES.get(level, level)
        level = level if level in LEVELS else "INFO"
        return LEVELS.index(level) >= LEVELS.index(self.level)


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def emf_metrics(blob: Mapping[str, Any]) -> set[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """The distinct metrics one EMF blob publishes: each name under each dimension set."""
    found = set()
    for directive in blob["_aws"].get("CloudWatchMetrics", []):
        for dimension_set in directive.get("Dimensions", []) or [[]]:
            dimensions = tuple(sorted((d, str(blob.get(d))) for d in dimension_set))
            for metric in directive.get("Metrics", []):
                found.add((directive.get("Namespace", ""), metric["Name"], dimensions))
    return found


def system_line(kind: str, memory_mb: int) -> str:
    """A representative system log line of Lambda (the sizes are what matter)."""
    request = str(uuid.UUID(int=0))
    time = "2026-11-29T12:00:00.000Z"
    if kind == "start":
        record: dict[str, Any] = {"requestId": request, "version": "12"}
    elif kind == "runtime_done":
        record = {
            "requestId": request,
            "status": "success",
            "metrics": {"durationMs": 100.0, "producedBytes": 512},
            "spans": [{"name": "responseLatency", "start": time, "durationMs": 0.2}],
        }
    elif kind == "report":
        record = {
            "requestId": request,
            "metrics": {
                "durationMs": 100.0,
                "billedDurationMs": 100,
                "memorySizeMB": memory_mb,
                "maxMemoryUsedMB": 96,
            },
            "status": "success",
        }
    elif kind == "text_start":
        return f"START RequestId: {request} Version: 12"
    elif kind == "text_end":
        return f"END RequestId: {request}"
    elif kind == "text_report":
        return (
            f"REPORT RequestId: {request}\tDuration: 100.00 ms\tBilled Duration: 100 ms\t"
            f"Memory Size: {memory_mb} MB\tMax Memory Used: 96 MB\t"
        )
    else:
        raise ValueError(kind)
    return json.dumps(
        {"time": time, "type": f"platform.{kind.replace('_d', 'D')}", "record": record},
        separators=(",", ":"),
    )


#: Words of the sample payloads' item names.
_WORDS = [
    "cable",
    "adapter",
    "monitor",
    "stand",
    "desk",
    "lamp",
    "chair",
    "keyboard",
    "mouse",
    "dock",
    "charger",
    "headset",
    "webcam",
    "cover",
    "sleeve",
    "bag",
    "bottle",
    "notebook",
    "pen",
    "marker",
    "tape",
    "label",
    "box",
]


def sample_records(count: int, record_bytes: int, prefix: str = "meter") -> list[dict[str, Any]]:
    """``count`` valid records of about ``record_bytes`` each as compact JSON.

    The payloads look like business data (an order with line items: codes, names, numbers and
    hexadecimal ids, from a fixed seed), so that they compress about as real JSON does, not as
    a run of one repeated character would.
    """
    generator = random.Random(f"{prefix}-{count}-{record_bytes}")
    records = []
    for index in range(count):
        record: dict[str, Any] = {
            "id": f"{prefix}-{index:06d}",
            "type": SAMPLE_TYPES[index % len(SAMPLE_TYPES)],
            "source": "orders-service",
            "timestamp": "2026-11-29T09:15:00Z",
            "payload": {
                "order": f"{generator.getrandbits(64):016x}",
                "customer": f"{generator.getrandbits(48):012x}",
                "currency": "EUR",
                "items": [],
            },
        }
        _fill_items(record, record_bytes, generator)
        records.append(record)
    return records


def _fill_items(record: dict[str, Any], record_bytes: int, generator: random.Random) -> None:
    """Line items added to ``record`` while it stays within ``record_bytes``."""
    items = record["payload"]["items"]
    while True:
        item = {
            "sku": f"SKU-{generator.randrange(10**6):06d}",
            "name": " ".join(generator.choice(_WORDS) for _ in range(3)),
            "qty": generator.randrange(1, 10),
            "price": round(generator.uniform(1, 500), 2),
        }
        grown = {**record, "payload": {**record["payload"], "items": [*items, item]}}
        if _json_bytes(grown) > record_bytes:
            return
        items.append(item)


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


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


def main(argv: Sequence[str] | None = None) -> int:
    """Print what the code of one synthesized stack consumes per record (for a look by hand)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipeline_tools.meter")
    parser.add_argument("stack", nargs="?", default="DataPipeline-dev")
    parser.add_argument("--assembly", default="cdk.out")
    parser.add_argument("--record-bytes", type=int, default=1024)
    args = parser.parse_args(argv)
    result = meter(
        args.assembly,
        args.stack,
        record_bytes=args.record_bytes,
        progress=lambda line: print(line, file=sys.stderr),
    )
    for name, sample, count in (
        ("valid", result.valid, result.records),
        ("invalid", result.invalid, result.invalid_records),
    ):
        for stage, u in sample.items():
            print(
                f"{name:8} {stage:10} invocations/record {u.invocations / count:.2f}  "
                f"WRU/record {u.write_units / count:.2f}  RRU/record {u.read_units / count:.2f}  "
                f"log bytes/invocation {u.per_invocation(u.log_bytes):.0f}"
            )
    print(f"stored item {result.item_bytes:.0f} bytes, expires: {result.items_expire}")
    print(
        f"count markers {result.marker_items_per_record:g} a record, "
        f"{result.marker_item_bytes:.0f} bytes each, expire: {result.markers_expire}"
    )
    print(f"custom metrics: {sorted(Counter(m[1] for m in result.metrics).items())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
