"""Fault injection at the boto3 client, through botocore's own event hooks.

``before-call`` hooks fail a call before it reaches DynamoDB (nothing is written); ``after-call``
hooks fail it after DynamoDB answered (the write happened, the caller never hears of it), the
way a lost response or a timeout looks to a handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError

THROTTLED = "ProvisionedThroughputExceededException"


def throttling_error(operation: str) -> ClientError:
    return ClientError(
        {
            "Error": {
                "Code": THROTTLED,
                "Message": "Rate of requests exceeds the allowed throughput.",
            }
        },
        operation,
    )


def fail_before(client: Any, operation: str, should_fail: Callable[[dict[str, Any]], bool]) -> None:
    """Raise a throttling error for calls of ``operation`` whose params match ``should_fail``."""

    def hook(params: dict[str, Any], **_: Any) -> None:
        if should_fail(params):
            raise throttling_error(operation)

    client.meta.events.register(f"provide-client-params.dynamodb.{operation}", hook)


def fail_after(client: Any, operation: str, should_fail: Callable[[dict[str, Any]], bool]) -> None:
    """Let matching calls of ``operation`` succeed at DynamoDB, then raise a read timeout."""
    pending: list[dict[str, Any]] = []

    def remember(params: dict[str, Any], **_: Any) -> None:
        pending.append(params)

    def hook(**_: Any) -> None:
        params = pending.pop()
        if should_fail(params):
            raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    client.meta.events.register(f"provide-client-params.dynamodb.{operation}", remember)
    client.meta.events.register(f"after-call.dynamodb.{operation}", hook)


def item_level_transaction_rollback(monkeypatch: Any) -> None:
    """A faster DynamoDB backend for the fault run only: moto snapshots *whole tables* before
    every ``TransactWriteItems`` to roll back a cancelled one, so a run's cost grows with the
    square of the table (about 75 % of the fault run, profiled). This snapshots the items the
    transaction touches instead, and restores them if it is cancelled: the same all-or-nothing
    result, at a cost that does not grow with the table."""
    import copy
    import types

    import moto.dynamodb.models as models

    original = models.DynamoDBBackend.transact_write_items
    no_copy = types.SimpleNamespace(deepcopy=lambda value, memo=None: value)

    def key_of(backend: Any, operation: dict[str, Any]) -> dict[str, Any]:
        if "Key" in operation:
            return dict(operation["Key"])
        table = backend.get_table(operation["TableName"])
        names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
        return {name: operation["Item"][name] for name in names}

    def transact(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        touched = []
        for entry in transact_items:
            ((_, operation),) = entry.items()
            key = key_of(self, operation)
            before = self.get_item(operation["TableName"], key)
            touched.append((operation["TableName"], key, copy.deepcopy(before)))
        monkeypatch.setattr(models, "copy", no_copy)
        try:
            return original(self, transact_items)
        except Exception:
            for table_name, key, before in touched:
                if before is None:
                    self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, before.to_json()["Attributes"], overwrite=True)
            raise
        finally:
            monkeypatch.setattr(models, "copy", copy)

    monkeypatch.setattr(models.DynamoDBBackend, "transact_write_items", transact)
