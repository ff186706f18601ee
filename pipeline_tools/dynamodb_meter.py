"""DynamoDB's capacity units for every call a client makes, by DynamoDB's own sizing rules:

* an item's size is the sum of its attribute names and values: strings and binaries by their
  UTF-8 / raw length, numbers about 1 byte per two significant digits plus 1, booleans and
  nulls 1 byte, lists and maps 3 bytes plus 1 per element plus their contents
  (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html);
* a write costs 1 unit per started KB of the *larger* of the item before and after it; a read
  of the whole item 1 unit per started 4 KB, half that when eventually consistent, whatever a
  projection returns (same page);
* a transaction costs two units for each of those, per item
  (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html,
  "Capacity management for transactions");
* a write whose condition fails still consumes write units
  (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html);
  a cancelled transaction is metered as if it had run, which is the most it can cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline_tools import runtime_source

KB = 1024
READ_UNIT_BYTES = 4 * KB


# --- DynamoDB sizing --------------------------------------------------------------------------


#: DynamoDB's item-size rule, one definition for the processor (which sizes its items to choose
#: an encoding) and the meter: ``lambda_src/pipeline_common/item_size.py``.
_SIZE = runtime_source.load("pipeline_common/item_size.py")
value_bytes = _SIZE.value_bytes
number_bytes = _SIZE.number_bytes
item_bytes = _SIZE.item_bytes


def write_units(size: int) -> int:
    """Write units for a write of ``size`` bytes (the larger of before and after): 1 per KB."""
    return max(1, math.ceil(size / KB))


def read_units(size: int, *, consistent: bool = False) -> float:
    """Read units for reading an item of ``size`` bytes: 1 per 4 KB, half if eventual."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


# --- the meter --------------------------------------------------------------------------------


#: Reads of many items, sized from their response. (A ``Scan`` is not: it is billed on every
#: item it reads, before its filter, and the response holds only what passed.)
MANY_ITEM_READS = ("Query", "BatchGetItem")


class DynamoDBMeter:
    """Sizes every DynamoDB call of a client, reading items through its own (unmetered) client."""

    def __init__(self, reader: Any, key_names: Sequence[str]) -> None:
        self.reader = reader
        self.key_names = tuple(key_names)
        self.write_units = 0.0
        self.read_units = 0.0
        self._before: list[tuple[str, dict[str, Any], int]] = []
        self._params: Mapping[str, Any] = {}

    def attach(self, client: Any) -> None:
        client.meta.events.register("provide-client-params.dynamodb.*", self._before_call)
        client.meta.events.register("after-call.dynamodb.*", self._after_call)

    def _key(self, table: str, item_or_key: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        return table, {k: item_or_key[k] for k in self.key_names if k in item_or_key}

    def _item(self, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.reader.get_item(
            TableName=table, Key=dict(key), ConsistentRead=True
        ).get("Item")
        return found

    def _targets(self, operation: str, params: Mapping[str, Any]) -> list[tuple[str, dict, str]]:
        """(table, key, kind) of each item the call touches; kind: read, write or check."""
        if operation == "TransactWriteItems":
            targets = []
            for entry in params["TransactItems"]:
                (kind, spec), *_ = entry.items()
                key = spec["Item"] if kind == "Put" else spec["Key"]
                table, k = self._key(spec["TableName"], key)
                targets.append((table, k, "check" if kind == "ConditionCheck" else "write"))
            return targets
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            key = params["Item"] if operation == "PutItem" else params["Key"]
            table, k = self._key(params["TableName"], key)
            return [(table, k, "write")]
        if operation == "GetItem":
            table, k = self._key(params["TableName"], params["Key"])
            return [(table, k, "read")]
        if operation in MANY_ITEM_READS:
            return []  # sized from what they return (_after_call)
        raise NotImplementedError(f"the meter does not size {operation} yet")

    def _before_call(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        operation = model.name
        self._params = params
        self._before = [
            (
                operation,
                {"table": t, "key": k, "kind": kind, "params": params},
                item_bytes(self._item(t, k)),
            )
            for t, k, kind in self._targets(operation, params)
        ]

    def _after_call(self, model: Any, parsed: Mapping[str, Any], **_: Any) -> None:
        if model.name in MANY_ITEM_READS:
            self.read_units += self._many_item_read_units(model.name, self._params, parsed)
        factor = 2 if model.name == "TransactWriteItems" else 1
        for index, (operation, target, before) in enumerate(self._before):
            if target["kind"] == "read":
                self.read_units += read_units(
                    before, consistent=bool(target["params"].get("ConsistentRead"))
                )
                continue
            after = item_bytes(self._item(target["table"], target["key"]))
            size = max(before, after, _request_item_bytes(operation, target["params"], index))
            self.write_units += factor * write_units(size)
        self._before = []

    def _many_item_read_units(
        self, operation: str, params: Mapping[str, Any], parsed: Mapping[str, Any]
    ) -> float:
        """Read units of a ``Query`` page (the sum of its items' full sizes, rounded
        up to 4 KB once) or of a ``BatchGetItem`` (each item rounded up on its own)
        (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html).
        A projection does not lower it: the full items are sized."""
        if operation == "BatchGetItem":
            units = 0.0
            for table, items in parsed.get("Responses", {}).items():
                consistent = bool(params["RequestItems"][table].get("ConsistentRead"))
                for item in items:
                    size = item_bytes(self._item(table, self._key(table, item)[1]))
                    units += read_units(size, consistent=consistent)
            return units
        table = params["TableName"]
        size = sum(
            item_bytes(self._item(table, self._key(table, i)[1])) for i in parsed.get("Items", [])
        )
        return read_units(size, consistent=bool(params.get("ConsistentRead")))


def _request_item_bytes(operation: str, params: Mapping[str, Any], index: int) -> int:
    """The size of the item a put would write (what a cancelled put is charged on)."""
    if operation == "TransactWriteItems":
        entry = params["TransactItems"][index]
        return item_bytes(entry.get("Put", {}).get("Item"))
    return item_bytes(params.get("Item")) if operation == "PutItem" else 0
