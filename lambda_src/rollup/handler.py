"""Count roll-up Lambda: folds each closed hour's count markers into its days' totals.

An EventBridge schedule runs it every hour (a ``ScheduledFunction``,
``constructs_lib/scheduled_function.py``, wired by the stack). It folds every closed hour after
the watermark, in order (``pipeline_common/counts.py``), and stops a minute
before its timeout; the next run goes on from the watermark. Running it again, or beside itself,
adds nothing twice. Transient DynamoDB conditions are retried in-process
(``pipeline_common/retries.py``); what still fails raises, so Lambda retries the run, then sends
its event to the dead-letter queue, and the errors alarm fires.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline_common.counts import roll_up
from pipeline_common.retries import RetryPolicy, dynamodb_client

TABLE_NAME = os.environ["TABLE_NAME"]
#: Time the run keeps for its last hour's fold: it starts no hour with less left.
RESERVE_MS = 60_000

logger = Logger()
dynamodb = dynamodb_client()
RETRY = RetryPolicy()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline = RETRY.deadline(context)

    def call(name: str, function: Any, **params: Any) -> Any:
        return RETRY.call(deadline, name, function, **params)

    folded = roll_up(
        dynamodb,
        TABLE_NAME,
        datetime.now(UTC),
        call,
        more_time=lambda: context.get_remaining_time_in_millis() > RESERVE_MS,
    )
    logger.info("hours folded", extra={"hours": folded})
    return {"folded": folded}
