"""Enricher Lambda: adds ``received_at`` and ``category`` (looked up in the table)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from enricher.enrichment import UNCATEGORIZED, category_from_item, category_key, enrich
from pipeline_common.batch import batch_entry
from pipeline_common.invocation import accept, stage_entry
from pipeline_common.retries import RetryPolicy, dynamodb_client
from pipeline_common.tracing import stage_tracer

TABLE_NAME = os.environ["TABLE_NAME"]

logger, tracer, metrics = Logger(), stage_tracer(), Metrics()
dynamodb = dynamodb_client()
#: Throttling is retried here, within the invocation's time.
RETRY = RetryPolicy()
#: The batched path: each type's category is read once a batch, and kept for the batch alone.
BATCH_CATEGORIES: dict[str, str] = {}
IN_BATCH: list[bool] = []


@contextmanager
def categories_of_the_batch(records: list[Any], context: LambdaContext) -> Iterator[None]:
    """The batch runs with its own lookups: a type read once, whatever its records."""
    IN_BATCH.append(True)
    try:
        yield
    finally:
        IN_BATCH.clear()
        BATCH_CATEGORIES.clear()


@tracer.capture_method
def lookup_category(record_type: str, deadline: float) -> str:
    """The category of ``record_type``; throttling that outlasts the in-process retries
    propagates (``StillTransient``) so that Lambda retries."""
    response = RETRY.call(
        deadline,
        "GetItem of the category",
        dynamodb.get_item,
        TableName=TABLE_NAME,
        Key=category_key(record_type),
        ProjectionExpression="category",
    )
    return category_from_item(response.get("Item"))


def handle(event: Any, context: LambdaContext) -> dict[str, Any]:
    """One record: the per-record path's event, or one record of a batch."""
    record = accept(event, logger, metrics, enriched=True)
    category = BATCH_CATEGORIES.get(record["type"]) if IN_BATCH else None
    if category is None:
        category = lookup_category(record["type"], RETRY.deadline(context))
        if IN_BATCH:
            BATCH_CATEGORIES[record["type"]] = category
    if category == UNCATEGORIZED:
        metrics.add_metric(name="RecordsUncategorized", unit=MetricUnit.Count, value=1)
    logger.debug("record enriched", extra={"category": category})
    return enrich(record, category, datetime.now(UTC))


#: The per-record path: an asynchronous invocation of the live alias.
lambda_handler = stage_entry(logger, metrics, tracer)(handle)
#: The batched path: a batch of the stage's SQS queue (``pipeline_common/batch.py``).
batch_handler = batch_entry(
    "enricher", handle, logger, metrics, tracer, prepare=categories_of_the_batch
)
