"""A stage's batched entry: a batch from an SQS event source mapping, each record on its own.

On the batched path (``ingestion.mode: batched``) every stage reads its own SQS queue through an
event source mapping, and hands what it produced to the next stage's queue. A message's body is
one record (a JSON object) or several (a JSON array): the producer and the stages pack records
into messages of at most :data:`MESSAGE_BYTES`, SQS's billing chunk ("each 64 KB chunk of a
payload is billed as 1 request", https://aws.amazon.com/sqs/pricing/). Each message carries the
attributes ``stage`` (the stage it is for; SQS keeps message attributes when its redrive policy
moves a message to the DLQ) and ``attempt``.

Each record of a batch ends one of three ways, whatever its batch-mates do:

* **done**: its result goes to the next stage's queue (``SendMessageBatch``, packed), or, at
  the processor, it is stored;
* **refused** (it breaks the contract, or conflicts with a stored record: the same input fails
  the same way): it goes to the DLQ *alone*, at once, with its reason in the ``ErrorMessage``
  attribute (the name Lambda's own dead-letter messages use) and the stage in ``FailedStage``;
* **failed** (a transient AWS condition that outlasted the in-process retries, or a crash): it
  goes back to its own stage's queue alone, with ``attempt`` + 1 and a delay (1 minute, then 2,
  as Lambda's asynchronous retries wait), until the stage's retries are spent; then to the DLQ
  alone, with its reason.

So a poison record never blocks its batch-mates, and nothing is retried that cannot succeed.
A message is reported in the partial batch response (``batchItemFailures``, with the event
source mapping's ``ReportBatchItemFailures``,
https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html) only when one of
its records could not be handed on (a send that failed): SQS delivers it again after its
visibility timeout, and the second pass is harmless (the processor stores a record once and
counts it once). After the queue's ``maxReceiveCount`` deliveries SQS moves it to the DLQ.

Powertools' ``BatchProcessor`` runs the messages and builds that response.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from typing import Any

from pipeline_common.contract import InvalidRecord
from pipeline_common.invocation import (
    PROBE_ANSWER,
    PROBE_EVENT,
    StageFailure,
    reject,
    rejections_counted,
)
from pipeline_common.messages import (
    ATTEMPT_ATTRIBUTE,
    BATCH_BYTES,
    BATCH_ENTRIES,
    ERROR_ATTRIBUTE,
    FAILED_STAGE_ATTRIBUTE,
    MAX_DELAY_SECONDS,
    MAX_REASON_CHARS,
    RETRY_DELAY_SECONDS,
    STAGE_ATTRIBUTE,
    body_of,
    pack,
)

#: ``prepare(records, context)``: a context manager a whole batch runs in.
Prepare = Callable[[list[Any], Any], AbstractContextManager[Any]]


class MalformedMessage(InvalidRecord):
    """A message whose body is not a record or a list of records."""

    def __init__(self, message: str) -> None:
        super().__init__([message])


def records_of(body: str) -> list[Any]:
    """The records a message body carries: one JSON object, or a non-empty JSON array.

    :raises MalformedMessage: naming what the body is instead.
    """
    try:
        parsed = json.loads(body)
    except ValueError as error:
        raise MalformedMessage(f"message: not JSON ({error})") from None
    if isinstance(parsed, dict):
        return [parsed]
    if isinstance(parsed, list) and parsed:
        return parsed
    raise MalformedMessage(
        "message: must be a record (a JSON object) or a non-empty JSON array of records, "
        f"got {'an empty array' if parsed == [] else type(parsed).__name__}"
    )


def retry_delay(attempt: int) -> int:
    """Seconds before attempt ``attempt`` (from 2) of a failed record."""
    return min(MAX_DELAY_SECONDS, RETRY_DELAY_SECONDS * 2 ** max(0, attempt - 2))


@dataclass
class _Outgoing:
    """Messages to send to one queue, each with the source messages that depend on it."""

    queue_url: str
    entries: list[tuple[dict[str, Any], set[str]]] = field(default_factory=list)

    def add(self, body: str, attributes: dict[str, Any], sources: set[str], delay: int = 0) -> None:
        entry: dict[str, Any] = {"MessageBody": body, "MessageAttributes": attributes}
        if delay:
            entry["DelaySeconds"] = delay
        self.entries.append((entry, sources))


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _number(value: int) -> dict[str, str]:
    return {"DataType": "Number", "StringValue": str(value)}


@dataclass(frozen=True)
class Routes:
    """Where a stage's messages go: its own queue (for retries), the DLQ, and the next stage's
    queue (none at the last stage)."""

    own: str
    dead_letters: str
    next_queue: str | None = None
    next_stage: str | None = None

    @classmethod
    def from_environment(cls) -> Routes:
        """``STAGE_QUEUE_URL``, ``DEAD_LETTER_QUEUE_URL``, ``NEXT_QUEUE_URL``, ``NEXT_STAGE``
        (set by the stack on the batched path)."""
        return cls(
            own=os.environ["STAGE_QUEUE_URL"],
            dead_letters=os.environ["DEAD_LETTER_QUEUE_URL"],
            next_queue=os.environ.get("NEXT_QUEUE_URL") or None,
            next_stage=os.environ.get("NEXT_STAGE") or None,
        )


class BatchEntry:
    """The batched handler of one stage.

    :param stage: the stage's name.
    :param handle: the stage's handler of one record (``handle(record, context)``). What it
        refuses it counts in ``RecordsRejected`` (``pipeline_common.invocation.reject``) and
        raises: a contract violation, a conflict.
    :param retries: the stage's retries of a failed record (the stage table's).
    :param routes: where messages go. :default: ``Routes.from_environment()`` at the first batch
    :param sqs: an SQS client. :default: one made at the first batch
    :param prepare: ``prepare(records, context)``, a context manager the whole batch runs in,
        given every record of the batch (the processor puts the batch's count markers).
        :default: none
    """

    def __init__(
        self,
        stage: str,
        handle: Callable[[Any, Any], Any],
        *,
        logger: Any,
        metrics: Any,
        retries: int,
        routes: Routes | None = None,
        sqs: Any = None,
        prepare: Prepare | None = None,
    ) -> None:
        self.stage = stage
        self.prepare = prepare
        self.logger = logger
        self.metrics = metrics
        self.retries = retries
        self.handle = rejections_counted(logger, metrics)(handle)
        self._routes = routes
        self._sqs = sqs
        self._processor: Any = None

    @property
    def processor(self) -> Any:
        """Powertools' ``BatchProcessor`` for SQS, imported at the first batch (so the
        per-record path's cold start does not pay for it); it never raises for a batch whose
        every message failed: the partial response says so."""
        if self._processor is None:
            from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

            self._processor = BatchProcessor(
                event_type=EventType.SQS, raise_on_entire_batch_failure=False
            )
        return self._processor

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            import boto3

            self._sqs = boto3.client("sqs")
        return self._sqs

    @property
    def routes(self) -> Routes:
        if self._routes is None:
            self._routes = Routes.from_environment()
        return self._routes

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """The partial batch response: the messages to deliver again."""
        if event == PROBE_EVENT:  # a deployment's release probe: the module initialised
            return PROBE_ANSWER
        if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
            # A record invoked straight at a batched stage: refused (to the function's DLQ,
            # on an asynchronous invoke), never dropped. Send records to the stage's queue.
            raise MalformedMessage(
                f"event: not an SQS batch ({type(event).__name__} without Records): on the "
                f"batched path, send records to the {self.stage} stage's queue"
            )
        run = _Run(self, context)
        messages = event["Records"]
        with self._prepared(messages, context):
            with self.processor(records=messages, handler=run.message):
                self.processor.process()
            response = self.processor.response()
            unsent = run.send()
        failures = {item["itemIdentifier"] for item in response["batchItemFailures"]} | unsent
        return {"batchItemFailures": [{"itemIdentifier": i} for i in sorted(failures)]}

    def _prepared(self, messages: list[dict[str, Any]], context: Any) -> Any:
        if self.prepare is None:
            return nullcontext()
        records = []
        for message in messages:
            with suppress(MalformedMessage):
                records += records_of(str(message.get("body", "")))
        return self.prepare(records, context)


class _Run:
    """One batch: each record handled, and what it produced gathered per destination queue."""

    def __init__(self, entry: BatchEntry, context: Any) -> None:
        self.entry = entry
        self.context = context
        self.routes = entry.routes
        self.done: list[tuple[Any, str]] = []
        self.retried = _Outgoing(self.routes.own)
        self.dead = _Outgoing(self.routes.dead_letters)

    def message(self, record: Any) -> None:
        """Handle each record of one SQS message (Powertools' ``SQSRecord``, passed as
        ``record``)."""
        message = record
        attributes = message.raw_event.get("messageAttributes") or {}
        attempt_value = str((attributes.get(ATTEMPT_ATTRIBUTE) or {}).get("stringValue") or "1")
        attempt = int(attempt_value) if attempt_value.isdigit() else 1
        try:
            records = records_of(message.body)
        except MalformedMessage as error:
            reject(error, self.entry.logger, self.entry.metrics)
            self._dead(message.body, str(error), message.message_id)
            return
        for record in records:
            self._one(record, attempt, message.message_id)

    def _one(self, record: Any, attempt: int, source: str) -> None:
        try:
            result = self.entry.handle(record, self.context)
        except Exception as error:
            if getattr(error, "counted", False) and not isinstance(error, StageFailure):
                # Refused (counted in RecordsRejected): it would fail the same way again.
                self._dead(json.dumps(record), _reason(error), source)
            elif attempt > self.entry.retries:  # failed (transient, or a crash), retries spent
                self._dead(json.dumps(record), _reason(error), source)
            else:
                attributes = {
                    STAGE_ATTRIBUTE: _string(self.entry.stage),
                    ATTEMPT_ATTRIBUTE: _number(attempt + 1),
                }
                body = body_of([record])
                self.retried.add(body, attributes, {source}, retry_delay(attempt + 1))
            return
        if self.routes.next_queue is not None:
            self.done.append((result, source))

    def _dead(self, body: str, reason: str, source: str) -> None:
        attributes = {
            ERROR_ATTRIBUTE: _string(reason[:MAX_REASON_CHARS]),
            FAILED_STAGE_ATTRIBUTE: _string(self.entry.stage),
            STAGE_ATTRIBUTE: _string(self.entry.stage),
        }
        self.dead.add(body, attributes, {source})

    def send(self) -> set[str]:
        """Send everything gathered; the source messages of whatever was not sent."""
        outgoing = [self.retried, self.dead]
        if self.routes.next_queue is not None and self.done:
            forward = _Outgoing(self.routes.next_queue)
            next_stage = {
                STAGE_ATTRIBUTE: _string(self.routes.next_stage or ""),
                ATTEMPT_ATTRIBUTE: _number(1),
            }
            results = [result for result, _ in self.done]
            sources = [source for _, source in self.done]
            start = 0
            for group in pack(results):
                forward.add(body_of(group), next_stage, set(sources[start : start + len(group)]))
                start += len(group)
            outgoing.insert(0, forward)
        unsent: set[str] = set()
        for queue in outgoing:
            unsent |= _send_all(self.entry.sqs, queue)
        return unsent


def _reason(error: BaseException) -> str:
    """What the DLQ keeps of why a record failed: the error's own message, in one line."""
    return " ".join(str(error).split()) or type(error).__name__


def _send_all(sqs: Any, queue: _Outgoing) -> set[str]:
    """``SendMessageBatch`` calls of at most 10 entries and 256 KiB; the source messages of
    the entries that were not sent."""
    unsent: set[str] = set()
    calls: list[list[tuple[dict[str, Any], set[str]]]] = []
    current: list[tuple[dict[str, Any], set[str]]] = []
    size = 0
    for entry, sources in queue.entries:
        cost = len(entry["MessageBody"].encode()) + sum(
            len(name) + len(value["StringValue"]) + len(value["DataType"])
            for name, value in entry["MessageAttributes"].items()
        )
        if current and (len(current) == BATCH_ENTRIES or size + cost > BATCH_BYTES):
            calls.append(current)
            current, size = [], 0
        current.append((entry, sources))
        size += cost
    if current:
        calls.append(current)
    for call in calls:
        entries = [{"Id": str(i), **entry} for i, (entry, _) in enumerate(call)]
        try:
            answer = sqs.send_message_batch(QueueUrl=queue.queue_url, Entries=entries)
        except Exception:  # nothing of the call is known sent: its sources are delivered again
            unsent.update(*(sources for _, sources in call))
            continue
        for failed in answer.get("Failed", []):
            unsent |= call[int(failed["Id"])][1]
    return unsent


def batch_entry(
    stage: str,
    handle: Callable[[Any, Any], Any],
    logger: Any,
    metrics: Any,
    tracer: Any = None,
    prepare: Prepare | None = None,
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A stage's batched handler, with the per-invocation decorators of ``stage_entry``: the
    Lambda context in the logs, the trace (where the stage traces), the metrics flushed once a
    batch. The stage's retries come from ``STAGE_RETRIES`` (the stack sets it from the stage
    table)."""
    entry = BatchEntry(
        stage,
        handle,
        logger=logger,
        metrics=metrics,
        retries=int(os.environ.get("STAGE_RETRIES", "0")),
        prepare=prepare,
    )

    def batch_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return entry(event, context)

    handler: Any = metrics.log_metrics(batch_handler)
    if tracer is not None:
        handler = tracer.capture_lambda_handler(handler)
    decorated: Callable[[dict[str, Any], Any], dict[str, Any]] = logger.inject_lambda_context(
        handler
    )
    decorated.entry = entry  # type: ignore[attr-defined]
    return decorated
