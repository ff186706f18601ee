"""The operations behind ``send`` and ``redrive``, on any ``Pipeline`` and ``Invoker``.

* ``send`` invokes the entry stage (the validator) for each record, in bounded parallel (the
  invoker retries throttled invokes).
* ``redrive`` re-invokes each message's *failed stage*: a bare record failed at the validator;
  an invocation record names the stage that succeeded (``requestContext.functionArn``), and the
  failed stage is that stage's on-success destination. A message is deleted only once its
  invoke is accepted; validator rejections are skipped unless ``include_rejected`` (they would
  fail the same way; a validator *crash*, ``unexpected ...``, is redriven). The idempotent
  processor makes a redrive safe to repeat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipeline_tools.dead_letters import DeadLetter, receive_all, release
from pipeline_tools.pipeline import Invoker, Pipeline


@dataclass(frozen=True)
class SendSummary:
    sent: int
    refused: list[tuple[int, str]]  # (index in the file, from 0; why)
    refused_by: str = "Lambda"

    def line(self) -> str:
        return f"sent {self.sent} of {self.sent + len(self.refused)} records" + (
            f"; {len(self.refused)} refused by {self.refused_by} (first: record "
            f"{self.refused[0][0] + 1} of the file: {self.refused[0][1]})"
            if self.refused
            else ""
        )


def send(
    records: Sequence[Any],
    invoker: Invoker,
    entry: str,
    *,
    parallel: int = 8,
    progress: Callable[[str], None] = lambda line: None,
) -> SendSummary:
    """Invoke ``entry`` asynchronously for each record, ``parallel`` at a time; or, where the
    invoker sends to queues (the batched path), send them all packed (``invoke_many``)."""
    refused: list[tuple[int, str]] = []
    many = getattr(invoker, "invoke_many", None)
    if many is not None:
        refused = many(entry, records)
        progress(f"sent {len(records)}/{len(records)}")
        return SendSummary(len(records) - len(refused), refused, refused_by="SQS")

    def one(index: int) -> None:
        try:
            invoker.invoke(entry, records[index])
        except Exception as error:
            refused.append((index, f"{type(error).__name__}: {error}"))

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for done, _ in enumerate(pool.map(one, range(len(records))), start=1):
            if done % 100 == 0:
                progress(f"sent {done}/{len(records)}")
    return SendSummary(len(records) - len(refused), sorted(refused))


@dataclass(frozen=True)
class RedriveSummary:
    """What a redrive moved, and what it left in the queue and why."""

    redriven: int
    skipped_rejected: int
    refused: list[tuple[str, str]]  # (message id, why)
    dry_run: bool
    skipped_conflicts: int = 0
    beyond_max: int = 0

    def line(self) -> str:
        verb = "would redrive" if self.dry_run else "redrove"
        left = [
            (
                self.skipped_rejected,
                "validator rejections (they fail the same way: fix the "
                "producer and send them again)",
            ),
            (
                self.skipped_conflicts,
                "conflicts (the stored record stays: resend the other under a new id)",
            ),
            (self.beyond_max, "beyond --max"),
            (len(self.refused), "refused (" + (self.refused[0][1] if self.refused else "") + ")"),
        ]
        said = [f"{count} {why}" for count, why in left if count]
        return f"{verb} {self.redriven}" + (
            f"; left in the queue: {', '.join(said)}" if said else ""
        )


def redrive(
    sqs: Any,
    pipeline: Pipeline,
    invoker: Invoker,
    *,
    dry_run: bool = False,
    max_messages: int | None = None,
    include_rejected: bool = False,
    progress: Callable[[str], None] = lambda line: None,
) -> RedriveSummary:
    """Re-invoke each dead letter's failed stage; delete it only once the invoke is accepted.

    Messages it does not redrive (rejections, conflicts, refused, beyond ``max_messages``, or
    all of them on a dry run) are made visible again at the end, untouched.
    """
    url = pipeline.dead_letter_queue_url
    redriven = 0
    left: dict[str, int] = {"rejected": 0, "conflict": 0, "beyond max": 0}
    refused: list[tuple[str, str]] = []
    kept: list[DeadLetter] = []
    received = receive_all(sqs, url, pipeline.failed_stage)
    for letter in sorted(received, key=lambda item: -item.age_seconds):
        reason = _left_alone(letter, pipeline.entry, include_rejected)
        if reason is None and max_messages is not None and redriven + len(refused) >= max_messages:
            reason = "beyond max"
        if reason is not None:
            left[reason] += 1
        elif letter.failed_stage == "?":
            refused.append((letter.message_id, "cannot tell which stage failed"))
        elif dry_run:
            named = letter.record_id or "a record without an id"
            progress(f"would redrive {named} to {letter.failed_stage}")
            redriven += 1
        elif _invoked(invoker, letter, refused):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=letter.receipt_handle)
            redriven += 1
            if redriven % 100 == 0:
                progress(f"redrove {redriven}")
            continue
        kept.append(letter)
    release(sqs, url, kept)
    return RedriveSummary(
        redriven, left["rejected"], refused, dry_run, left["conflict"], left["beyond max"]
    )


def _left_alone(letter: DeadLetter, entry: str, include_rejected: bool) -> str | None:
    """Why ``letter`` stays in the queue without an invoke: it would fail the same way."""
    if letter.is_conflict():
        return "conflict"
    if letter.is_rejection(entry) and not include_rejected:
        return "rejected"
    return None


def _invoked(invoker: Invoker, letter: DeadLetter, refused: list[tuple[str, str]]) -> bool:
    try:
        invoker.invoke(letter.failed_stage, letter.event)
    except Exception as error:
        refused.append((letter.message_id, f"{type(error).__name__}: {error}"))
        return False
    return True


def finish(invoker: Invoker) -> None:
    """Let an in-process invoker run what it queued (Lambda needs no such step)."""
    run_queued = getattr(invoker, "finish", None)
    if run_queued is not None:
        run_queued()
