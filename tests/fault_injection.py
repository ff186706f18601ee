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
