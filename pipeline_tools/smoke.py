"""``smoke``: known records through a deployed stack, and a check of where each one ended.

The pipeline's smoke step runs it after staging deploys (``pipeline --stack
DataPipeline-staging smoke``), and the suite runs it against the local emulator
(``pipeline local smoke``). It sends valid and invalid records under ids of this run only, with
the operator command's ``send``, then waits until:

* every valid record is stored (a strongly consistent ``GetItem`` of its key, the processor's
  own layout: ``lambda_src/processor/keys.py``), and
* the DLQ holds exactly this run's invalid records, each a validator rejection.

It then deletes its own rejections from the DLQ, so the DLQ alarm clears, and leaves every other
message alone. Any miss within the timeout is a failure, named in one line.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from pipeline_tools import runtime_source
from pipeline_tools.dead_letters import receive_all, release
from pipeline_tools.operations import send
from pipeline_tools.pipeline import Invoker, Pipeline
from serverless_stack.stages import STORING_STAGE

#: How long records may take end to end, and how often to look.
TIMEOUT_SECONDS = 180.0
POLL_SECONDS = 5.0
#: The invalid records and the defect each must be rejected for.
INVALID = {"bad-timestamp": ("timestamp", "not a date"), "bad-payload": ("payload", [1, 2])}
VALID_TYPES = ("order", "payment", "refund")


@dataclass(frozen=True)
class SmokeResult:
    run: str
    stored: int
    expected_stored: int
    rejected: int
    expected_rejected: int
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems

    def line(self) -> str:
        head = (
            f"smoke {self.run}: {self.stored}/{self.expected_stored} valid records stored, "
            f"{self.rejected}/{self.expected_rejected} rejections in the DLQ"
        )
        return head if self.passed else f"{head}; FAILED: {'; '.join(self.problems)}"


def smoke_records(run: str, now: datetime) -> tuple[list[dict[str, Any]], set[str], set[str]]:
    """This run's records, the ids that must be stored, and the ids that must be rejected."""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def record(suffix: str, record_type: str) -> dict[str, Any]:
        return {
            "id": f"smoke-{run}-{suffix}",
            "type": record_type,
            "source": "smoke-test",
            "timestamp": stamp,
            "payload": {"smoke": True, "run": run},
        }

    valid = [record(f"valid-{n}", t) for n, t in enumerate(VALID_TYPES)]
    invalid = [{**record(name, "order"), field: value} for name, (field, value) in INVALID.items()]
    return (
        valid + invalid,
        {r["id"] for r in valid},
        {r["id"] for r in invalid},
    )


def smoke(
    sqs: Any,
    dynamodb: Any,
    table_name: str,
    pipeline: Pipeline,
    invoker: Invoker,
    *,
    timeout: float = TIMEOUT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> SmokeResult:
    """Send this run's records, wait for every one to land, clean up its rejections."""
    run = uuid.uuid4().hex[:12]
    records, must_store, must_reject = smoke_records(run, datetime.now(UTC))
    sent = send(records, invoker, pipeline.entry, parallel=4)
    finish = getattr(invoker, "finish", None)
    if finish is not None:
        finish()  # the in-process runner runs what was sent
    keys = runtime_source.load(f"{STORING_STAGE.name}/keys.py")
    deadline = clock() + timeout
    while True:
        stored = {
            i
            for i in must_store
            if "Item"
            in dynamodb.get_item(TableName=table_name, Key=keys.record_key(i), ConsistentRead=True)
        }
        received = receive_all(sqs, pipeline.dead_letter_queue_url, pipeline.failed_stage)
        mine = [x for x in received if (x.record_id or "").startswith(f"smoke-{run}-")]
        # Everything else in the DLQ is someone else's: visible again at once, untouched.
        release(sqs, pipeline.dead_letter_queue_url, [x for x in received if x not in mine])
        letters = mine
        done = stored == must_store and {x.record_id for x in letters} >= must_reject
        if done or clock() >= deadline:
            break
        release(sqs, pipeline.dead_letter_queue_url, letters)
        sleep(POLL_SECONDS)
    problems = _problems(sent.refused, must_store - stored, letters, must_reject, pipeline)
    _delete(sqs, pipeline, [x for x in letters if x.record_id in must_reject])
    release(
        sqs, pipeline.dead_letter_queue_url, [x for x in letters if x.record_id not in must_reject]
    )
    rejected = sum(1 for x in letters if x.record_id in must_reject)
    return SmokeResult(run, len(stored), len(must_store), rejected, len(must_reject), problems)


def _problems(
    refused: list[tuple[int, str]],
    missing: set[str],
    letters: list[Any],
    must_reject: set[str],
    pipeline: Pipeline,
) -> tuple[str, ...]:
    found = {x.record_id for x in letters}
    problems = [f"{len(refused)} sends refused (first: {refused[0][1]})"] if refused else []
    problems += [f"not stored: {', '.join(sorted(missing))}"] if missing else []
    absent = must_reject - found
    problems += [f"not in the DLQ: {', '.join(sorted(absent))}"] if absent else []
    unexpected = sorted(str(i) for i in found - must_reject)
    problems += [f"in the DLQ but valid: {', '.join(unexpected)}"] if unexpected else []
    problems += [
        f"{x.record_id} failed at {x.failed_stage}, not as a rejection: {x.error}"
        for x in letters
        if x.record_id in must_reject and not x.is_rejection(pipeline.entry)
    ]
    return tuple(problems)


def _delete(sqs: Any, pipeline: Pipeline, letters: list[Any]) -> None:
    for letter in letters:
        sqs.delete_message(
            QueueUrl=pipeline.dead_letter_queue_url, ReceiptHandle=letter.receipt_handle
        )


def run_smoke(
    args: Any,
    sqs: Any,
    dynamodb: Any,
    table_name: str,
    pipeline: Pipeline,
    invoker: Invoker,
    out: TextIO | None = None,
) -> int:
    """The ``smoke`` command: one line (to ``out``, default standard output), and exit 0 only
    if every record landed as expected."""
    result = smoke(sqs, dynamodb, table_name, pipeline, invoker, timeout=args.timeout)
    print(result.line(), file=out or sys.stdout)
    return 0 if result.passed else 1
