"""DynamoDB's transaction conflict rule, which moto does not enforce: a transaction holds its
items while in flight; a single-item write of a held item fails with
TransactionConflictException, and a transaction that includes one is cancelled with the reason
TransactionConflict for that item
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html,
"Transaction conflict handling in DynamoDB")."""

from __future__ import annotations

import threading
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from pipeline_tools.runner.conflicts import TransactionConflicts
from pipeline_tools.runner.provision import create_table

TABLE = "t"


def item(pk: str, **more):
    return {"pk": {"S": pk}, "sk": {"S": "A"}, **more}


def put(pk: str):
    return {"Put": {"TableName": TABLE, "Item": item(pk)}}


@pytest.fixture
def clients():
    """The rule, and two clients under it. A transaction stays in flight until the test calls
    ``rule.land()``: a timed window can close before a slow machine sends the second request."""
    with mock_aws():
        gate = threading.Event()
        rule = TransactionConflicts(in_flight=lambda: gate.wait(timeout=30))
        rule.land = gate.set  # type: ignore[attr-defined]
        rule.threads = []  # type: ignore[attr-defined]
        made = []
        for _ in range(2):
            client = boto3.client("dynamodb", region_name="us-east-1")
            rule.enforce_on(client)
            made.append(client)
        create_table(made[0], TABLE)
        yield rule, made
        # A test that failed before landing its transaction: land it inside the mock, or its
        # thread would send the request to AWS's endpoint once the mock is gone.
        gate.set()
        for thread in rule.threads:
            thread.join()


def in_flight(rule, client, items):
    """Start a transaction in another thread; return once it holds its items."""
    thread = threading.Thread(target=client.transact_write_items, kwargs={"TransactItems": items})
    thread.start()
    rule.threads.append(thread)
    deadline = time.monotonic() + 5
    while not rule.held() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert rule.held(), "the transaction did not start"
    return thread


def test_a_single_item_write_of_a_held_item_fails_with_transaction_conflict(clients):
    rule, (first, second) = clients
    thread = in_flight(rule, first, [put("hot"), put("a")])
    with pytest.raises(ClientError) as raised:
        second.put_item(TableName=TABLE, Item=item("hot"))
    assert raised.value.response["Error"]["Code"] == "TransactionConflictException"
    second.put_item(TableName=TABLE, Item=item("other"))  # an item no one holds
    rule.land()
    thread.join()
    second.put_item(TableName=TABLE, Item=item("hot", n={"N": "2"}))  # released
    assert rule.counts["single writes rejected"] == 1


def test_a_transaction_that_includes_a_held_item_is_cancelled_naming_it(clients):
    rule, (first, second) = clients
    thread = in_flight(rule, first, [put("hot")])
    with pytest.raises(ClientError) as raised:
        second.transact_write_items(TransactItems=[put("b"), put("hot")])
    response = raised.value.response
    assert response["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in response["CancellationReasons"]] == ["None", "TransactionConflict"]
    rule.land()
    thread.join()
    stored = second.scan(TableName=TABLE)["Items"]
    assert [i["pk"]["S"] for i in stored] == ["hot"], "the cancelled transaction wrote nothing"
    assert rule.counts["transactions cancelled"] == 1


def test_reads_and_sequential_requests_never_conflict(clients):
    rule, (first, second) = clients
    thread = in_flight(rule, first, [put("hot")])
    second.get_item(TableName=TABLE, Key=item("hot"))  # a read is not a conflicting request
    rule.land()
    thread.join()
    for _ in range(3):
        first.transact_write_items(TransactItems=[put("hot")])
        second.transact_write_items(TransactItems=[put("hot")])
    assert rule.counts["transactions cancelled"] == 0


def test_a_failing_after_call_handler_on_any_operation_releases_the_requests_hold(clients):
    """A handler of ``after-call.dynamodb.*`` that raises (a meter, an injected lost response)
    runs before the operation's own handlers: the rule must release the backend there too, or
    every other processor waits for ever (the storage bench once hung so)."""
    _, (first, second) = clients

    def fails(**_):
        raise RuntimeError("a handler after the call failed")

    first.meta.events.register("after-call.dynamodb.*", fails)
    with pytest.raises(RuntimeError, match="a handler after the call failed"):
        first.get_item(TableName=TABLE, Key=item("a"))
    answered = []
    thread = threading.Thread(
        target=lambda: answered.append(second.get_item(TableName=TABLE, Key=item("a"))),
        daemon=True,
    )
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the other processor waits on a hold nobody releases"
    assert answered and "Item" not in answered[0]
