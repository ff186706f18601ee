"""Enrichment as pure functions: where a category lives, and what an enriched record is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

UNCATEGORIZED = "uncategorized"


def category_key(record_type: str) -> dict[str, dict[str, str]]:
    """The table key of the reference item holding the category of ``record_type``."""
    return {"pk": {"S": f"CATEGORY#{record_type}"}, "sk": {"S": "META"}}


def category_from_item(item: dict[str, Any] | None) -> str:
    """The category named by a reference item, or ``uncategorized`` without a usable one."""
    value = (item or {}).get("category", {}).get("S")
    return value if isinstance(value, str) and value else UNCATEGORIZED


def enrich(record: dict[str, Any], category: str, received_at: datetime) -> dict[str, Any]:
    """Return ``record`` with ``received_at`` (UTC, ISO-8601) and ``category`` added."""
    stamp = received_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {**record, "received_at": stamp, "category": category}
