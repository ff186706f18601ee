"""DynamoDB's transaction conflicts, enforced on the clients the handlers use.

moto runs one request at a time, so two transactions never overlap and nothing ever conflicts.
DynamoDB holds a transaction's items while it is in flight, and a request that touches a held
item fails (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html,
"Transaction conflict handling in DynamoDB"):

* a ``PutItem``, ``UpdateItem`` or ``DeleteItem`` of an item that an ongoing
  ``TransactWriteItems`` includes fails with ``TransactionConflictException``;
* a ``TransactWriteItems`` that includes an item of another ongoing transaction is cancelled:
  ``TransactionCanceledException``, with the reason ``TransactionConflict`` for that item and
  ``None`` for the others.

:class:`TransactionConflicts` enforces that rule on every client it is attached to (share one
between the clients of concurrent handlers): a transaction holds its items for ``window_seconds``
before it is applied, and releases them once DynamoDB (moto) answered. moto itself still applies
one request at a time (its backend is not made for threads): the requests are serialised after
the conflict check, so the window is the only overlap, as in DynamoDB the in-flight time is.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from botocore.exceptions import ClientError

SINGLE_ITEM_WRITES = ("PutItem", "UpdateItem", "DeleteItem")


class TransactionConflicts:
    """DynamoDB's conflict rule for concurrent requests, on botocore clients.

    :param window_seconds: how long a transaction holds its items before it is applied.
    :param key_attributes: the table's key attribute names (this stack's: ``pk`` and ``sk``).
    :param in_flight: what a transaction does while it holds its items, in place of sleeping
        ``window_seconds``: a test passes a gate's wait, so that the overlap it checks lasts
        until it has made its request however slow the machine is.
    """

    def __init__(
        self,
        window_seconds: float = 0.02,
        key_attributes: tuple[str, ...] = ("pk", "sk"),
        in_flight: Callable[[], object] | None = None,
    ) -> None:
        self.window_seconds = window_seconds
        self._in_flight = in_flight or (lambda: time.sleep(self.window_seconds))
        self.key_attributes = key_attributes
        self.counts: Counter[str] = Counter()
        self._held: Counter[tuple[str, str]] = Counter()
        self._registry = threading.Lock()
        self._backend = threading.Lock()
        self._local = threading.local()

    def enforce_on(self, client: Any) -> None:
        """Apply the rule to every DynamoDB request ``client`` makes."""
        events = client.meta.events
        # The request's parameters, kept until it is about to be sent: the rule applies after
        # every other check (a policy, an injected fault) has let the request through, so a
        # request refused on the way holds nothing.
        events.register("provide-client-params.dynamodb", self._remember)
        events.register("before-call.dynamodb", self._apply)
        # First of all after-call handlers, so that one that raises (an injected lost
        # response, a meter) cannot keep the request's hold: botocore calls the handlers of
        # ``after-call.dynamodb.*`` before those of the operation's own name, each list in its
        # order of registration, so the hold is released on both, and at most once.
        for event in ("after-call", "after-call-error"):
            events.register_first(f"{event}.dynamodb.*", self._finish)
            for operation in client.meta.service_model.operation_names:
                events.register_first(f"{event}.dynamodb.{operation}", self._finish)

    def held(self) -> int:
        """How many items ongoing transactions hold now."""
        with self._registry:
            return sum(1 for count in self._held.values() if count > 0)

    # --- the rule ---------------------------------------------------------------------------

    def _remember(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        self._local.request = (model.name, params)

    def _apply(self, **_: Any) -> None:
        operation, params = getattr(self._local, "request", (None, {}))
        self._local.request = None
        if operation == "TransactWriteItems":
            self._begin_transaction(params)
        elif operation in SINGLE_ITEM_WRITES:
            self._single_item_write(operation, params)
        self._backend.acquire()  # last: nothing after this can fail before after-call
        self._local.serialised = True

    def _begin_transaction(self, params: Mapping[str, Any]) -> None:
        keys = [self._key(operation) for operation in _operations(params)]
        with self._registry:
            conflicting = [key in self._held for key in keys]
            if any(conflicting):
                self.counts["transactions cancelled"] += 1
                raise _cancelled(conflicting)
            self._held.update(keys)
        self._local.held = keys
        self.counts["transactions"] += 1
        self._in_flight()  # its items stay held meanwhile

    def _single_item_write(self, operation: str, params: Mapping[str, Any]) -> None:
        key = self._key(params)
        with self._registry:
            if key in self._held:
                self.counts["single writes rejected"] += 1
                raise ClientError(
                    {
                        "Error": {
                            "Code": "TransactionConflictException",
                            "Message": "Transaction is ongoing for the item",
                        }
                    },
                    operation,
                )
        self.counts["single writes"] += 1

    def _finish(self, **_: Any) -> None:
        if getattr(self._local, "serialised", False):
            self._local.serialised = False
            self._backend.release()
        held = getattr(self._local, "held", None)
        if held:
            with self._registry:
                self._held.subtract(held)
                self._held += Counter()  # drop the released keys
            self._local.held = None

    def _key(self, request: Mapping[str, Any]) -> tuple[str, str]:
        values = request.get("Key") or request.get("Item") or {}
        key = {name: values[name] for name in self.key_attributes if name in values}
        return str(request["TableName"]), json.dumps(key, sort_keys=True)


def _operations(params: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for entry in params.get("TransactItems", []):
        ((_, operation),) = entry.items()
        yield operation


def _cancelled(conflicting: list[bool]) -> ClientError:
    reasons = [
        {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
        if conflict
        else {"Code": "None"}
        for conflict in conflicting
    ]
    codes = ", ".join(r["Code"] for r in reasons)
    return ClientError(
        {
            "Error": {
                "Code": "TransactionCanceledException",
                "Message": f"Transaction cancelled, please refer cancellation reasons for "
                f"specific reasons [{codes}]",
            },
            "CancellationReasons": reasons,
        },
        "TransactWriteItems",
    )
