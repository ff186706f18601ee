"""The in-process retry policy is the only retry budget: one HTTP request per attempt."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from pipeline_common.retries import RetryPolicy, StillTransient, no_sdk_retries

THROTTLED = (
    b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException",'
    b'"message":"Rate of requests exceeds the allowed throughput."}'
)


class _Raw:
    """The raw body botocore's parser reads from an HTTP response."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def throttled_client(sent: list[str]) -> Any:
    """A DynamoDB client of the stages' ``Config`` whose every request is answered with HTTP
    400 ``ThrottlingException``, counting the requests botocore actually sends."""
    client = boto3.client("dynamodb", region_name="us-east-1", config=no_sdk_retries())

    def answer(request: Any, **_: Any) -> AWSResponse:
        sent.append(request.headers.get("X-Amz-Target", b"").decode())
        return AWSResponse(request.url, 400, {}, _Raw(THROTTLED))  # type: ignore[arg-type]

    client.meta.events.register("before-send.dynamodb", answer)
    return client


def test_the_stages_clients_send_one_request_per_call():
    """botocore's ``total_max_attempts`` counts attempts with the first included, while
    ``max_attempts`` counts retries (botocore ``Config`` docstring, "retries"): with
    ``max_attempts: 1`` one throttled ``GetItem`` was two HTTP requests."""
    sent: list[str] = []
    client = throttled_client(sent)
    with pytest.raises(client.exceptions.ClientError, match="ThrottlingException"):
        client.get_item(TableName="t", Key={"pk": {"S": "a"}, "sk": {"S": "b"}})
    assert sent == ["DynamoDB_20120810.GetItem"]


def test_requests_per_throttled_call_equal_the_policys_attempts():
    sent: list[str] = []
    client = throttled_client(sent)
    attempts = 4
    policy = RetryPolicy(attempts=attempts, sleep=lambda seconds: None)
    with pytest.raises(StillTransient, match=f"each of {attempts} attempts"):
        policy.call(
            float("inf"),
            "GetItem",
            client.get_item,
            TableName="t",
            Key={"pk": {"S": "a"}, "sk": {"S": "b"}},
        )
    assert len(sent) == attempts
