"""The batched entry of each stage (``lambda_src/pipeline_common/batch.py``), on the real handler
code and moto's SQS and DynamoDB: each record of a batch ends on its own, and a poison record
never holds its batch-mates back.

The event is the one Lambda's SQS event source mapping sends ("Records", each with
``messageId``, ``body`` and ``messageAttributes``,
https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html), and the answer the partial batch
response it reads with ``ReportBatchItemFailures``
(https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline_common.batch import MalformedMessage, Routes, records_of, retry_delay
from pipeline_common.messages import MESSAGE_BYTES, body_of, pack
from pipeline_tools.runner.runtime import LambdaContext
from serverless_stack.stages import BY_NAME
from tests.conftest import sample_record, stored_and_counted
from tests.fault_injection import THROTTLED, fail_before


def sqs_message(body: Any, message_id: str, attempt: int = 1) -> dict[str, Any]:
    """One record of an SQS event source mapping's event."""
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}",
        "body": body if isinstance(body, str) else json.dumps(body),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {
            "attempt": {"stringValue": str(attempt), "dataType": "Number"},
        },
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:stage",
        "awsRegion": "us-east-1",
    }


class Queues:
    """The stage's own queue, the next stage's and the DLQ, on moto."""

    def __init__(self, sqs: Any) -> None:
        self.sqs = sqs
        self.urls = {
            name: sqs.create_queue(QueueName=f"batch-{name}")["QueueUrl"]
            for name in ("own", "next", "dlq")
        }
        self.entries: list[tuple[str, dict[str, Any]]] = []

        def remember(params: dict[str, Any], **_: Any) -> None:
            self.entries += [(params["QueueUrl"], entry) for entry in params["Entries"]]

        sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch", remember)

    def routes(self, last_stage: bool = False, next_stage: str = "enricher") -> Routes:
        if last_stage:
            return Routes(own=self.urls["own"], dead_letters=self.urls["dlq"])
        return Routes(
            own=self.urls["own"],
            dead_letters=self.urls["dlq"],
            next_queue=self.urls["next"],
            next_stage=next_stage,
        )

    def sent(self, name: str) -> list[dict[str, Any]]:
        """The entries sent to the queue so far (a delayed one is not yet receivable)."""
        return [entry for url, entry in self.entries if url == self.urls[name]]

    def drain(self, name: str) -> list[dict[str, Any]]:
        """Every message in the queue that is visible now."""
        found: list[dict[str, Any]] = []
        while True:
            answer = self.sqs.receive_message(
                QueueUrl=self.urls[name],
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
            )
            if not answer.get("Messages"):
                return found
            found += answer["Messages"]
            for message in answer["Messages"]:
                self.sqs.delete_message(
                    QueueUrl=self.urls[name], ReceiptHandle=message["ReceiptHandle"]
                )


def run_batch(pipeline: Any, stage: str, queues: Queues, messages: list[dict[str, Any]]) -> Any:
    """The stage's ``batch_handler`` on ``messages``, as Lambda's event source mapping calls it
    (the processor, the last stage, hands nothing on)."""
    function = pipeline.functions[stage]
    handler = function.module.batch_handler
    handler.entry._routes = queues.routes(last_stage=stage == "processor")
    handler.entry._sqs = queues.sqs
    handler.entry.retries = BY_NAME[stage].retries  # STAGE_RETRIES, as the stack sets it
    context = LambdaContext(
        function_name=function.spec.name,
        memory_limit_in_mb=function.spec.memory_mb,
        invoked_function_arn=function.spec.arn,
        timeout_seconds=function.spec.timeout_seconds,
    )
    with function.activated():
        return handler({"Records": messages}, context)


def attribute(message: dict[str, Any], name: str) -> str:
    return str(message["MessageAttributes"][name]["StringValue"])


@pytest.fixture
def queues(pipeline):
    return Queues(pipeline.session.client("sqs"))


def test_a_body_is_one_record_or_a_list_of_them():
    assert records_of('{"id": "a"}') == [{"id": "a"}]
    assert records_of('[{"id": "a"}, {"id": "b"}]') == [{"id": "a"}, {"id": "b"}]
    for body, says in [("[]", "an empty array"), ("3", "int"), ("{", "not JSON")]:
        with pytest.raises(MalformedMessage, match=says):
            records_of(body)


def test_records_are_packed_into_messages_of_at_most_64_kib():
    records = [{"id": f"r-{i:03d}", "pad": "x" * 1000} for i in range(200)]
    groups = list(pack(records))
    assert [r for g in groups for r in g] == records  # nothing dropped, order kept
    assert all(len(body_of(g).encode()) <= MESSAGE_BYTES for g in groups)
    # Each record is 1,023 bytes as JSON: n of them take 2 + 1,023n + (n - 1) bytes, so 63 fit.
    assert [len(g) for g in groups] == [63, 63, 63, 11]
    huge = {"id": "big", "pad": "x" * MESSAGE_BYTES}
    assert list(pack([{"id": "a"}, huge, {"id": "b"}])) == [[{"id": "a"}], [huge], [{"id": "b"}]]
    assert body_of([{"id": "a"}]) == '{"id":"a"}'  # alone: the record itself


def test_a_failed_record_waits_a_minute_then_two_as_lambdas_retries_do():
    assert [retry_delay(n) for n in (2, 3, 4)] == [60, 120, 240]
    assert retry_delay(20) == 900  # SQS's longest DelaySeconds


def test_the_validator_hands_valid_records_on_packed_and_each_bad_one_to_the_dlq_alone(
    pipeline, queues
):
    valid = [sample_record(id=f"v-{i}") for i in range(3)]
    bad = sample_record(id="bad id")
    messages = [
        sqs_message([*valid[:2], bad], "m1"),
        sqs_message(valid[2], "m2"),
        sqs_message("not json", "m3"),
    ]
    response = run_batch(pipeline, "validator", queues, messages)
    assert response == {"batchItemFailures": []}  # nothing to deliver again
    (forwarded,) = queues.drain("next")  # the three valid records, in one message
    assert [r["id"] for r in json.loads(forwarded["Body"])] == ["v-0", "v-1", "v-2"]
    assert attribute(forwarded, "stage") == "enricher"
    assert attribute(forwarded, "attempt") == "1"
    malformed, refused = sorted(queues.drain("dlq"), key=lambda m: m["Body"] != "not json")
    assert json.loads(refused["Body"])["id"] == "bad id"
    assert attribute(refused, "ErrorMessage").startswith("id: must be 1-128 characters")
    assert attribute(refused, "FailedStage") == "validator"
    assert malformed["Body"] == "not json"
    assert attribute(malformed, "ErrorMessage").startswith("message: not JSON")
    assert queues.drain("own") == []


def test_the_processor_stores_each_record_once_and_refuses_a_conflict_alone(
    pipeline, queues, capsys
):
    records = [
        {**sample_record(id=f"p-{i}"), "category": "sales", "received_at": "2026-11-29T10:00:00Z"}
        for i in range(4)
    ]
    conflicting = {**records[0], "payload": {"changed": True}}
    first = run_batch(
        pipeline, "processor", queues, [sqs_message(records, "m1"), sqs_message(records[3], "m1b")]
    )
    again = run_batch(pipeline, "processor", queues, [sqs_message([records[1], conflicting], "m2")])
    assert first == again == {"batchItemFailures": []}
    # A duplicate in each batch: the first one's twice in itself, the second's stored before.
    assert capsys.readouterr().out.count('"DuplicatesSkipped":[1.0]') == 2
    table = pipeline.specs["processor"].environment["TABLE_NAME"]
    stored, counts = stored_and_counted(pipeline.session.client("dynamodb"), table)
    assert sorted(i["id"]["S"] for i in stored) == [r["id"] for r in records]
    day = records[0]["timestamp"][:10]
    assert counts == {(records[0]["type"], day): len(records)}  # the duplicate counts nothing
    # One marker per batch, listing its records, not one a record: 2 items for the 6 records
    # the two batches carried (a listed duplicate or conflict never counts).
    items = pipeline.session.client("dynamodb").scan(TableName=table)["Items"]
    markers = [i for i in items if i["pk"]["S"].startswith("MARKER#")]
    assert sorted(len(m["ids"]["SS"]) for m in markers) == [2, 4]
    assert all("expires_at" in m for m in markers)
    (dead,) = queues.drain("dlq")
    assert json.loads(dead["Body"])["payload"] == {"changed": True}
    assert "already stored with different content" in attribute(dead, "ErrorMessage")
    assert attribute(dead, "FailedStage") == "processor"


def test_a_record_that_keeps_failing_goes_back_alone_then_to_the_dlq(pipeline, queues):
    """A throttle that never clears for one record: it returns to the processor's queue alone,
    attempt 2 after a minute, attempt 3 after two, then (the processor's 2 retries spent) to
    the DLQ with its reason; its batch-mates are stored at the first attempt."""
    records = [
        {**sample_record(id=f"t-{i}"), "category": "sales", "received_at": "2026-11-29T10:00:00Z"}
        for i in range(3)
    ]
    client = pipeline.module("processor").dynamodb
    # The record's own put (the batch's markers go through: a marker throttled for good fails
    # the whole batch, which SQS delivers again).
    fail_before(client, "PutItem", lambda params: params["Item"]["pk"]["S"] == "RECORD#t-1")
    message = sqs_message(records, "m1")
    for attempt in (1, 2, 3):
        assert run_batch(pipeline, "processor", queues, [message]) == {"batchItemFailures": []}
        if attempt < 3:
            retried = queues.sent("own")[-1]
            assert json.loads(retried["MessageBody"])["id"] == "t-1"
            assert retried["MessageAttributes"]["attempt"]["StringValue"] == str(attempt + 1)
            assert retried["DelaySeconds"] == 60 * attempt
            message = sqs_message(retried["MessageBody"], f"m{attempt + 1}", attempt=attempt + 1)
    assert len(queues.sent("own")) == 2
    (dead,) = queues.drain("dlq")
    assert json.loads(dead["Body"])["id"] == "t-1"
    assert attribute(dead, "ErrorMessage").startswith("PutItem of the record: " + THROTTLED)
    table = pipeline.specs["processor"].environment["TABLE_NAME"]
    stored, _ = stored_and_counted(pipeline.session.client("dynamodb"), table)
    assert sorted(i["id"]["S"] for i in stored) == ["t-0", "t-2"]


def test_a_message_whose_records_could_not_be_handed_on_is_delivered_again(pipeline, queues):
    """SendMessageBatch fails for the next stage's queue: the messages whose records it
    carried are in batchItemFailures (SQS delivers them again), the others are not."""

    def refuse(params: dict[str, Any], **_: Any) -> None:
        if params["QueueUrl"] == queues.urls["next"]:
            raise RuntimeError("connection reset")

    queues.sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch", refuse)
    messages = [sqs_message(sample_record(id="s-1"), "m1"), sqs_message("[]", "m2")]
    response = run_batch(pipeline, "validator", queues, messages)
    # m1's record was not handed on; m2 (malformed) reached the DLQ and is done.
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert len(queues.drain("dlq")) == 1


def test_the_release_probe_is_answered_by_the_batched_entry_too(pipeline, queues):
    from pipeline_common.invocation import PROBE_ANSWER, PROBE_EVENT

    function = pipeline.functions["processor"]
    context = LambdaContext(
        function_name=function.spec.name,
        memory_limit_in_mb=function.spec.memory_mb,
        invoked_function_arn=function.spec.arn,
    )
    with function.activated():
        assert function.module.batch_handler(PROBE_EVENT, context) == PROBE_ANSWER


def test_a_record_invoked_straight_at_a_batched_stage_is_refused_not_dropped(pipeline, queues):
    """An async invoke of a batched stage with a bare record fails, so Lambda sends it to the
    function's DLQ: it is not an SQS batch, and nothing in it may be silently skipped."""
    function = pipeline.functions["validator"]
    context = LambdaContext(
        function_name=function.spec.name,
        memory_limit_in_mb=function.spec.memory_mb,
        invoked_function_arn=function.spec.arn,
    )
    # The handler's own pipeline_common (its asset's copy) raises: match the class by name.
    with function.activated(), pytest.raises(Exception, match="not an SQS batch") as caught:
        function.module.batch_handler(sample_record(), context)
    assert type(caught.value).__name__ == "MalformedMessage"


def test_the_enricher_reads_a_types_category_once_a_batch(pipeline, queues):
    """Six records of two types: two GetItem calls, and each record enriched as on the
    per-record path (the same category, read once a batch, kept for that batch alone)."""
    from enricher.enrichment import UNCATEGORIZED, category_key

    client = pipeline.module("enricher").dynamodb
    table = pipeline.specs["enricher"].environment["TABLE_NAME"]
    pipeline.session.client("dynamodb").put_item(
        TableName=table, Item={**category_key("order"), "category": {"S": "sales"}}
    )
    reads: list[str] = []
    client.meta.events.register(
        "provide-client-params.dynamodb.GetItem",
        lambda params, **_: reads.append(params["Key"]["pk"]["S"]),
    )
    records = [sample_record(id=f"e-{i}", type="order" if i % 2 else "click") for i in range(6)]
    routes = queues.routes(next_stage="processor")
    handler = pipeline.functions["enricher"].module.batch_handler
    for _ in range(2):  # a second batch reads again: nothing is kept between batches
        handler.entry._routes, handler.entry._sqs = routes, queues.sqs
        handler.entry.retries = BY_NAME["enricher"].retries
        context = LambdaContext(
            function_name="enricher", memory_limit_in_mb=768, invoked_function_arn="arn"
        )
        with pipeline.functions["enricher"].activated():
            assert handler({"Records": [sqs_message(records, "m1")]}, context) == {
                "batchItemFailures": []
            }
    assert sorted(reads) == ["CATEGORY#click"] * 2 + ["CATEGORY#order"] * 2
    first, _ = queues.drain("next")
    enriched = {r["id"]: r["category"] for r in json.loads(first["Body"])}
    expected = {r["id"]: "sales" if r["type"] == "order" else UNCATEGORIZED for r in records}
    assert enriched == expected


def test_only_a_crash_on_the_batched_path_is_a_regression_of_the_version(pipeline, queues, capsys):
    """The rollback signal (``Regressions`` by ``FunctionVersion``) on the batched path: a
    batch of refused records publishes none; a crash publishes one, for the version that ran,
    and its record still ends in the DLQ with its reason."""
    bad = [sample_record(id=f"bad {i}") for i in range(3)]
    run_batch(pipeline, "validator", queues, [sqs_message(bad, "m1")])
    ordinary = capsys.readouterr().out
    assert ordinary.count('"RecordsRejected":[1.0,1.0,1.0]') == 1  # each counted, once
    assert '"Regressions"' not in ordinary

    module = pipeline.module("validator")
    original = module.accept

    def crash(event: Any, *args: Any, **kwargs: Any) -> Any:
        raise KeyError("boom")

    module.accept = crash
    try:
        run_batch(pipeline, "validator", queues, [sqs_message(sample_record(id="c-1"), "m2")])
    finally:
        module.accept = original
    crashed = capsys.readouterr().out
    (line,) = [json.loads(x) for x in crashed.splitlines() if '"Regressions"' in x]
    assert line["Regressions"] == [1.0] and line["FunctionVersion"] == "1"
    letters = [m for m in queues.drain("dlq") if "c-1" in m["Body"]]
    assert attribute(letters[0], "ErrorMessage") == "unexpected KeyError: 'boom'"
