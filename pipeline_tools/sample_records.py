"""Sample records of a workload's size, for the meter and the benchmarks."""

from __future__ import annotations

import json
import random
from typing import Any

#: The record types of the sample, each with a reference category in the table.
SAMPLE_TYPES = ("order", "payment", "refund", "shipment")


#: Words of the sample payloads' item names.
_WORDS = [
    "cable",
    "adapter",
    "monitor",
    "stand",
    "desk",
    "lamp",
    "chair",
    "keyboard",
    "mouse",
    "dock",
    "charger",
    "headset",
    "webcam",
    "cover",
    "sleeve",
    "bag",
    "bottle",
    "notebook",
    "pen",
    "marker",
    "tape",
    "label",
    "box",
]


def sample_records(count: int, record_bytes: int, prefix: str = "meter") -> list[dict[str, Any]]:
    """``count`` valid records of about ``record_bytes`` each as compact JSON.

    The payloads look like business data (an order with line items: codes, names, numbers and
    hexadecimal ids, from a fixed seed), so that they compress about as real JSON does, not as
    a run of one repeated character would.
    """
    generator = random.Random(f"{prefix}-{count}-{record_bytes}")
    records = []
    for index in range(count):
        record: dict[str, Any] = {
            "id": f"{prefix}-{index:06d}",
            "type": SAMPLE_TYPES[index % len(SAMPLE_TYPES)],
            "source": "orders-service",
            "timestamp": "2026-11-29T09:15:00Z",
            "payload": {
                "order": f"{generator.getrandbits(64):016x}",
                "customer": f"{generator.getrandbits(48):012x}",
                "currency": "EUR",
                "items": [],
            },
        }
        _fill_items(record, record_bytes, generator)
        records.append(record)
    return records


def _fill_items(record: dict[str, Any], record_bytes: int, generator: random.Random) -> None:
    """Line items added to ``record`` while it stays within ``record_bytes``."""
    items = record["payload"]["items"]
    while True:
        item = {
            "sku": f"SKU-{generator.randrange(10**6):06d}",
            "name": " ".join(generator.choice(_WORDS) for _ in range(3)),
            "qty": generator.randrange(1, 10),
            "price": round(generator.uniform(1, 500), 2),
        }
        grown = {**record, "payload": {**record["payload"], "items": [*items, item]}}
        if _json_bytes(grown) > record_bytes:
            return
        items.append(item)


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())
