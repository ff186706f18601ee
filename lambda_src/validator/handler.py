"""Validator Lambda: the pipeline's gate. Invalid records fail here, deterministically.

The contract itself is ``pipeline_common/contract.py``, which every stage enforces. The
``live`` alias has ``MaximumRetryAttempts: 0``: a record that fails validation would fail
every retry too, so it goes straight to the dead-letter queue, with the defects as the
``ErrorMessage`` attribute. A valid record is returned, normalised, and Lambda's on-success
destination hands it to the enricher.

No Powertools Tracer here: the validator calls no AWS API, so the X-Ray SDK would add no
subsegment, only its import (it builds two X-Ray clients at import, about 140 ms of every cold
start). Where the stage's ``tracing`` is Active, Lambda still records each invocation.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline_common.batch import batch_entry
from pipeline_common.invocation import accept, stage_entry

logger = Logger()
metrics = Metrics()


def handle(event: Any, context: LambdaContext) -> dict[str, Any]:
    """One record: the per-record path's event, or one record of a batch."""
    record = accept(event, logger, metrics, enriched=False)
    logger.debug("record validated", extra={"record_type": record["type"]})
    return record


#: The per-record path: an asynchronous invocation of the live alias.
lambda_handler = stage_entry(logger, metrics)(handle)
#: The batched path: a batch of the stage's SQS queue (``pipeline_common/batch.py``).
batch_handler = batch_entry("validator", handle, logger, metrics)
