"""Processor Lambda: the critical stage. Stores the record and counts it, exactly once."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline_common.batch import batch_entry
from pipeline_common.invocation import accept, reject, stage_entry
from pipeline_common.retries import RetryPolicy, dynamodb_client
from pipeline_common.tracing import stage_tracer
from processor.storage import (
    TTL_ATTRIBUTE,
    RecordConflict,
    Retention,
    put_record,
    store,
    store_batch_markers,
)

TABLE_NAME = os.environ["TABLE_NAME"]
#: Set by the stack only when records expire (``record_retention_days``).
RETENTION = (
    Retention(TTL_ATTRIBUTE, int(os.environ["RECORD_RETENTION_DAYS"]))
    if os.environ.get("RECORD_RETENTION_DAYS")
    else None
)

#: ``json`` or ``deflate`` (``payload_encoding`` in cdk.json; see ``processor/storage.py``).
PAYLOAD_ENCODING = os.environ.get("PAYLOAD_ENCODING", "json")

logger, tracer, metrics = Logger(), stage_tracer(), Metrics()
dynamodb = dynamodb_client()
#: Throttling and conflicts are retried here, within the invocation's time.
RETRY = RetryPolicy()
#: The time of the batch being stored (the batched path), whose markers are put, and the ids
#: it has stored: a record twice in one batch finds its own put the second time.
BATCH: list[datetime] = []
BATCH_STORED: set[str] = set()


@contextmanager
def marked_batch(records: list[Any], context: LambdaContext) -> Iterator[None]:
    """The batched path: the batch's count markers first, one per (day, type), then each
    record stored with the batch's time (``processor/storage.py``)."""
    now = datetime.now(UTC)
    store_batch_markers(
        dynamodb,
        TABLE_NAME,
        records,
        now,
        uuid.uuid4().hex,
        retry=RETRY,
        deadline=RETRY.deadline(context),
    )
    BATCH.append(now)
    try:
        yield
    finally:
        BATCH.clear()
        BATCH_STORED.clear()


def handle(event: Any, context: LambdaContext) -> dict[str, Any]:
    """One record: the per-record path's event, or one record of a batch."""
    record = accept(event, logger, metrics, enriched=True)
    try:
        # On the batched path the batch's markers are put (marked_batch): the record's put alone.
        result = (put_record if BATCH else store)(
            dynamodb,
            TABLE_NAME,
            record,
            BATCH[-1] if BATCH else datetime.now(UTC),
            RETENTION,
            PAYLOAD_ENCODING,
            retry=RETRY,
            deadline=RETRY.deadline(context),
        )
    except RecordConflict as error:
        reject(error, logger, metrics)
        raise
    if BATCH and result.status == "stored":
        if record["id"] in BATCH_STORED:  # its batch stored it already: a duplicate delivery
            result = replace(result, status="duplicate")
        BATCH_STORED.add(record["id"])
    if result.status == "duplicate":
        metrics.add_metric(name="DuplicatesSkipped", unit=MetricUnit.Count, value=1)
    logger.debug("record processed", extra={"status": result.status})
    return asdict(result)


#: The per-record path: an asynchronous invocation of the live alias.
lambda_handler = stage_entry(logger, metrics, tracer)(handle)
#: The batched path: a batch of the stage's SQS queue (``pipeline_common/batch.py``).
batch_handler = batch_entry("processor", handle, logger, metrics, tracer, prepare=marked_batch)
