"""The record contract, as a pure function: ``validate(raw) -> record``.

A record is a JSON object with exactly these fields:

==========  ==============================================================
``id``      string, 1-128 characters of ``A-Z a-z 0-9 . _ : -``
``type``    string, 1-64 characters
``source``  string, 1-128 characters
``timestamp`` ISO-8601 date-time with a time zone; normalised to UTC (``Z``)
``payload`` JSON object, at most 32 KB (32,768 bytes) as compact UTF-8 JSON
==========  ==============================================================

Unknown top-level fields are rejected. Every defect is reported at once, each naming its
field, so a producer can fix a record in one round trip.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

FIELDS = ("id", "type", "source", "timestamp", "payload")
MAX_PAYLOAD_BYTES = 32 * 1024
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class InvalidRecord(ValueError):
    """The record breaks the contract. ``problems`` lists each defect as ``field: what``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def validate(raw: object) -> dict[str, Any]:
    """Return the normalised record, or raise :class:`InvalidRecord` naming every defect."""
    if not isinstance(raw, dict):
        raise InvalidRecord([f"record: must be a JSON object, got {type(raw).__name__}"])
    problems = [
        f"{name}: unknown field (allowed: {', '.join(FIELDS)})"
        for name in raw
        if name not in FIELDS
    ]
    problems += [f"{name}: required field is missing" for name in FIELDS if name not in raw]

    if "id" in raw and not (isinstance(raw["id"], str) and _ID.match(raw["id"])):
        problems.append(
            f"id: must be 1-128 characters of A-Z a-z 0-9 . _ : -, got {_show(raw['id'])}"
        )
    for name, limit in (("type", 64), ("source", 128)):
        if name in raw and not (isinstance(raw[name], str) and 1 <= len(raw[name]) <= limit):
            problems.append(
                f"{name}: must be a string of 1-{limit} characters, got {_show(raw[name])}"
            )

    timestamp = None
    if "timestamp" in raw:
        timestamp, problem = _parse_timestamp(raw["timestamp"])
        if problem:
            problems.append(problem)

    if "payload" in raw:
        payload = raw["payload"]
        if not isinstance(payload, dict):
            problems.append(f"payload: must be a JSON object, got {type(payload).__name__}")
        else:
            size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
            if size > MAX_PAYLOAD_BYTES:
                problems.append(
                    f"payload: must be at most {MAX_PAYLOAD_BYTES} bytes as JSON, got {size}"
                )

    if problems:
        raise InvalidRecord(problems)
    return {**raw, "timestamp": timestamp}


def _parse_timestamp(value: object) -> tuple[str | None, str | None]:
    if not isinstance(value, str):
        return None, f"timestamp: must be an ISO-8601 string, got {type(value).__name__}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None, f"timestamp: not an ISO-8601 date-time: {_show(value)}"
    if parsed.tzinfo is None:
        return None, f"timestamp: must include a time zone (e.g. Z or +02:00): {_show(value)}"
    utc = parsed.astimezone(UTC)
    return utc.isoformat().replace("+00:00", "Z"), None


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
