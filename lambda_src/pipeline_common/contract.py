"""The record contract, one function every stage enforces: ``validate(raw) -> record``.

A record is a JSON object with exactly these fields:

==============  ==============================================================
``id``          string, 1-128 characters of ``A-Z a-z 0-9 . _ : -``
``type``        string, 1-64 characters
``source``      string, 1-128 characters
``timestamp``   ISO-8601 date-time with a time zone, within years 1-9999 once in UTC;
                normalised to UTC (``2026-11-29T09:15:00Z``)
``payload``     JSON object, at most 32 KB (32,768 bytes) as compact UTF-8 JSON, nested at most
                32 levels
==============  ==============================================================

After the enricher, a record may also carry ``received_at`` (a date-time like ``timestamp``) and
``category`` (string, 1-64 characters); a stage after the validator accepts them
(``enriched=True``), the validator does not.

Everywhere in the record, keys included: every string must be valid UTF-8 (a lone surrogate such
as ``"\\ud800"`` cannot be stored or sent on) and every number finite (``1e400`` and ``NaN`` are
not JSON). Unknown top-level fields are rejected. Every defect is reported at once, each naming
its field, so a producer can fix a record in one round trip.

The validator, the enricher and the processor all call ``validate``: a record replayed straight
into a later stage is held to exactly the contract a record entering the validator is.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

FIELDS = ("id", "type", "source", "timestamp", "payload")
ENRICHED_FIELDS = ("received_at", "category")
MAX_PAYLOAD_BYTES = 32 * 1024
MAX_DEPTH = 32
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_LENGTHS = {"type": 64, "source": 128, "category": 64}


class InvalidRecord(ValueError):
    """The record breaks the contract. ``problems`` lists each defect as ``field: what``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def validate(raw: object, *, enriched: bool = False) -> dict[str, Any]:
    """Return the normalised record, or raise :class:`InvalidRecord` naming every defect.

    :param enriched: accept (and check) the fields the enricher adds.
    """
    if not isinstance(raw, dict):
        raise InvalidRecord([f"record: must be a JSON object, got {type(raw).__name__}"])
    allowed = FIELDS + ENRICHED_FIELDS if enriched else FIELDS
    problems = _text_and_numbers("record", raw, 0)
    problems += [
        f"{_name(name)}: unknown field (allowed: {', '.join(allowed)})"
        for name in raw
        if name not in allowed
    ]
    problems += [f"{name}: required field is missing" for name in FIELDS if name not in raw]
    record = dict(raw)
    problems += _field_problems(raw, allowed, record)
    problems += _payload_problems(raw, problems)
    if problems:
        raise InvalidRecord(problems)
    return record


def _field_problems(
    raw: dict[str, Any], allowed: tuple[str, ...], record: dict[str, Any]
) -> list[str]:
    """The id, the bounded strings and the times (normalised into ``record``)."""
    problems = []
    if "id" in raw and not (isinstance(raw["id"], str) and _ID.match(raw["id"])):
        problems.append(
            f"id: must be 1-128 characters of A-Z a-z 0-9 . _ : -, got {_show(raw['id'])}"
        )
    for name, limit in _LENGTHS.items():
        if name in raw and name in allowed:
            value = raw[name]
            if not (isinstance(value, str) and 1 <= len(value) <= limit):
                problems.append(
                    f"{name}: must be a string of 1-{limit} characters, got {_show(value)}"
                )
    for name in ("timestamp", "received_at"):
        if name in raw and name in allowed:
            record[name], problem = _utc(name, raw[name])
            if problem:
                problems.append(problem)
    return problems


def _payload_problems(raw: dict[str, Any], found: list[str]) -> list[str]:
    """An object, and (unless its text already failed) at most ``MAX_PAYLOAD_BYTES``."""
    if "payload" not in raw:
        return []
    payload = raw["payload"]
    if not isinstance(payload, dict):
        return [f"payload: must be a JSON object, got {type(payload).__name__}"]
    if any(p.startswith("payload") for p in found):
        return []
    size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_PAYLOAD_BYTES:
        return [f"payload: must be at most {MAX_PAYLOAD_BYTES} bytes as JSON, got {size}"]
    return []


def canonical(record: dict[str, Any]) -> str:
    """The record's contract fields as compact, key-sorted JSON: equal content, equal text.

    Fields added after validation (``received_at``, ``category``) are left out: two deliveries
    of one record are enriched at different times, and are still the same record.
    """
    return json.dumps(
        {name: record[name] for name in FIELDS},
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
        allow_nan=False,
    )


def _utc(name: str, value: object) -> tuple[str | None, str | None]:
    if not isinstance(value, str):
        return None, f"{name}: must be an ISO-8601 string, got {type(value).__name__}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None, f"{name}: not an ISO-8601 date-time: {_show(value)}"
    if parsed.tzinfo is None:
        return None, f"{name}: must include a time zone (e.g. Z or +02:00): {_show(value)}"
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:
        return None, f"{name}: out of range once converted to UTC (years 1-9999): {_show(value)}"
    return utc.isoformat().replace("+00:00", "Z"), None


def _text_and_numbers(where: str, value: object, depth: int) -> list[str]:
    """Lone surrogates and non-finite numbers anywhere under ``value``, and nesting too deep."""
    if isinstance(value, str):
        return [] if _is_utf8(value) else [f"{where}: not valid UTF-8 (a lone surrogate)"]
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{where}: must be a finite number, got {value!r}"]
    if not isinstance(value, dict | list):
        return []
    if depth >= MAX_DEPTH:
        return [f"{where}: nested deeper than {MAX_DEPTH} levels"]
    problems: list[str] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(key, str) and not _is_utf8(key):
            problems.append(f"{where}: a key is not valid UTF-8 (a lone surrogate)")
            continue
        path = f"{where}.{key}" if isinstance(value, dict) else f"{where}[{key}]"
        problems += _text_and_numbers(path.removeprefix("record."), item, depth + 1)
    return problems


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _name(name: object) -> str:
    return name if isinstance(name, str) and _is_utf8(name) else repr(name)


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
