"""The batched path's SQS messages: the one definition of their format.

A body is one record (a JSON object) or several (a JSON array), packed to at most
:data:`MESSAGE_BYTES`, SQS's billing chunk ("each 64 KB chunk of a payload is billed as 1
request", https://aws.amazon.com/sqs/pricing/). The attributes name the stage a message is for
and its attempt; a dead letter also carries its reason and the stage that failed it.

This module imports nothing from the project: the operator tools load it by path
(``pipeline_tools/runtime_source.py``) and send what the stages read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: The most a packed message holds: one billed SQS request.
MESSAGE_BYTES = 64 * 1024
#: The most one ``SendMessageBatch`` takes: 10 entries, 256 KiB in all
#: (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html).
BATCH_ENTRIES = 10
BATCH_BYTES = 256 * 1024
#: The longest delay SQS gives a message: 15 minutes (``DelaySeconds``, same page).
MAX_DELAY_SECONDS = 900
#: The wait before a failed record's next attempt: 1 minute, then doubled.
RETRY_DELAY_SECONDS = 60

STAGE_ATTRIBUTE = "stage"
ATTEMPT_ATTRIBUTE = "attempt"
ERROR_ATTRIBUTE = "ErrorMessage"
FAILED_STAGE_ATTRIBUTE = "FailedStage"
#: SQS takes a message attribute value of up to 256 KiB with the body; the reason is kept short.
MAX_REASON_CHARS = 1024


def pack(
    records: Iterable[Any],
    limit: int = MESSAGE_BYTES,
    sized: Callable[[Any], Any] = lambda record: record,
) -> Iterator[list[Any]]:
    """``records`` in groups whose JSON array is at most ``limit`` bytes (a record larger than
    that travels alone); ``sized`` gives what each item puts in the body (the tools pack
    indices of their records)."""
    group: list[Any] = []
    size = 2  # the brackets
    for record in records:
        cost = len(json.dumps(sized(record), separators=(",", ":")).encode()) + 1  # its comma
        if group and size + cost > limit:
            yield group
            group, size = [], 2
        group.append(record)
        size += cost
    if group:
        yield group


def body_of(records: list[Any]) -> str:
    """A message body: the record itself when it is alone, else the array."""
    return json.dumps(records[0] if len(records) == 1 else records, separators=(",", ":"))
