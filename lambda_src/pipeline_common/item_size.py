"""DynamoDB's item size, by its documented rule: each attribute's name plus its value.

Strings and binaries count their bytes; a number about one byte per two significant digits
(leading and trailing zeros trimmed) plus one; a list or map 3 bytes plus one an element (and
its name, in a map); a boolean or null one byte. A write consumes one unit per started KB of the
item (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html).
The processor sizes its items with it, and the cost report's meter meters every call with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any


def value_bytes(value: Mapping[str, Any]) -> int:
    """The size DynamoDB gives one attribute value (``{"S": ...}``, ``{"N": ...}``, ...)."""
    (kind, inner), *_ = value.items()
    if kind not in _VALUE_BYTES:
        raise ValueError(f"unknown DynamoDB type {kind!r}")
    return _VALUE_BYTES[kind](inner)


def _binary_bytes(inner: Any) -> int:
    return len(inner) if isinstance(inner, bytes | bytearray) else len(str(inner).encode())


#: Each DynamoDB type's size rule: strings and binaries by their bytes, numbers by their
#: significant digits, a list or map 3 bytes plus 1 an element (and its name, in a map).
_VALUE_BYTES: dict[str, Callable[[Any], int]] = {
    "S": lambda inner: len(str(inner).encode()),
    "B": _binary_bytes,
    "N": lambda inner: number_bytes(str(inner)),
    "BOOL": lambda inner: 1,
    "NULL": lambda inner: 1,
    "SS": lambda inner: sum(len(s.encode()) for s in inner),
    "NS": lambda inner: sum(number_bytes(n) for n in inner),
    "BS": lambda inner: sum(len(b) for b in inner),
    "L": lambda inner: 3 + sum(1 + value_bytes(v) for v in inner),
    "M": lambda inner: 3 + sum(1 + len(k.encode()) + value_bytes(v) for k, v in inner.items()),
}


def number_bytes(text: str) -> int:
    """1 byte per two significant digits (leading and trailing zeros trimmed), plus 1."""
    digits = Decimal(text).normalize().as_tuple().digits
    significant = len(digits) if any(digits) else 1
    return math.ceil(significant / 2) + 1


def item_bytes(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """The size of an item: every attribute name plus its value."""
    return sum(len(name.encode()) + value_bytes(v) for name, v in (item or {}).items())


def write_units(item: Mapping[str, Mapping[str, Any]]) -> int:
    """Write units of putting ``item``: one per started KB of its size."""
    return math.ceil(item_bytes(item) / 1024)
