"""Enricher: received time and category, from the table's reference item."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from enricher.enrichment import UNCATEGORIZED, category_from_item, category_key, enrich
from tests.conftest import load_event
from tests.fault_injection import THROTTLED, fail_before


def put_category(pipeline, record_type: str, category: str) -> None:
    table = pipeline.specs["enricher"].environment["TABLE_NAME"]
    pipeline.session.client("dynamodb").put_item(
        TableName=table,
        Item={**category_key(record_type), "category": {"S": category}},
    )


def test_category_key_is_the_documented_reference_item():
    assert category_key("order") == {"pk": {"S": "CATEGORY#order"}, "sk": {"S": "META"}}


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"category": {"S": "sales"}}, "sales"),
        (None, UNCATEGORIZED),
        ({}, UNCATEGORIZED),
        ({"category": {"S": ""}}, UNCATEGORIZED),
        ({"category": {"N": "3"}}, UNCATEGORIZED),
    ],
)
def test_category_from_item(item, expected):
    assert category_from_item(item) == expected


def test_enrich_adds_received_at_in_utc_and_the_category():
    received = datetime(2026, 11, 29, 11, 0, tzinfo=timezone(timedelta(hours=2)))
    result = enrich({"id": "a"}, "sales", received)
    assert result == {"id": "a", "received_at": "2026-11-29T09:00:00Z", "category": "sales"}


def test_handler_finds_the_category_in_the_table(pipeline):
    put_category(pipeline, "order", "sales")
    before = datetime.now(UTC)
    result = pipeline.functions["enricher"].invoke(load_event("destination_invocation"), "r1")
    assert result["category"] == "sales"
    received = datetime.fromisoformat(result["received_at"])
    assert before - timedelta(seconds=1) <= received <= datetime.now(UTC)
    assert result["id"] == "order-2026-11-29.0001"


def test_handler_without_a_reference_item_says_uncategorized(pipeline):
    result = pipeline.functions["enricher"].invoke(load_event("destination_invocation"), "r2")
    assert result["category"] == UNCATEGORIZED


def test_throttling_is_retried_in_process_then_propagates_so_that_lambda_retries(pipeline):
    client = pipeline.module("enricher").dynamodb
    calls = []
    fail_before(client, "GetItem", lambda params: calls.append(params) or True)
    with pytest.raises(Exception, match=f"GetItem of the category: {THROTTLED}") as caught:
        pipeline.functions["enricher"].invoke(load_event("destination_invocation"), "r3")
    assert type(caught.value).__name__ == "StillTransient" and len(calls) == 10


def test_a_throttle_that_clears_is_settled_in_process(pipeline):
    throttles = iter([True, True])
    fail_before(pipeline.module("enricher").dynamodb, "GetItem", lambda p: next(throttles, False))
    result = pipeline.functions["enricher"].invoke(load_event("destination_invocation"), "r4")
    assert result["category"] == UNCATEGORIZED
