"""Lambda's asynchronous invocation, emulated in-process for a chain of functions.

For each event it follows what Lambda does with an async invoke of an alias:

1. call the handler; on an error, retry up to the alias's ``MaximumRetryAttempts`` (retries go
   to the back of the queue, as Lambda's delayed retries interleave with other events);
2. on success, send the *invocation record* (``requestContext``, ``requestPayload``,
   ``responseContext``, ``responsePayload``) to the on-success destination, if any;
3. after the last failed attempt, send the event to the function's dead-letter queue with the
   ``RequestID``, ``ErrorCode`` and ``ErrorMessage`` attributes Lambda sets.

Where a bug could hide, it behaves as Lambda does:

* events and responses cross every boundary as JSON, as they do between Lambda and a function.
  An event over the 1 MB asynchronous payload limit is refused at ``invoke_async``
  (``RequestEntityTooLargeException``). A response that cannot be serialised, or that is over
  6 MB, is a function error (``Runtime.MarshalError``), retried and dead-lettered like any other
  (Invoke: https://docs.aws.amazon.com/lambda/latest/dg/API_Invoke.html);
* an invocation record is an asynchronous invocation of the destination too: over 1 MB it is
  not delivered, and ``DestinationDeliveryFailures`` counts it;
* Lambda may deliver an event more than once even without an error ("Even if your function
  doesn't return an error, it's possible for it to receive the same event from Lambda multiple
  times", https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html):
  ``redeliver`` injects such duplicates at any stage;
* the invocation record has Lambda's shape: ``version``, ``timestamp``, ``requestContext``
  (``requestId``, ``functionArn`` with the ``live`` qualifier, ``condition``,
  ``approximateInvokeCount``), ``requestPayload``, ``responseContext`` (``statusCode``,
  ``executedVersion``) and ``responsePayload``.

* DynamoDB's transaction conflict rule (``pipeline_tools/runner/conflicts.py``) holds on every
  DynamoDB client a handler made: pass one rule to several pipelines, or to the clients of
  concurrent processors, and their requests conflict as they would in DynamoDB.

What it does not emulate: the delays between retries, the maximum event age (events are
processed at once), throttling of the function itself, and concurrency (one pipeline runs one
invocation at a time).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, Literal

from pipeline_tools.runner.conflicts import TransactionConflicts
from pipeline_tools.runner.runtime import LoadedFunction, clients_of
from pipeline_tools.runner.spec import FunctionSpec

#: Lambda puts the first 1 KB of the error message in the DLQ message's ErrorMessage.
ERROR_MESSAGE_LIMIT = 1024
#: Invoke's payload limits: 1 MB for an asynchronous invocation, 6 MB for a response.
ASYNC_PAYLOAD_LIMIT = 1024 * 1024
RESPONSE_LIMIT = 6 * 1024 * 1024


class FunctionError(RuntimeError):
    """An error Lambda itself raises for an invocation (the function's code may have run)."""


class PayloadTooLarge(ValueError):
    """``RequestEntityTooLargeException``: Invoke refuses the event."""


#: The ErrorCode of a function error: the Invoke call itself succeeded.
FUNCTION_ERROR_CODE = "200"


@dataclass
class Outcome:
    """What became of one event sent into the pipeline."""

    request_id: str
    event: Any
    status: Literal["completed", "dead_lettered", "lost"] = "completed"
    stage: str = ""
    attempts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    result: Any = None


@dataclass
class _Pending:
    stage: str
    event: Any
    request_id: str
    origin: str
    attempt: int = 0


def _through_json(value: Any, limit: int, refusal: str) -> Any:
    """``value`` as the receiving side sees it: serialised to JSON and parsed back."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{refusal}: not JSON: {error}") from None
    if len(text.encode()) > limit:
        raise PayloadTooLarge(f"{refusal}: {len(text.encode())} bytes, over {limit}")
    return json.loads(text)


def _parse_payload(payload: bytes | str) -> Any:
    raw = payload.encode() if isinstance(payload, str) else payload
    if len(raw) > ASYNC_PAYLOAD_LIMIT:
        raise PayloadTooLarge(
            f"RequestEntityTooLargeException: {len(raw)} bytes, over {ASYNC_PAYLOAD_LIMIT}"
        )

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(raw, parse_constant=refuse)
    except ValueError as error:
        raise ValueError(f"InvalidRequestContentException: {error}") from None


def _response(result: Any) -> Any:
    """A handler's return value as Lambda's runtime hands it on: JSON, at most 6 MB.

    ``NaN`` and infinities are refused too: what crosses a boundary here is strict JSON (at
    worst stricter than Lambda, never more lenient)."""
    try:
        text = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise FunctionError(f"Runtime.MarshalError: Unable to marshal response: {error}") from None
    if len(text.encode()) > RESPONSE_LIMIT:
        raise FunctionError(
            f"Response payload size ({len(text.encode())} bytes) exceeded maximum allowed "
            f"payload size ({RESPONSE_LIMIT} bytes)"
        )
    return json.loads(text)


class AsyncPipeline:
    """Runs events through functions wired by async invoke configs and destinations."""

    def __init__(
        self,
        specs: Mapping[str, FunctionSpec],
        sqs_client: Any,
        *,
        redeliver: Callable[[str, Any], bool] | None = None,
        conflicts: TransactionConflicts | None = None,
    ) -> None:
        """
        :param redeliver: ``(stage, event) -> bool``: deliver this successful invocation's event
            to the stage once more, as Lambda may. :default: never
        :param conflicts: DynamoDB's conflict rule, enforced on the handlers' DynamoDB clients.
            :default: a rule of this pipeline's own (transactions hold their items while
            DynamoDB answers)
        """
        self.specs = dict(specs)
        self.redeliver = redeliver or (lambda stage, event: False)
        #: What Lambda would count in CloudWatch: DestinationDeliveryFailures, DeadLetterErrors.
        self.metrics: Counter[str] = Counter()
        self.sqs = sqs_client
        self.functions = {name: LoadedFunction(spec) for name, spec in self.specs.items()}
        self.conflicts = conflicts or TransactionConflicts(window_seconds=0.0)
        for function in self.functions.values():
            for client in clients_of(function.module, "dynamodb"):
                self.conflicts.enforce_on(client)
        destinations = {s.on_success for s in self.specs.values() if s.on_success}
        entries = [name for name in self.specs if name not in destinations]
        if len(entries) != 1:
            raise ValueError(f"expected one entry function (no one's destination), got {entries}")
        self.entry = entries[0]
        self._queue: deque[_Pending] = deque()
        self.outcomes: dict[str, Outcome] = {}
        self.invocations: dict[str, int] = {name: 0 for name in self.specs}

    def module(self, stage: str) -> ModuleType:
        """The handler module of ``stage`` (to reach its clients, e.g. to inject faults)."""
        return self.functions[stage].module

    def invoke_async(self, event: Any, stage: str | None = None) -> str:
        """Queue an asynchronous invocation (``InvocationType=Event``); return its request ID.

        ``event`` is a Python value, or the payload as Lambda's ``Invoke`` takes it: JSON text
        (``bytes`` or ``str``), parsed as the Python runtime parses it (``1e400`` becomes an
        infinite float, which the record contract then refuses).

        :raises PayloadTooLarge: over the 1 MB asynchronous payload limit.
        :raises ValueError: for a payload that is not JSON (``InvalidRequestContentException``).
        """
        if isinstance(event, bytes | str):
            event = _parse_payload(event)
        else:
            event = _through_json(event, ASYNC_PAYLOAD_LIMIT, "RequestEntityTooLargeException")
        request_id = str(uuid.uuid4())
        self.outcomes[request_id] = Outcome(request_id=request_id, event=event)
        self._queue.append(_Pending(stage or self.entry, event, request_id, request_id))
        return request_id

    def run(self, events: Iterable[Any]) -> list[Outcome]:
        """Send every event into the entry function, process everything, return the outcomes."""
        ids = [self.invoke_async(event) for event in events]
        self.drain()
        return [self.outcomes[i] for i in ids]

    def drain(self) -> None:
        """Process queued invocations (and everything they lead to) until none is left."""
        while self._queue:
            self._step(self._queue.popleft())

    def _step(self, item: _Pending) -> None:
        spec = self.specs[item.stage]
        outcome = self.outcomes[item.origin]
        outcome.stage = item.stage
        outcome.attempts[item.stage] = item.attempt + 1
        self.invocations[item.stage] += 1
        try:
            result = self.functions[item.stage].invoke(item.event, item.request_id)
            result = _response(result)
        except Exception as error:  # a function error, as Lambda sees it
            if item.attempt < spec.retry_attempts:
                item.attempt += 1
                self._queue.append(item)
                return
            self._dead_letter(spec, item, outcome, error)
            return
        if self.redeliver(item.stage, item.event):
            self._queue.append(_Pending(item.stage, item.event, item.request_id, item.origin))
        if spec.on_success is None:
            outcome.status, outcome.result = "completed", result
            return
        target = self.specs[spec.on_success]
        try:
            if spec.policy is not None and not spec.policy.allows(
                "lambda:InvokeFunction", target.arn
            ):
                raise ValueError(f"AccessDenied: the role may not invoke {target.arn}")
            record = _through_json(
                self._invocation_record(spec, item, result), ASYNC_PAYLOAD_LIMIT, "destination"
            )
        except ValueError as error:
            self.metrics["DestinationDeliveryFailures"] += 1
            outcome.status, outcome.error = "lost", f"DestinationDeliveryFailure: {error}"
            return
        self._queue.append(_Pending(spec.on_success, record, str(uuid.uuid4()), item.origin))

    def _invocation_record(self, spec: FunctionSpec, item: _Pending, result: Any) -> dict[str, Any]:
        return {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "requestContext": {
                "requestId": item.request_id,
                "functionArn": spec.arn,
                "condition": "Success",
                "approximateInvokeCount": item.attempt + 1,
            },
            "requestPayload": item.event,
            "responseContext": {"statusCode": 200, "executedVersion": spec.version},
            "responsePayload": result,
        }

    def _dead_letter(
        self, spec: FunctionSpec, item: _Pending, outcome: Outcome, error: Exception
    ) -> None:
        message = str(error) or type(error).__name__
        outcome.error = f"{type(error).__name__}: {message}"
        if spec.dead_letter_queue_url is None:
            outcome.status = "lost"
            return
        if spec.policy is not None and not spec.policy.allows(
            "sqs:SendMessage", str(spec.dead_letter_queue_arn)
        ):
            # Lambda writes to the DLQ with the function's role: denied, the event is lost.
            self.metrics["DeadLetterErrors"] += 1
            outcome.status = "lost"
            outcome.error += " (and DeadLetterErrors: the role may not send to the DLQ)"
            return
        self.sqs.send_message(
            QueueUrl=spec.dead_letter_queue_url,
            MessageBody=json.dumps(item.event),
            MessageAttributes={
                "RequestID": {"DataType": "String", "StringValue": item.request_id},
                "ErrorCode": {"DataType": "Number", "StringValue": FUNCTION_ERROR_CODE},
                "ErrorMessage": {
                    "DataType": "String",
                    "StringValue": message.encode()[:ERROR_MESSAGE_LIMIT].decode(errors="ignore"),
                },
            },
        )
        outcome.status = "dead_lettered"
