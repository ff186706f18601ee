"""Processor: each record stored once and counted once, whatever is delivered twice."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from pipeline_common.counts import SHARDS, marker_item, parse_marker, shard_of
from processor.storage import record_item, record_key
from tests.conftest import load_event, stored_and_counted
from tests.fault_injection import THROTTLED, fail_after, fail_before

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
    return stored_and_counted(client, pipeline.specs["processor"].environment["TABLE_NAME"])


def test_keys_follow_the_documented_layout():
    record = enriched()
    assert record_key("abc") == {"pk": {"S": "RECORD#abc"}, "sk": {"S": "RECORD"}}
    shard = int.from_bytes(hashlib.sha256(record["id"].encode()).digest()[:4], "big") % 16
    assert shard_of(record["id"]) == shard
    # The attempt's hour, the record's own day, and the attempt's stored_at; 7 days to live.
    late = enriched(timestamp="2025-01-31T23:59:59Z")
    marker = marker_item(late, NOW, "expires_at")
    assert marker == {
        "pk": {"S": f"MARKER#2026-11-29T12#{shard:02d}"},
        "sk": {"S": "2025-01-31#order#order-2026-11-29.0001#2026-11-29T12:00:00Z"},
        "expires_at": {"N": str(int(NOW.timestamp()) + 7 * 86400)},
    }
    assert record_item(late, NOW)["stored_at"] == {"S": "2026-11-29T12:00:00Z"}
    parsed = parse_marker(marker)
    assert (parsed.hour, parsed.day, parsed.type) == ("2026-11-29T12", "2025-01-31", "order")


def test_markers_spread_over_every_shard():
    """No hot partition key: 1,600 ids land on all 16 shards, none with over twice its share."""
    shards = Counter(shard_of(f"r-{i:05d}") for i in range(1600))
    assert SHARDS == 16 and set(shards) == set(range(16))
    assert max(shards.values()) < 2 * 1600 / 16


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
    assert counters == {("order", "2026-11-29"): 1}


def test_a_duplicate_delivery_changes_nothing_and_says_duplicate(pipeline):
    processor = pipeline.functions["processor"]
    processor.invoke(enriched(), "r1")
    before = table_state(pipeline)
    result = processor.invoke(enriched(received_at="2026-11-29T10:00:00Z"), "r2")
    assert result["status"] == "duplicate"
    assert table_state(pipeline) == before


def test_throttling_is_retried_in_process_then_left_to_lambda_and_writes_nothing(pipeline):
    calls = []
    fail_before(pipeline.module("processor").dynamodb, "PutItem", lambda p: calls.append(p) or True)
    with pytest.raises(Exception, match=THROTTLED) as caught:
        pipeline.functions["processor"].invoke(enriched(), "r1")
    assert type(caught.value).__name__ == "StillTransient"
    assert str(caught.value).startswith(
        f"PutItem of the count marker: {THROTTLED} on each of 10 attempts over "
    )
    assert len(calls) == 10  # RetryPolicy's attempts, every one of them the marker's put
    assert table_state(pipeline) == ([], {})


def test_a_throttle_that_clears_is_settled_in_process(pipeline):
    """Two throttles of the marker's put and one of the record's: one invocation stores and
    counts it, so Lambda never retries it."""
    throttles = iter([True, True, False, True])
    fail_before(pipeline.module("processor").dynamodb, "PutItem", lambda p: next(throttles, False))
    result = pipeline.functions["processor"].invoke(enriched(), "r1")
    assert result["status"] == "stored"
    records, counters = table_state(pipeline)
    assert len(records) == 1 and counters == {("order", "2026-11-29"): 1}


@pytest.mark.parametrize("lost", ["the record's put", "the marker's put"])
def test_a_retry_after_a_lost_response_stores_and_counts_once(pipeline, lost):
    """A put reached DynamoDB but its answer was lost (a timeout, retried in-process, and the
    retry finds the record stored); or every answer was lost and Lambda retried: each way the
    record is stored once and counted once."""

    def is_marker(params):
        return params["Item"]["pk"]["S"].startswith("MARKER#")

    failing = is_marker if lost == "the marker's put" else (lambda params: not is_marker(params))
    failures = iter([True] * 10)
    fail_after(
        pipeline.module("processor").dynamodb,
        "PutItem",
        lambda p: failing(p) and next(failures, False),
    )
    processor = pipeline.functions["processor"]
    with pytest.raises(Exception, match="ReadTimeoutError"):
        processor.invoke(enriched(), "r1")  # ten lost answers: Lambda's retry
    # A lost marker put stopped the attempt before its record was stored.
    expected = "duplicate" if lost == "the record's put" else "stored"
    assert processor.invoke(enriched(), "r1")["status"] == expected
    records, counters = table_state(pipeline)
    assert len(records) == 1
    assert counters == {("order", "2026-11-29"): 1}


def test_counters_are_per_type_and_per_utc_day(pipeline):
    processor = pipeline.functions["processor"]
    processor.invoke(enriched(id="a1"), "r1")
    processor.invoke(enriched(id="a2"), "r2")
    processor.invoke(enriched(id="b1", type="refund"), "r3")
    processor.invoke(enriched(id="c1", timestamp="2026-11-30T00:00:01Z"), "r4")
    _, counters = table_state(pipeline)
    assert counters == {
        ("order", "2026-11-29"): 2,
        ("refund", "2026-11-29"): 1,
        ("order", "2026-11-30"): 1,
    }


def test_a_refused_put_propagates_and_stores_and_counts_nothing(pipeline):
    """Only a failed condition is a stored record; any other refusal of a put is raised as it
    is, and nothing is stored or counted."""
    client = pipeline.module("processor").dynamodb

    def refuse(params, **_):
        raise ClientError({"Error": {"Code": "ValidationException"}}, "PutItem")

    client.meta.events.register_first("provide-client-params.dynamodb.PutItem", refuse)
    with pytest.raises(ClientError, match="ValidationException"):
        pipeline.functions["processor"].invoke(enriched(), "r1")
    client.meta.events.unregister("provide-client-params.dynamodb.PutItem", refuse)
    assert table_state(pipeline) == ([], {})


def test_same_id_same_content_is_a_duplicate_different_content_is_a_conflict(pipeline):
    """The stored record and its counter are untouched by either; a conflict is refused, named
    and counted in RecordsRejected, so Lambda sends it to the DLQ."""
    processor = pipeline.functions["processor"]
    first = enriched()
    assert processor.invoke(first, "r1")["status"] == "stored"
    before = table_state(pipeline)
    # A redelivery enriched later (another received_at) is still the same record.
    again = enriched(received_at="2026-11-29T09:20:00Z")
    assert processor.invoke(again, "r2") == {"record_id": first["id"], "status": "duplicate"}
    changed = enriched(payload={**first["payload"], "amount": 99})
    with pytest.raises(
        Exception,
        match=r"id: 'order-2026-11-29.0001' is already stored with "
        r"different content",
    ) as caught:
        processor.invoke(changed, "r3")
    assert type(caught.value).__name__ == "RecordConflict"
    assert table_state(pipeline) == before
    records, _ = table_state(pipeline)
    assert json.loads(records[0]["payload"]["S"]) == first["payload"]


def test_a_record_stored_before_digests_existed_is_still_recognised(pipeline):
    """Items written by an earlier release carry no digest: it is computed from their fields."""
    processor = pipeline.functions["processor"]
    first = enriched()
    processor.invoke(first, "r1")
    client = pipeline.session.client("dynamodb")
    table = pipeline.specs["processor"].environment["TABLE_NAME"]
    client.update_item(
        TableName=table, Key=record_key(first["id"]), UpdateExpression="REMOVE digest"
    )
    assert processor.invoke(enriched(), "r2")["status"] == "duplicate"
    with pytest.raises(Exception, match="already stored with different content"):
        processor.invoke(enriched(source="other"), "r3")


def test_deflate_encoding_compresses_only_where_it_saves_a_write_unit():
    """``payload_encoding: deflate``: a payload that would start another KB is stored as its
    zlib-compressed JSON text, losslessly; a small one stays readable JSON text."""
    from pipeline_tools.dynamodb_meter import item_bytes, write_units
    from pipeline_tools.sample_records import sample_records
    from processor.storage import read_payload

    (big,) = sample_records(1, 1024)
    big = {**big, "category": "sales", "received_at": "2026-11-29T09:15:02Z"}
    plain, compact = record_item(big, NOW), record_item(big, NOW, encoding="deflate")
    # The meter's own sizing (not the processor's) confirms the saving.
    assert write_units(item_bytes(plain)) == 2 and write_units(item_bytes(compact)) == 1
    assert "payload" not in compact and read_payload(compact) == big["payload"]
    small = record_item(enriched(), NOW, encoding="deflate")
    assert small == record_item(enriched(), NOW)  # nothing to gain: plain JSON text
    with pytest.raises(ValueError, match="payload encoding 'gzip'"):
        record_item(big, NOW, encoding="gzip")


def test_a_deflated_record_is_a_duplicate_or_a_conflict_like_any_other(pipeline, monkeypatch):
    from pipeline_tools.sample_records import sample_records

    module = pipeline.module("processor")
    monkeypatch.setattr(module, "PAYLOAD_ENCODING", "deflate")
    (big,) = sample_records(1, 1024)
    record = {**big, "category": "sales", "received_at": "2026-11-29T09:15:02Z"}
    processor = pipeline.functions["processor"]
    assert processor.invoke(record, "r1")["status"] == "stored"
    assert processor.invoke(record, "r2")["status"] == "duplicate"
    changed = {**record, "payload": {**record["payload"], "currency": "USD"}}
    with pytest.raises(Exception, match="already stored with different content"):
        processor.invoke(changed, "r3")
    records, counters = table_state(pipeline)
    assert len(records) == 1 and "payload_deflate" in records[0]
    assert counters == {("order", "2026-11-29"): 1}
