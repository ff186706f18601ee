"""The one DLQ reader: every message as a ``DeadLetter``, with the stage that failed it.

Each message is received once (hidden while the queue is read, for
``RECEIVE_VISIBILITY_SECONDS``); ``peek`` makes them visible again at once, so listing consumes
nothing, and ``redrive`` deletes only what it re-invoked. Lambda's dead-letter messages carry
the failure in the message attributes ``ErrorCode``, ``ErrorMessage`` and ``RequestID``
(https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html#invocation-dlq).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: How a stage's crash begins its DLQ error message (``StageFailure`` in the runtime code).
CRASH_PREFIX = "unexpected "
#: How the storing stage says a record's id is already stored with other content
#: (``RecordConflict`` in the runtime code): a redrive would fail the same way.
CONFLICT_MARK = "is already stored with different content"
#: How long a received DLQ message stays hidden while a command works on it.
RECEIVE_VISIBILITY_SECONDS = 120
#: Which stage failed a message's event; ``"?"`` where it cannot be told.
StageOf = Callable[[Any], str]


def _unknown_stage(event: Any) -> str:
    return "?"


@dataclass(frozen=True)
class DeadLetter:
    """One DLQ message: its event, the stage that failed it and Lambda's error attributes."""

    message_id: str
    receipt_handle: str
    event: Any
    failed_stage: str  # "?" where it cannot be told
    error: str  # Lambda's ErrorMessage
    error_code: str | None  # Lambda's ErrorCode (the invoke's HTTP status, "200" for an error)
    request_id: str | None  # Lambda's RequestID of the failed invocation
    record_id: str | None
    age_seconds: float

    def is_rejection(self, entry: str) -> bool:
        """Refused by the entry stage's contract: it would fail the same way again. A crash
        there (``unexpected ...``, see ``pipeline_common.invocation.StageFailure``) is not."""
        return self.failed_stage == entry and not self.error.startswith(CRASH_PREFIX)

    def is_conflict(self) -> bool:
        """Refused as a conflict: the stored record is never overwritten, so it fails again."""
        return CONFLICT_MARK in self.error

    def line(self) -> str:
        return (
            f"{self.failed_stage:<10} {self.record_id or '-'!s:<28} "
            f"{_age(self.age_seconds):>6}  {self.error}"
        )


def peek(
    sqs: Any, url: str, stage_of: StageOf = _unknown_stage, *, limit: int | None = None
) -> list[DeadLetter]:
    """Every message in the queue at ``url`` (at most ``limit``), oldest first, left there."""
    letters = receive_all(sqs, url, stage_of, limit)
    release(sqs, url, letters)
    return sorted(letters, key=lambda letter: -letter.age_seconds)


def receive_all(
    sqs: Any, url: str, stage_of: StageOf = _unknown_stage, limit: int | None = None
) -> list[DeadLetter]:
    """Receive each message once: each stays invisible until ``release`` or its deletion."""
    seen: dict[str, DeadLetter] = {}
    now = time.time()
    while limit is None or len(seen) < limit:
        response = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10 if limit is None else min(10, limit - len(seen)),
            VisibilityTimeout=RECEIVE_VISIBILITY_SECONDS,
            MessageAttributeNames=["All"],
            AttributeNames=["SentTimestamp"],
        )
        messages = [m for m in response.get("Messages", []) if m["MessageId"] not in seen]
        if not messages:
            break
        for message in messages:
            seen[message["MessageId"]] = _letter(message, stage_of, now)
    return list(seen.values())


def release(sqs: Any, url: str, letters: Iterable[DeadLetter]) -> None:
    """Make received messages visible again at once: they stay in the queue, unconsumed."""
    for letter in letters:
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=letter.receipt_handle, VisibilityTimeout=0
        )


def _letter(message: Mapping[str, Any], stage_of: StageOf, now: float) -> DeadLetter:
    try:
        event = json.loads(message["Body"])
    except ValueError:
        event = message["Body"]
    attributes = message.get("MessageAttributes", {})
    try:
        # The batched path's stages name the stage that failed a record; Lambda's own dead
        # letters (the per-record path) are told by their body.
        stage = attributes.get("FailedStage", {}).get("StringValue") or stage_of(event)
    except ValueError:
        stage = "?"
    record = event.get("responsePayload") if isinstance(event, dict) else None
    record = record if isinstance(record, dict) else event
    record_id = record.get("id") if isinstance(record, dict) else None
    sent = int(message.get("Attributes", {}).get("SentTimestamp", now * 1000)) / 1000
    return DeadLetter(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        event=event,
        failed_stage=stage,
        error=attributes.get("ErrorMessage", {}).get("StringValue", ""),
        error_code=attributes.get("ErrorCode", {}).get("StringValue"),
        request_id=attributes.get("RequestID", {}).get("StringValue"),
        record_id=str(record_id) if record_id is not None else None,
        age_seconds=max(0.0, now - sent),
    )


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
