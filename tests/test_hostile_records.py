"""Hostile records, each sent through the chain *and* straight into each later stage.

Every case is refused naming its field, or stored as valid, strict JSON; nothing crashes with an
unnamed Python exception, and every refusal counts in ``RecordsRejected``. The deployed code runs
on moto, wired as the dev template wires it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import (
    assembly_of,
    pipeline_on_moto,
    queued_dead_letters,
    sample_record,
    stored_and_counted,
)

base = sample_record


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"n": value}
    return value


# (name, the event, words the refusal must contain; None: it is valid and stored)
CASES: list[tuple[str, Callable[[], Any], list[str] | None]] = [
    (
        "year 1 before UTC",
        lambda: base(timestamp="0001-01-01T00:30:00+01:00"),
        ["timestamp", "out of range"],
    ),
    (
        "year 9999 after UTC",
        lambda: base(timestamp="9999-12-31T23:30:00-01:00"),
        ["timestamp", "out of range"],
    ),
    ("lone surrogate in payload", lambda: base(payload={"s": "\ud800"}), ["payload.s", "UTF-8"]),
    ("lone surrogate in source", lambda: base(source="web\udfff"), ["source", "UTF-8"]),
    ("lone surrogate in a key", lambda: base(payload={"\udc00": 1}), ["payload", "key", "UTF-8"]),
    (
        "lone surrogate deep",
        lambda: base(payload={"a": [{"b": "\ud83d"}]}),
        ["payload.a[0].b", "UTF-8"],
    ),
    ("infinite number", lambda: base(payload={"f": math.inf}), ["payload.f", "finite"]),
    ("NaN", lambda: base(payload={"f": math.nan}), ["payload.f", "finite"]),
    (
        "negative infinity in a list",
        lambda: base(payload={"l": [1, -math.inf]}),
        ["payload.l[1]", "finite"],
    ),
    ("id with a space", lambda: base(id="has space"), ["id", "'has space'"]),
    ("id with non-ASCII", lambda: base(id="caf\u00e9"), ["id", "A-Z a-z 0-9"]),
    ("id too long", lambda: base(id="a" * 129), ["id", "1-128"]),
    ("id a number", lambda: base(id=17), ["id", "got 17"]),
    ("garbage timestamp", lambda: base(timestamp="garbage"), ["timestamp", "'garbage'"]),
    ("naive timestamp", lambda: base(timestamp="2026-11-29T10:15:00"), ["timestamp", "time zone"]),
    ("numeric timestamp", lambda: base(timestamp=1764407700), ["timestamp", "got int"]),
    ("extra field", lambda: base(priority="high"), ["priority", "unknown field"]),
    ("missing type", lambda: base(type=...), ["type", "missing"]),
    ("empty type", lambda: base(type=""), ["type", "1-64"]),
    ("source a list", lambda: base(source=["web"]), ["source", "1-128"]),
    ("payload a list", lambda: base(payload=[1, 2]), ["payload", "got list"]),
    ("payload too large", lambda: base(payload={"blob": "x" * 40000}), ["payload", "32768 bytes"]),
    ("payload nested 40 deep", lambda: base(payload=nested(40)), ["nested deeper than 32"]),
    ("not an object: list", lambda: [base()], ["record", "JSON object", "list"]),
    ("not an object: string", lambda: "hello", ["record", "JSON object", "str"]),
    ("not an object: null", lambda: None, ["record", "JSON object", "NoneType"]),
    ("not an object: number", lambda: 42, ["record", "JSON object", "int"]),
    (
        "invocation record wrapping a string",
        lambda: {"requestContext": {}, "requestPayload": {}, "responsePayload": "x"},
        ["record", "JSON object", "str"],
    ),
    ("valid, +01:00 past midnight", lambda: base(timestamp="2026-11-30T00:30:00+01:00"), None),
    (
        "valid, unicode and big numbers",
        lambda: base(payload={"emoji": "\U0001f600", "n": 10**30}),
        None,
    ),
]


@pytest.fixture(scope="module")
def assembly(stacks):
    return assembly_of(stacks["dev"])


def refusal(outcome_error: str, words: list[str]) -> None:
    for word in words:
        assert word in outcome_error, f"{word!r} missing from: {outcome_error}"


def strictly_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(("name", "make", "words"), CASES, ids=[c[0] for c in CASES])
def test_a_hostile_record_is_refused_naming_its_field_at_every_entry(
    assembly, capsys, name, make, words
):
    with pipeline_on_moto(assembly) as pipeline:
        # Through the chain, entering at validator:live, as the JSON a producer would send:
        # an infinity as 1e400 (valid JSON, parsed to inf), NaN as NaN (not JSON at all).
        wire = json.dumps(make()).replace("Infinity", "1e400").encode()
        try:
            request = pipeline.invoke_async(wire)
        except ValueError as refused_at_invoke:
            outcome = None
            invoke_error = str(refused_at_invoke)
        else:
            pipeline.drain()
            outcome = pipeline.outcomes[request]
        # Straight into each later stage (a replay), as the record itself.
        direct = {}
        for stage in ("enricher", "processor"):
            try:
                direct[stage] = pipeline.functions[stage].invoke(make(), f"direct-{stage}")
            except Exception as error:  # the stage's own InvalidRecord class
                direct[stage] = error
        client = pipeline.session.client("dynamodb")
        table = pipeline.specs["processor"].environment["TABLE_NAME"]
        items = client.scan(TableName=table)["Items"]
        _, counters = stored_and_counted(client, table)
    emitted = capsys.readouterr().out

    if words is None:
        assert outcome is not None and outcome.status == "completed", outcome
        assert all(not isinstance(r, Exception) for r in direct.values()), direct
        (stored,) = [i for i in items if i["pk"]["S"].startswith("RECORD#")]
        sent = make()
        assert strictly_json(stored["payload"]["S"]) == sent["payload"]
        day = datetime.fromisoformat(sent["timestamp"]).astimezone(UTC).date().isoformat()
        assert counters == {(sent["type"], day): 1}, "stored once, counted once"
        return

    if outcome is None:  # Lambda's Invoke refuses a payload that is not JSON
        assert "InvalidRequestContentException" in invoke_error and "NaN" in invoke_error
    else:
        assert outcome.status == "dead_lettered", outcome
        refusal(outcome.error or "", words)
    for stage, result in direct.items():
        assert isinstance(result, Exception), f"{stage} accepted {name}: {result}"
        assert type(result).__name__ in ("InvalidRecord", "MalformedEvent"), repr(result)
        refusal(str(result), words)
    assert not items, "a refused record stores nothing"
    # Each stage that saw the record counted its refusal once.
    stages = 2 if outcome is None else 3
    assert emitted.count('"RecordsRejected":[1.0]') == stages, emitted[-2000:]


def test_there_are_at_least_25_hostile_cases():
    assert sum(1 for _, _, words in CASES if words is not None) >= 25


def test_a_crash_is_named_and_counted_an_aws_error_is_left_to_lambdas_retry(
    assembly, capsys, monkeypatch
):
    from botocore.exceptions import ClientError

    with pipeline_on_moto(assembly) as pipeline:
        enricher = pipeline.functions["enricher"]

        def broken(record, category, received_at):
            raise KeyError("received_at")

        monkeypatch.setattr(enricher.module, "enrich", broken)
        with pytest.raises(Exception) as caught:
            enricher.invoke(base(), "crash")
        assert type(caught.value).__name__ == "StageFailure"
        assert str(caught.value) == "unexpected KeyError: 'received_at'"
        assert capsys.readouterr().out.count('"RecordsRejected":[1.0]') == 1

        def throttled(**_):
            raise ClientError({"Error": {"Code": "ThrottlingException"}}, "GetItem")

        monkeypatch.setattr(enricher.module, "enrich", lambda r, c, t: r)
        monkeypatch.setattr(enricher.module.dynamodb, "get_item", throttled)
        with pytest.raises(Exception, match="ThrottlingException on each of 10 attempts") as late:
            enricher.invoke(base(), "throttled")
        assert type(late.value).__name__ == "StillTransient"
        assert '"RecordsRejected"' not in capsys.readouterr().out


#: On the batched path a message body that is a JSON array is a pack of records (the
#: producer's and the stages' own format, ``pipeline_common/batch.py``): a list holding one valid
#: record is that record, stored.
PACKED_ON_THE_BATCHED_PATH = {"not an object: list"}


@pytest.mark.parametrize(("name", "make", "words"), CASES, ids=[c[0] for c in CASES])
def test_a_hostile_record_on_the_batched_path_is_refused_alone_naming_its_field(
    batched_assembly, capsys, name, make, words
):
    """The same cases as a message body in the validator's queue, between two valid records:
    the hostile one reaches the DLQ alone with its reason (or is stored, when valid), and its
    batch-mates are stored, each once."""
    from tests.conftest import queue_pipeline_on_moto

    mates = [base(id="mate-1"), base(id="mate-2")]
    wire = json.dumps(make()).replace("Infinity", "1e400")
    with queue_pipeline_on_moto(batched_assembly) as runner:
        runner.sqs.send_message_batch(
            QueueUrl=runner.mappings["validator"].queue_url,
            Entries=[
                {"Id": str(i), "MessageBody": body}
                for i, body in enumerate([json.dumps(mates[0]), wire, json.dumps(mates[1])])
            ],
        )
        runner.run()
        client = runner.session.client("dynamodb")
        stored, counters = stored_and_counted(client, runner.table)
        letters = queued_dead_letters(runner)
    emitted = capsys.readouterr().out
    ids = sorted(i["id"]["S"] for i in stored)
    if words is None or name in PACKED_ON_THE_BATCHED_PATH:
        assert letters == []
        assert len(ids) == 3 and {"mate-1", "mate-2"} <= set(ids)
        assert sum(counters.values()) == 3  # each counted once
        return
    assert ids == ["mate-1", "mate-2"], "the batch-mates go on"
    (letter,) = letters
    refusal(letter["MessageAttributes"]["ErrorMessage"]["StringValue"], words)
    assert letter["MessageAttributes"]["FailedStage"]["StringValue"] == "validator"
    assert emitted.count('"RecordsRejected":[1.0]') == 1, emitted[-2000:]
