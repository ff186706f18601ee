"""Transient AWS conditions, retried in-process within the invocation's time.

A throttled request or a transaction conflict is settled by trying again a moment later. Left to
Lambda, each one spends an asynchronous retry (about a minute, then two, later) and, after the
last, lands a valid record in the DLQ. So the stages retry them here, with exponential backoff
and full jitter, as DynamoDB's developer guide asks ("Error retries and exponential backoff",
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html#Programming.Errors.RetryAndBackoff;
the SDKs' algorithm, https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html).

The stage's clients are made with botocore's retries off (:func:`no_sdk_retries`), so that this
is the one place that retries and its budget is known: at most ``attempts`` tries, and never a
wait that would end after the deadline (the invocation's remaining time, less a reserve for the
rest of the handler). What is still failing then raises :class:`StillTransient`, one line
naming the call, the attempts and the last error, and Lambda's own retry takes over.

Transient means what retrying can settle: throttling (the codes botocore's retry handler treats
as throttling, ``botocore/data/_retry.json``), DynamoDB's transaction conflicts
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html), an
AWS server error (HTTP 5xx), and connection errors and timeouts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

T = TypeVar("T")


def dynamodb_client() -> Any:
    """The stage's DynamoDB client: one attempt per call (:func:`no_sdk_retries`)."""
    import boto3

    return boto3.client("dynamodb", config=no_sdk_retries())


def no_sdk_retries() -> Any:
    """A client ``Config`` of one attempt per call: :class:`RetryPolicy` does the retrying.

    botocore's ``total_max_attempts`` counts attempts, the first included (1: no retry);
    ``max_attempts`` counts *retries*, so ``max_attempts: 1`` would still send a throttled
    request twice (botocore's ``Config`` docstring, "retries").
    (Imported here, not at the top: the validator, which makes no client, never loads it.)"""
    from botocore.config import Config

    return Config(retries={"mode": "standard", "total_max_attempts": 1})


#: AWS error codes of throttling, as botocore's retry handler lists them (``_retry.json``),
#: and DynamoDB's transaction conflict.
TRANSIENT_ERROR_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "TransactionConflictException",
    }
)
#: Cancellation reasons of ``TransactWriteItems`` that a retry settles.
TRANSIENT_CANCELLATION_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)


class StillTransient(RuntimeError):
    """A transient condition outlasted the in-process retries; Lambda retries the invocation."""


def is_transient(error: BaseException) -> bool:
    """Whether trying ``error``'s call again later can succeed."""
    if isinstance(error, ConnectionError | HTTPClientError):
        return True
    if not isinstance(error, ClientError):
        return False
    response = error.response
    if response.get("Error", {}).get("Code", "") in TRANSIENT_ERROR_CODES:
        return True
    if response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400) >= 500:
        return True
    return bool(_cancellation_reasons(error) & TRANSIENT_CANCELLATION_REASONS)


def _cancellation_reasons(error: ClientError) -> set[str]:
    if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return set()
    return {str(r.get("Code")) for r in error.response.get("CancellationReasons") or []}


def error_code(error: BaseException) -> str:
    """The AWS error code of ``error``, or its class name."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code") or type(error).__name__)
    return type(error).__name__


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries; before try ``n`` (from 1) a wait drawn uniformly from 0 to
    ``min(cap, base * 2**n)`` seconds ("full jitter"); no wait that ends past the deadline."""

    attempts: int = 10
    base_seconds: float = 0.05
    cap_seconds: float = 2.0
    #: Kept free of retries at the end of the invocation, for the rest of the handler.
    reserve_seconds: float = 1.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    jitter: Callable[[float, float], float] = field(default=random.uniform, compare=False)

    def deadline(self, context: Any) -> float:
        """The clock time by which retries stop, from a Lambda context's remaining time."""
        return self.clock() + context.get_remaining_time_in_millis() / 1000 - self.reserve_seconds

    def call(self, deadline: float, name: str, call: Callable[..., T], **params: Any) -> T:
        """``call(**params)``, retried while it fails transiently.

        :raises StillTransient: when it still fails transiently after the last try or at the
            deadline.
        """
        started = self.clock()
        for attempt in range(1, self.attempts + 1):
            try:
                return call(**params)
            except Exception as error:
                if not is_transient(error):
                    raise
                wait = self.jitter(0.0, min(self.cap_seconds, self.base_seconds * 2**attempt))
                if attempt == self.attempts or self.clock() + wait > deadline:
                    raise StillTransient(
                        f"{name}: {error_code(error)} on each of {attempt} attempts over "
                        f"{self.clock() - started:.1f} s (retried in-process up to "
                        f"{self.attempts} attempts within the invocation's time); Lambda "
                        f"retries the invocation. Last error: {error}"
                    ) from error
                self.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")
