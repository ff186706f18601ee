"""A stage's own work for each record of a batch, measured from the real batch handlers.

The batched bill (``pipeline_tools/bill/batching.py``) prices an invocation of ``b`` records as
the single-record duration plus, for each further record, the stage's own work and its DynamoDB
requests. This measures the first part. Each stage's real ``batch_handler``, from the
synthesized assets of a batched stack, is invoked with batches of 1 and of ``1 + EXTRA``
records, interleaved, and the difference of the fastest runs over ``EXTRA`` is the work a
record adds: Powertools' batch processing, validation, enrichment, packing, and the SDK's validation
and serialization of each request. The AWS calls themselves are answered at once, before they
leave the SDK (a ``before-call`` handler), so DynamoDB's and SQS's latency, which the bill
prices apart (``DYNAMODB_REQUEST_MS``), and moto's own emulation are not in the figure.

The figure is this machine's, on one core. Lambda allocates CPU in proportion to memory, one
vCPU at 1,769 MB (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html), so
the bill scales it to a function's memory (``pipeline_tools.bill.batching.at_memory``).

``python -m pipeline_tools.bench.batch_work [ASSEMBLY_DIR STACK]`` prints the figures and
writes them to ``pipeline_tools/data/batch_work.json``, which the bill reads; ``make bench``
runs it too (on prod's assembly).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from pipeline_tools.bill.batching import WORK_FILE, at_memory

#: Records a large batch has beyond the single one, and the interleaved rounds of both.
EXTRA, ROUNDS = 200, 30


def _answers(operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """What the stages read of each call's response, as AWS answers a success."""
    if operation == "GetItem":
        return {"Item": {"category": {"S": "commerce"}}}
    if operation == "SendMessageBatch":
        return {"Successful": [{"Id": e["Id"]} for e in params["Entries"]], "Failed": []}
    if operation == "SendMessage":
        return {"MessageId": str(uuid.uuid4())}
    return {}


def _keep_params(params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
    """A ``before-parameter-build`` handler: the call's own parameters, for its answer."""
    context["bench_params"] = dict(params)


def _answer_at_once(model: Any, context: Mapping[str, Any], **_: Any) -> tuple[Any, Any]:
    """A ``before-call`` handler: the request was validated and serialized; answer it."""
    return _Http(), _answers(model.name, context["bench_params"])


def answer_at_once(client: Any) -> None:
    """Every call of ``client`` answered as a success before it leaves the SDK."""
    client.meta.events.register_first("before-parameter-build.*.*", _keep_params)
    client.meta.events.register_first("before-call.*.*", _answer_at_once)


class _Http:
    status_code = 200
    headers: ClassVar[dict[str, str]] = {}


def _record(n: int) -> dict[str, Any]:
    return {
        "id": f"bench-{n}-{uuid.uuid4().hex[:8]}",
        "type": f"type{n % 10}",
        "source": "bench",
        "timestamp": "2026-11-29T09:15:00Z",
        "payload": {"n": n, "text": "x" * 600},
    }


def _event(stage: str, records: list[dict[str, Any]], entry: bool) -> dict[str, Any]:
    """An SQS event as the stage's mapping delivers it: a message a record at the entry, one
    packed message after it (``pipeline_common/messages.py``)."""
    bodies = [json.dumps(r) for r in records] if entry else [json.dumps(records)]
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "r",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {
                    "stage": {"stringValue": stage, "dataType": "String"},
                    "attempt": {"stringValue": "1", "dataType": "Number"},
                },
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{stage}",
                "awsRegion": "us-east-1",
            }
            for body in bodies
        ]
    }


@contextmanager
def stages_answered_at_once(assembly_dir: Path, stack_name: str) -> Iterator[dict[str, Any]]:
    """Stage -> ``batch(size)``: a run of its real batch handler on ``size`` fresh records,
    every AWS call answered at once (module docstring); ``batch.memory_mb`` its memory."""
    import boto3
    from moto import mock_aws

    from pipeline_tools.runner.event_source import _client
    from pipeline_tools.runner.provision import provision
    from pipeline_tools.runner.runtime import LoadedFunction
    from pipeline_tools.runner.spec import specs_from_template
    from pipeline_tools.template import asset_dirs, load_template
    from serverless_stack.stages import STAGE_TABLE

    template = load_template(assembly_dir / f"{stack_name}.template.json")
    with mock_aws():
        physical = provision(template, boto3.Session(region_name="us-east-1"), prefix="bench")
        specs = specs_from_template(template, asset_dirs(assembly_dir, stack_name), physical)
        batches = {}
        for stage in STAGE_TABLE:
            function = LoadedFunction(replace(specs[stage.name], policy=None))
            entry = function.module.batch_handler.entry
            with function.activated():
                entry._sqs = _client()
            for client in [entry._sqs, *_clients(function.module)]:
                answer_at_once(client)
            batches[stage.name] = _Batch(function, stage.name, stage == STAGE_TABLE[0])
        yield batches


class _Batch:
    """``batch(size)``: a run of one stage's batch handler on ``size`` fresh records."""

    def __init__(self, function: Any, stage: str, entry: bool) -> None:
        self.function, self.stage, self.entry = function, stage, entry
        self.memory_mb = function.spec.memory_mb

    def __call__(self, size: int) -> Callable[[], Any]:
        event = _event(self.stage, [_record(n) for n in range(size)], self.entry)
        return lambda: self.function.invoke(event, "bench")


def measure(assembly_dir: Path, stack_name: str) -> dict[str, dict[str, float]]:
    """Stage -> ``{"core_ms": ..., "memory_mb": ...}``: the work a record adds to a batch."""
    with stages_answered_at_once(assembly_dir, stack_name) as batches:
        return {
            stage: {"core_ms": _per_record_ms(batch), "memory_mb": float(batch.memory_mb)}
            for stage, batch in batches.items()
        }


def _clients(module: Any) -> list[Any]:
    """The AWS clients a handler module made at import."""
    return [v for v in vars(module).values() if getattr(getattr(v, "meta", None), "events", None)]


def _per_record_ms(batch: Callable[[int], Callable[[], Any]]) -> float:
    """The fastest batch of ``1 + EXTRA`` less the fastest batch of 1, over ``EXTRA``, the two
    sizes interleaved, fresh records each round (the processor stores a record once). The
    fastest, not the median: load on a shared machine only ever adds time, and the medians of
    two runs differ by up to 2x where the fastest agree within a few per cent."""
    small: list[float] = []
    large: list[float] = []
    for _ in range(ROUNDS):
        for size, times in ((1, small), (1 + EXTRA, large)):
            run = batch(size)
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
    return (min(large) - min(small)) / EXTRA * 1000


def save(found: Mapping[str, Mapping[str, float]]) -> None:
    """Keep the figures where the bill reads them."""
    WORK_FILE.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")


def render(found: Mapping[str, Mapping[str, float]]) -> list[str]:
    """BENCHMARKS.md's section: each stage's work a record, on one core and at its memory."""
    lines = [
        "## The batched path: a stage's own work a record",
        "",
        f"Each stage's real batch handler on batches of 1 and {1 + EXTRA} records, {ROUNDS} "
        "rounds interleaved, every AWS call answered before it leaves the SDK "
        "(`pipeline_tools/bench/batch_work.py`): the difference of the fastest runs a record. The "
        "bill takes these figures (`pipeline_tools/data/batch_work.json`) and scales them to "
        "the function's memory, one vCPU at 1,769 MB; DynamoDB's latency is priced apart.",
        "",
        "| stage | a record, one core | memory | a record, at its memory |",
        "| --- | ---: | ---: | ---: |",
    ]
    for stage, figures in sorted(found.items()):
        memory = int(figures["memory_mb"])
        lines.append(
            f"| {stage} | {figures['core_ms']:.3f} ms | {memory} MB | "
            f"{at_memory(figures['core_ms'], memory):.3f} ms |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline_tools.bench.batch_work [ASSEMBLY_DIR STACK]`` (default: prod in
    cdk.out, as ``make synth-all`` writes it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    assembly, stack = (Path(args[0]), args[1]) if args else (Path("cdk.out"), "DataPipeline-prod")
    found = measure(assembly, stack)
    save(found)
    print("\n".join(render(found)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
