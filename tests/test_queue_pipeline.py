"""The batched path end to end, in-process: records sent to the validator's queue go through
the three stages' queues, read by the emulated SQS event source mappings
(``pipeline_tools/runner/event_source.py``), on moto.

Each record is stored once and counted once, a bad one reaches the DLQ alone with its reason,
and a poison record never holds its batch-mates back. The emulator's own rules (partial batch
responses, maxReceiveCount, the batching window) are tested against AWS's documented behaviour.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline_tools.runner.event_source import (
    BatchScaling,
    MappingSpec,
    QueuePipeline,
    mappings_from_template,
)
from tests.conftest import (
    queue_pipeline_on_moto,
    queued_dead_letters,
    sample_record,
    stored_and_counted,
)


@pytest.fixture
def queues_pipeline(batched_assembly) -> Iterator[Any]:
    with queue_pipeline_on_moto(batched_assembly) as runner:
        yield runner


def send(runner: Any, bodies: list[Any]) -> None:
    """What a producer does: SendMessageBatch to the validator's queue, 10 messages a call."""
    url = runner.mappings["validator"].queue_url
    for start in range(0, len(bodies), 10):
        runner.sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {
                    "Id": str(i),
                    "MessageBody": b if isinstance(b, str) else json.dumps(b),
                    "MessageAttributes": {
                        "stage": {"DataType": "String", "StringValue": "validator"}
                    },
                }
                for i, b in enumerate(bodies[start : start + 10])
            ],
        )


def test_every_valid_record_is_stored_and_counted_once_and_each_bad_one_dead_lettered(
    queues_pipeline,
):
    runner = queues_pipeline
    valid = [sample_record(id=f"q-{i:03d}", type=f"t{i % 3}") for i in range(120)]
    bad = [sample_record(id=f"bad {i}") for i in range(3)]
    # Some records one a message, some packed: both are messages a producer may send.
    bodies: list[Any] = [*valid[:60], valid[60:90], valid[90:], *bad, "not json"]
    send(runner, bodies)
    tally = runner.run()
    stored, counts = stored_and_counted(runner.session.client("dynamodb"), runner.table)
    assert sorted(i["id"]["S"] for i in stored) == sorted(r["id"] for r in valid)
    day = valid[0]["timestamp"][:10]
    assert counts == {(t, day): n for t, n in Counter(r["type"] for r in valid).items()}
    letters = queued_dead_letters(runner)
    assert len(letters) == len(bad) + 1  # each bad record alone, and the malformed message
    assert all(m["MessageAttributes"]["FailedStage"]["StringValue"] == "validator" for m in letters)
    # 64 messages at 50 a batch: the validator needs 2 batches; the stages after it get its
    # packed output, so each handles 2 messages or fewer a batch (one per validator batch).
    assert tally.invocations["validator"] == 2
    assert tally.invocations["enricher"] <= 2 and tally.invocations["processor"] <= 2
    assert tally.failed_batches == Counter()


def test_a_record_that_keeps_failing_is_retried_alone_then_dead_lettered(queues_pipeline):
    """The processor's PutItem of one record is throttled every time: its batch-mates are
    stored at once; it is retried twice, a minute and two minutes later (virtual time), then
    reaches the DLQ with its reason."""
    from tests.fault_injection import fail_before

    runner = queues_pipeline
    records = [sample_record(id=f"r-{i}") for i in range(5)]
    fail_before(
        runner.module("processor").dynamodb,
        "PutItem",
        lambda params: params["Item"]["pk"]["S"] == "RECORD#r-2",
    )
    runner.module("processor").RETRY = _no_waits(runner.module("processor").RETRY)
    send(runner, [records])
    started = runner.clock.seconds()
    runner.run()
    stored, _ = stored_and_counted(runner.session.client("dynamodb"), runner.table)
    assert sorted(i["id"]["S"] for i in stored) == ["r-0", "r-1", "r-3", "r-4"]
    (letter,) = queued_dead_letters(runner)
    assert json.loads(letter["Body"])["id"] == "r-2"
    assert (
        "ProvisionedThroughputExceededException"
        in (letter["MessageAttributes"]["ErrorMessage"]["StringValue"])
    )
    assert runner.clock.seconds() - started >= 60 + 120  # the two retries' delays


def _no_waits(policy: Any) -> Any:
    from dataclasses import replace

    return replace(policy, sleep=lambda seconds: None)


def test_a_partial_response_naming_an_unknown_message_fails_the_whole_batch():
    """AWS: an itemIdentifier that is not in the batch fails the batch (services-sqs-errorhandling,
    "Success and failure conditions"); none named: the batch succeeded."""
    from pipeline_tools.runner.event_source import _failed_ids

    mapping = MappingSpec("s", "url", "arn:aws:sqs:us-east-1:1:q", 10, 0, True)
    batch = [{"MessageId": "a"}, {"MessageId": "b"}]
    assert _failed_ids({"batchItemFailures": []}, batch, mapping) == set()
    assert _failed_ids({"batchItemFailures": [{"itemIdentifier": "b"}]}, batch, mapping) == {"b"}
    assert _failed_ids({"batchItemFailures": [{"itemIdentifier": "z"}]}, batch, mapping) is None
    assert _failed_ids({"batchItemFailures": [{"itemIdentifier": ""}]}, batch, mapping) is None
    no_reports = MappingSpec("s", "url", "arn:aws:sqs:us-east-1:1:q", 10, 0, False)
    assert _failed_ids({"batchItemFailures": [{"itemIdentifier": "b"}]}, batch, no_reports) == set()


def test_a_batch_that_fails_whole_returns_and_moves_to_the_dlq_after_max_receive_count(
    queues_pipeline,
):
    """The validator crashes on every batch (its handler raises): each message returns after
    the visibility timeout, and SQS's redrive policy moves it to the DLQ after its 5th
    receive, with its body untouched."""
    runner = queues_pipeline
    function = runner.functions["validator"]
    original = function.handler

    def crash(event: Any, context: Any) -> Any:
        raise RuntimeError("out of memory")

    function.handler = crash
    send(runner, [sample_record(id="m-1")])
    tally = runner.run()
    function.handler = original
    assert tally.invocations["validator"] == 5 == tally.failed_batches["validator"]
    (letter,) = queued_dead_letters(runner)
    assert json.loads(letter["Body"])["id"] == "m-1"


def test_a_message_whose_delay_ends_during_the_check_still_counts_as_queued(queues_pipeline):
    """The run ends when no stage queue holds a message. moto computes a queue's counts
    (visible, delayed, in flight) one after another, each reading the clock: on a clock that
    moves between readings, a message whose delay ends between two of them is in none, and the
    run would end with a retry still queued (a record neither stored nor dead-lettered). Here
    every reading moves the clock a second, so a 60 s delay ends inside some check."""
    from pipeline_tools.runner.event_source import VirtualClock

    class Ticking(VirtualClock):
        def seconds(self) -> float:
            if self._pinned is None:
                self.offset += 1.0
            return super().seconds()

    runner = queues_pipeline
    runner.clock = Ticking()
    with runner.clock.driving_moto():
        runner.sqs.send_message(
            QueueUrl=runner.mappings["processor"].queue_url, MessageBody="{}", DelaySeconds=60
        )
        checks = [runner._pending() for _ in range(40)]  # past the delay, never received
    assert all(checks), checks.index(False)


def test_the_scaling_of_a_mapping_follows_lambdas_documented_rates():
    """AWS: five batches at a time when messages are available, up to 300 more a minute while
    messages remain, at most 1,000 batches at once, back to five when traffic is low; the
    mapping's maximum concurrency caps it
    (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html)."""
    scaling = BatchScaling()
    assert scaling.batches(0) == 5
    scaling.observe(100, backlog=True)
    assert [scaling.batches(100 + t) for t in (0, 30, 60, 120)] == [5, 5 + 150, 5 + 300, 5 + 600]
    assert scaling.batches(100 + 600) == 1000  # 5 + 3,000 capped
    scaling.observe(130, backlog=True)  # the backlog goes on: its start stays
    assert scaling.batches(160) == 5 + 300
    scaling.observe(170, backlog=False)
    assert scaling.batches(170) == 5 == scaling.batches(10_000)
    capped = BatchScaling(max_concurrency=40)
    capped.observe(0, backlog=True)
    assert capped.batches(3600) == 40
    assert BatchScaling(max_concurrency=3).batches(0) == 3


def _absorb(runner: Any, stage: str) -> None:
    """``stage`` takes every batch and hands nothing on: the test watches its mapping alone."""
    runner.functions[stage].handler = lambda event, context: {"batchItemFailures": []}


def test_a_backlog_scales_the_batches_up_by_the_minute_and_a_drained_queue_back(
    queues_pipeline,
):
    """600 messages wait at 50 a batch (12 batches): the first round runs five; a minute
    later Lambda may run 305, so the second takes the seven left and finds the queue drained."""
    runner = queues_pipeline
    _absorb(runner, "validator")
    send(runner, [{"n": i} for i in range(600)])
    assert runner.round("validator") == 5
    runner.clock.advance(60)
    assert runner.scaling["validator"].batches(runner.clock.seconds()) >= 5 + 300
    assert runner.round("validator") == 600 // 50 - 5
    assert runner.scaling["validator"].batches(runner.clock.seconds()) == 5
    assert runner.tally.invocations["validator"] == 12
    assert runner.tally.peak_batches["validator"] == 7


def test_the_template_maximum_concurrency_caps_the_batches_of_a_round(
    batched_assembly, queues_pipeline
):
    """``ScalingConfig.MaximumConcurrency`` limits the concurrent instances the SQS event
    source invokes (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html)."""
    runner = queues_pipeline
    template = copy.deepcopy(batched_assembly[2])
    for mapping in template["Resources"].values():
        if mapping["Type"] == "AWS::Lambda::EventSourceMapping":
            mapping["Properties"]["ScalingConfig"] = {"MaximumConcurrency": 3}
    mappings = mappings_from_template(template, runner.physical)
    assert {m.max_concurrency for m in mappings} == {3}
    capped = QueuePipeline(
        {stage: f.spec for stage, f in runner.functions.items()}, runner.sqs, mappings, runner.clock
    )
    _absorb(capped, "validator")
    send(capped, [{"n": i} for i in range(600)])
    rounds = []
    for _ in range(5):  # a minute apart: uncapped, the second round would take all the rest
        rounds.append(capped.round("validator"))
        runner.clock.advance(60)
    assert rounds == [3, 3, 3, 3, 0]
    assert capped.tally.invocations["validator"] == 600 // 50


def test_batches_past_the_reserved_concurrency_are_throttled_and_return(queues_pipeline):
    """Event source mappings don't account for reserved concurrency: Lambda throttles the
    batches past it, and their messages return after the visibility timeout
    (https://repost.aws/knowledge-center/lambda-sqs-scaling)."""
    from dataclasses import replace

    runner = queues_pipeline
    validator = runner.functions["validator"]
    validator.spec = replace(validator.spec, reserved_concurrency=2)
    _absorb(runner, "validator")
    send(runner, [{"n": i} for i in range(600)])
    assert runner.round("validator") == 5
    assert runner.tally.invocations["validator"] == 2
    assert runner.tally.throttled_batches["validator"] == 3
    attributes = runner.sqs.get_queue_attributes(
        QueueUrl=runner.mappings["validator"].queue_url, AttributeNames=["All"]
    )["Attributes"]
    assert int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 3 * 50
    assert int(attributes["ApproximateNumberOfMessages"]) == 600 - 5 * 50


def test_the_runner_reads_a_functions_reserved_concurrency_as_lambda_spells_it():
    from pipeline_tools.runner.spec import FunctionSpec

    def spec(**function: Any) -> FunctionSpec:
        return FunctionSpec.build(
            name="s",
            code_dir="code",
            function={"Handler": "m.h", **function},
            async_config={},
            on_success=None,
            dead_letter_queue=None,
            arn="arn",
        )

    assert spec(ReservedConcurrentExecutions=7).reserved_concurrency == 7
    assert spec().reserved_concurrency is None
