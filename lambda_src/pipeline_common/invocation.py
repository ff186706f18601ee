"""Reading a stage's input: a bare record, or the invocation record a Lambda destination sends.

When ``validator:live`` succeeds, Lambda invokes ``enricher:live`` asynchronously with an
*invocation record* (``version``, ``timestamp``, ``requestContext``, ``requestPayload``,
``responseContext``, ``responsePayload``); the previous stage's return value is in
``responsePayload``. Every stage also accepts the record itself, so any stage can be invoked
directly (replays from the DLQ, tests, back-fills).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from pipeline_common.contract import InvalidRecord, validate
from pipeline_common.regressions import count_regression, is_regression

#: The release probe a deployment's pre-traffic hook sends a new version, and the answer of a
#: version that imported and initialised (``lambda_src/release_hook/handler.py``).
PROBE_EVENT = {"releaseProbe": True}
PROBE_ANSWER = {"releaseProbe": "ok"}

#: Keys that every Lambda destination invocation record carries.
INVOCATION_RECORD_KEYS = frozenset({"requestContext", "requestPayload", "responsePayload"})


class MalformedEvent(InvalidRecord):
    """The event is neither a record object nor an invocation record wrapping one."""

    def __init__(self, message: str) -> None:
        super().__init__([message])


def is_invocation_record(event: object) -> bool:
    """True when ``event`` is a Lambda destination invocation record."""
    return isinstance(event, dict) and event.keys() >= INVOCATION_RECORD_KEYS


def unwrap(event: object) -> dict[str, Any]:
    """Return the record carried by ``event``.

    :raises MalformedEvent: when the record is not a JSON object.
    """
    payload = event
    if isinstance(event, dict) and is_invocation_record(event):
        payload = event["responsePayload"]
    if not isinstance(payload, dict):
        raise MalformedEvent(
            f"record: must be a JSON object (or an invocation record whose responsePayload "
            f"is one), got {type(payload).__name__}"
        )
    return payload


def accept(event: object, logger: Any, metrics: Any, *, enriched: bool) -> dict[str, Any]:
    """The record ``event`` carries, held to the record contract; every stage starts here.

    ``logger``'s correlation id becomes the record's id, so every log line of the invocation
    names the record. A record that breaks the contract counts once in ``RecordsRejected``, is
    logged with its defects, and raises :class:`InvalidRecord` (Lambda then sends it to the DLQ
    with the defects as its error message).

    :param enriched: accept the fields the enricher adds (every stage after the validator).
    """
    try:
        raw = unwrap(event)
        if isinstance(raw.get("id"), str):
            logger.set_correlation_id(raw["id"][:128])
        return validate(raw, enriched=enriched)
    except InvalidRecord as error:
        reject(error, logger, metrics)
        raise


def reject(error: Exception, logger: Any, metrics: Any) -> None:
    """Count and log a record this stage refuses, whatever the reason (once per error)."""
    error.counted = True  # type: ignore[attr-defined]
    metrics.add_metric(name="RecordsRejected", unit=MetricUnit.Count, value=1)
    problems = getattr(error, "problems", [str(error)])
    logger.warning("record rejected", extra={"problems": problems, "error": type(error).__name__})


class StageFailure(RuntimeError):
    """An unexpected error in a stage, named: ``unexpected <ErrorType>: <message>``. The prefix
    tells an operator (and ``redrive``) a crash from a contract rejection in the DLQ."""


def stage_entry(logger: Any, metrics: Any, tracer: Any = None) -> Any:
    """A stage's handler decorators, in their order: the Lambda context in the logs, the
    trace (where the stage traces), the metrics flushed, and :func:`rejections_counted`
    innermost, so that its counts are flushed with the rest."""

    def decorate(handler: Any) -> Any:
        handler = metrics.log_metrics(rejections_counted(logger, metrics)(handler))
        if tracer is not None:
            handler = tracer.capture_lambda_handler(handler)
        return logger.inject_lambda_context(handler)

    return decorate


def rejections_counted(logger: Any, metrics: Any) -> Any:
    """Decorate a handler so that every record it refuses counts in ``RecordsRejected``, and
    every error it did not expect in ``Regressions`` (``pipeline_common/regressions.py``).

    Contract violations and conflicts are counted where they are raised. An AWS error
    (``ClientError``, ``BotoCoreError``) is not a refusal: it propagates as it is, so Lambda
    retries; it is a regression unless it is transient (throttling, a conflict, a server error).
    Nor is a transient condition that outlasted the in-process retries (``StillTransient``): it
    is logged as a warning and propagates as it is, for Lambda to retry.
    Anything else is a crash: it is counted, logged, and raised again as a
    :class:`StageFailure` (``unexpected KeyError: 'x'``) that names the original error, never as
    a bare Python exception. So is a response that is not JSON.
    Put it closest to the handler, inside ``@metrics.log_metrics``, so the count is flushed.

    The release probe (:data:`PROBE_EVENT`) is answered with :data:`PROBE_ANSWER` before the
    handler runs: it is no record, and it stores, counts and forwards nothing.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from pipeline_common.retries import StillTransient

    def decorate(handler: Any) -> Any:
        @functools.wraps(handler)
        def run(event: Any, context: Any) -> Any:
            if event == PROBE_EVENT:  # the module imported and initialised: nothing to store
                return PROBE_ANSWER
            try:
                result = handler(event, context)
            except (ClientError, BotoCoreError) as error:
                if is_regression(error):
                    count_regression()
                raise
            except StillTransient as error:
                logger.warning(str(error))
                raise
            except Exception as error:
                if getattr(error, "counted", False):
                    raise
                reject(error, logger, metrics)
                count_regression()
                raise StageFailure(f"unexpected {type(error).__name__}: {error}") from error
            _require_json(result, logger, metrics)
            return result

        return run

    return decorate


def _require_json(result: Any, logger: Any, metrics: Any) -> None:
    """Fail, as a regression, on a response Lambda could not serialise (a MarshalError)."""
    try:
        json.dumps(result)
    except (TypeError, ValueError) as error:
        reject(error, logger, metrics)
        count_regression()
        raise StageFailure(f"unexpected response that is not JSON: {error}") from None
