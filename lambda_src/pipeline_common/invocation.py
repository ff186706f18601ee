"""Reading a stage's input: a bare record, or the invocation record a Lambda destination sends.

When ``validator:live`` succeeds, Lambda invokes ``enricher:live`` asynchronously with an
*invocation record* (``version``, ``timestamp``, ``requestContext``, ``requestPayload``,
``responseContext``, ``responsePayload``); the previous stage's return value is in
``responsePayload``. Every stage also accepts the record itself, so any stage can be invoked
directly (replays from the DLQ, tests, back-fills).
"""

from __future__ import annotations

from typing import Any

#: Keys that every Lambda destination invocation record carries.
INVOCATION_RECORD_KEYS = frozenset({"requestContext", "requestPayload", "responsePayload"})


class MalformedEvent(ValueError):
    """The event is neither a record object nor an invocation record wrapping one."""


def unwrap(event: object) -> dict[str, Any]:
    """Return the record carried by ``event``.

    :raises MalformedEvent: when the record is not a JSON object.
    """
    payload = event
    if isinstance(event, dict) and event.keys() >= INVOCATION_RECORD_KEYS:
        payload = event["responsePayload"]
    if not isinstance(payload, dict):
        raise MalformedEvent(
            f"record: must be a JSON object (or an invocation record whose responsePayload "
            f"is one), got {type(payload).__name__}"
        )
    return payload


def is_invocation_record(event: object) -> bool:
    """True when ``event`` is a Lambda destination invocation record."""
    return isinstance(event, dict) and event.keys() >= INVOCATION_RECORD_KEYS


def received(event: object, logger: Any) -> dict[str, Any]:
    """The record ``event`` carries (see ``unwrap``), with ``logger``'s correlation id set to
    the record's id, so every log line of the invocation names the record."""
    record = unwrap(event)
    logger.set_correlation_id(record.get("id"))
    return record
