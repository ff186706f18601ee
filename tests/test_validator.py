"""Validator: the record contract, as a pure function and as the deployed handler."""

from __future__ import annotations

import json

import pytest

from pipeline_common.contract import MAX_PAYLOAD_BYTES, InvalidRecord, validate
from pipeline_common.invocation import MalformedEvent, unwrap
from tests.conftest import load_event, sample_record

record = sample_record


def test_valid_record_is_returned_with_timestamp_normalised_to_utc():
    result = validate(record())
    assert result["timestamp"] == "2026-11-29T09:15:00Z"
    assert {k: v for k, v in result.items() if k != "timestamp"} == {
        k: v for k, v in record().items() if k != "timestamp"
    }


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"id": ...}, "id: required field is missing"),
        ({"type": ...}, "type: required field is missing"),
        ({"source": ...}, "source: required field is missing"),
        ({"timestamp": ...}, "timestamp: required field is missing"),
        ({"payload": ...}, "payload: required field is missing"),
        ({"id": ""}, "id: must be 1-128 characters"),
        ({"id": "a" * 129}, "id: must be 1-128 characters"),
        (
            {"id": "has space"},
            "id: must be 1-128 characters of A-Z a-z 0-9 . _ : -, got 'has space'",
        ),
        ({"id": 17}, "id: must be 1-128 characters"),
        ({"type": ""}, "type: must be a string of 1-64 characters"),
        ({"type": "t" * 65}, "type: must be a string of 1-64 characters"),
        ({"type": None}, "type: must be a string of 1-64 characters, got None"),
        ({"source": "s" * 129}, "source: must be a string of 1-128 characters"),
        ({"source": ["web"]}, "source: must be a string of 1-128 characters"),
        ({"timestamp": "yesterday"}, "timestamp: not an ISO-8601 date-time: 'yesterday'"),
        ({"timestamp": "2026-11-29T10:15:00"}, "timestamp: must include a time zone"),
        ({"timestamp": 1764407700}, "timestamp: must be an ISO-8601 string, got int"),
        ({"payload": "text"}, "payload: must be a JSON object, got str"),
        ({"payload": [1, 2]}, "payload: must be a JSON object, got list"),
        ({"payload": {"blob": "x" * MAX_PAYLOAD_BYTES}}, "payload: must be at most 32768 bytes"),
        (
            {"priority": "high"},
            "priority: unknown field (allowed: id, type, source, timestamp, payload)",
        ),
    ],
)
def test_each_defect_is_named_with_its_field(changes, problem):
    with pytest.raises(InvalidRecord) as caught:
        validate(record(**changes))
    assert problem in str(caught.value)
    assert len(caught.value.problems) == 1


def test_payload_at_exactly_32_kb_is_accepted():
    filler = MAX_PAYLOAD_BYTES - len(json.dumps({"b": ""}, separators=(",", ":")))
    validate(record(payload={"b": "x" * filler}))


def test_every_defect_is_reported_at_once():
    with pytest.raises(InvalidRecord) as caught:
        validate(record(id="bad id", timestamp="never", extra=1))
    assert [p.split(":")[0] for p in caught.value.problems] == ["extra", "id", "timestamp"]


def test_a_non_object_record_is_rejected():
    with pytest.raises(InvalidRecord, match="record: must be a JSON object, got list"):
        validate([1, 2])


def test_unwrap_reads_the_response_payload_of_an_invocation_record():
    event = load_event("destination_invocation")
    assert unwrap(event) == event["responsePayload"]
    assert unwrap(record()) == record()
    with pytest.raises(MalformedEvent, match="record: must be a JSON object"):
        unwrap({**event, "responsePayload": None})


def test_handler_returns_the_normalised_record_and_emits_no_metric(pipeline, capsys):
    """A valid record costs no custom metric: Lambda's free Invocations minus Errors already
    counts it (each EMF metric is $0.30 a month, and its line is ingested as a log)."""
    result = pipeline.functions["validator"].invoke(record(), "req-1")
    assert result["timestamp"] == "2026-11-29T09:15:00Z"
    assert "_aws" not in capsys.readouterr().out


def test_handler_raises_the_typed_error_and_counts_the_rejection(pipeline, capsys, caplog):
    with pytest.raises(Exception) as caught:
        pipeline.functions["validator"].invoke(record(id="bad id"), "req-2")
    assert type(caught.value).__name__ == "InvalidRecord"
    assert "id: must be 1-128 characters" in str(caught.value)
    out = capsys.readouterr().out
    assert '"RecordsRejected"' in out
    (warning,) = [r for r in caplog.records if r.getMessage() == "record rejected"]
    assert warning.levelname == "WARNING"
    assert warning.problems == ["id: must be 1-128 characters of A-Z a-z 0-9 . _ : -, got 'bad id'"]


def test_handler_accepts_an_invocation_record(pipeline):
    result = pipeline.functions["validator"].invoke(load_event("destination_invocation"), "req-3")
    assert result["id"] == "order-2026-11-29.0001"
