"""Processor: each record stored once and counted once, whatever is delivered twice."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from processor.storage import counter_key, record_item, record_key
from tests.conftest import load_event
from tests.faults import THROTTLED, fail_after, fail_before

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def enriched(**changes):
    record = {
        **load_event("destination_invocation")["responsePayload"],
        "category": "sales",
        "received_at": "2026-11-29T09:15:02Z",
        **changes,
    }
    return record


def table_state(pipeline):
    client = pipeline.session.client("dynamodb")
    table = pipeline.specs["processor"].environment["TABLE_NAME"]
    items = client.scan(TableName=table)["Items"]
    records = [i for i in items if i["pk"]["S"].startswith("RECORD#")]
    counters = {
        (i["pk"]["S"], i["sk"]["S"]): int(i["count"]["N"])
        for i in items
        if i["pk"]["S"].startswith("STATS#")
    }
    return records, counters


def test_keys_follow_the_documented_layout():
    record = enriched()
    assert record_key("abc") == {"pk": {"S": "RECORD#abc"}, "sk": {"S": "RECORD"}}
    assert counter_key(record) == {"pk": {"S": "STATS#order"}, "sk": {"S": "2026-11-29"}}


def test_record_item_keeps_every_field_and_the_payload_as_json():
    item = record_item(enriched(), NOW)
    assert item["id"] == {"S": "order-2026-11-29.0001"}
    assert item["category"] == {"S": "sales"}
    assert item["stored_at"] == {"S": "2026-11-29T12:00:00Z"}
    assert json.loads(item["payload"]["S"]) == enriched()["payload"]


def test_a_new_record_is_stored_and_counted(pipeline):
    result = pipeline.functions["processor"].invoke(enriched(), "r1")
    assert result == {"record_id": "order-2026-11-29.0001", "status": "stored"}
    records, counters = table_state(pipeline)
    assert [r["pk"]["S"] for r in records] == ["RECORD#order-2026-11-29.0001"]
    assert counters == {("STATS#order", "2026-11-29"): 1}


def test_a_duplicate_delivery_changes_nothing_and_says_duplicate(pipeline):
    processor = pipeline.functions["processor"]
    processor.invoke(enriched(), "r1")
    before = table_state(pipeline)
    result = processor.invoke(enriched(received_at="2026-11-29T10:00:00Z"), "r2")
    assert result["status"] == "duplicate"
    assert table_state(pipeline) == before


def test_throttling_propagates_and_writes_nothing(pipeline):
    fail_before(pipeline.module("processor").dynamodb, "TransactWriteItems", lambda p: True)
    with pytest.raises(ClientError) as caught:
        pipeline.functions["processor"].invoke(enriched(), "r1")
    assert caught.value.response["Error"]["Code"] == THROTTLED
    assert table_state(pipeline) == ([], {})


def test_a_retry_after_a_lost_response_stores_and_counts_once(pipeline):
    """The transaction committed but the handler failed; Lambda's retry must change nothing."""
    failures = iter([True])
    fail_after(
        pipeline.module("processor").dynamodb, "TransactWriteItems", lambda p: next(failures, False)
    )
    processor = pipeline.functions["processor"]
    with pytest.raises(ReadTimeoutError):
        processor.invoke(enriched(), "r1")
    assert processor.invoke(enriched(), "r1")["status"] == "duplicate"
    records, counters = table_state(pipeline)
    assert len(records) == 1
    assert counters == {("STATS#order", "2026-11-29"): 1}


def test_counters_are_per_type_and_per_utc_day(pipeline):
    processor = pipeline.functions["processor"]
    processor.invoke(enriched(id="a1"), "r1")
    processor.invoke(enriched(id="a2"), "r2")
    processor.invoke(enriched(id="b1", type="refund"), "r3")
    processor.invoke(enriched(id="c1", timestamp="2026-11-30T00:00:01Z"), "r4")
    _, counters = table_state(pipeline)
    assert counters == {
        ("STATS#order", "2026-11-29"): 2,
        ("STATS#refund", "2026-11-29"): 1,
        ("STATS#order", "2026-11-30"): 1,
    }


def test_other_transaction_cancellations_are_not_mistaken_for_duplicates():
    from processor.storage import _is_duplicate

    def cancelled(*codes):
        return ClientError(
            {
                "Error": {"Code": "TransactionCanceledException"},
                "CancellationReasons": [{"Code": c} for c in codes],
            },
            "TransactWriteItems",
        )

    assert _is_duplicate(cancelled("ConditionalCheckFailed", "None"))
    assert not _is_duplicate(cancelled("None", "TransactionConflict"))
    assert not _is_duplicate(cancelled("ConditionalCheckFailed", "ThrottlingError"))
    assert not _is_duplicate(cancelled("ThrottlingError", "None"))
