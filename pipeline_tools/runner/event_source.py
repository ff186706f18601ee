"""Lambda's SQS event source mapping, in-process: the batched path's stages read their queues
on moto's SQS, batch by batch, as AWS documents the mapping.

The rules it follows, each AWS's:

* **Batches.** A poller gathers up to ``BatchSize`` messages (``ReceiveMessage`` takes 10 at a
  time) until the batch is full or the batching window has passed, then invokes the function
  synchronously with them (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html,
  "Batching behavior"). A batch also stops at Lambda's 6 MB synchronous payload.
* **Visibility.** Each message of a batch is invisible for the queue's visibility timeout.
  Lambda deletes the messages of a batch that succeeds; with ``ReportBatchItemFailures`` it
  deletes all but those the response names in ``batchItemFailures``; a function error fails
  the whole batch. What is not deleted becomes visible again when its timeout ends
  (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html).
* **Partial batch responses.** A response naming an ``itemIdentifier`` that is empty, not a
  string or not in the batch fails the whole batch (same page, "Success and failure
  conditions").
* **maxReceiveCount.** A message received more often than its queue's redrive policy allows
  moves to the dead-letter queue: moto's SQS applies the policy on receive, as SQS does.
* **Scaling.** When messages are available, Lambda processes five batches of a mapping at a
  time; while messages remain, it adds up to 300 more a minute, to at most 1,000 batches at
  once, and when traffic is low it scales back to five
  (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html). The mapping's
  ``ScalingConfig.MaximumConcurrency`` caps it (same page, "Configuring maximum concurrency").
  :class:`BatchScaling` follows these rules on the virtual clock: each round here polls as many
  batches as it allows, then runs them one after another.
* **Reserved concurrency.** "Event source mappings don't account for reserved concurrency": a
  round's batches beyond the function's ``ReservedConcurrentExecutions`` are throttled, and
  their messages return after the visibility timeout like a failed batch's
  (https://repost.aws/knowledge-center/lambda-sqs-scaling).

Time is virtual. moto's SQS reads :class:`VirtualClock`, which the runner moves to when the next
message becomes visible (a retry's delay, a visibility timeout) once nothing else can run: a
run with retries takes no real waiting, and its clock says how long it would take.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pipeline_tools.runner.runtime import LoadedFunction
from pipeline_tools.runner.spec import FunctionSpec
from pipeline_tools.template import Physical, StackTemplate, ref_id, referenced

#: Batches of a mapping Lambda runs at once when messages arrive, and when traffic is low.
START_BATCHES = 5
#: Batches Lambda adds a minute while messages remain.
SCALE_UP_PER_MINUTE = 300
#: The most batches one mapping runs at once.
MAX_BATCHES = 1000
#: Lambda's synchronous invocation payload limit, which a batch's event must fit.
SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
#: ``ReceiveMessage`` returns at most 10 messages.
RECEIVE_MAX = 10


class VirtualClock:
    """The clock moto's SQS reads while the runner is active: real time until moved."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._pinned: float | None = None

    def seconds(self) -> float:
        return time.time() + self.offset if self._pinned is None else self._pinned

    def millis(self) -> float:
        return self.seconds() * 1000

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """One instant for everything read inside: moto computes a queue's counts one after
        another, each at its own reading of the clock, so a message whose delay or visibility
        timeout ends between two readings would be in none of them."""
        self._pinned = self.seconds()
        try:
            yield
        finally:
            self._pinned = None

    @contextmanager
    def driving_moto(self) -> Iterator[None]:
        """moto's SQS on this clock (its delays, visibility timeouts and retention)."""
        from moto.sqs import models

        saved = models.unix_time, models.unix_time_millis
        models.unix_time, models.unix_time_millis = self.seconds, self.millis  # type: ignore[assignment]
        try:
            yield
        finally:
            models.unix_time, models.unix_time_millis = saved


class WallClock(VirtualClock):
    """Real time, for queues in another process (the local emulator's moto server), which no
    virtual clock can move: moving it waits."""

    def advance(self, seconds: float) -> None:
        time.sleep(seconds)

    @contextmanager
    def pinned(self) -> Iterator[None]:
        yield  # another process's clock: see QueuePipeline._pending

    @contextmanager
    def driving_moto(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class MappingSpec:
    """One event source mapping: the stage it invokes and the queue it reads."""

    stage: str
    queue_url: str
    queue_arn: str
    batch_size: int
    window_seconds: float
    report_item_failures: bool
    #: ``ScalingConfig.MaximumConcurrency`` (``None``: Lambda's own ceiling).
    max_concurrency: int | None = None


def mappings_from_template(template: Mapping[str, Any], physical: Physical) -> list[MappingSpec]:
    """The template's SQS event source mappings, each with its stage (through the alias it
    invokes) and its queue's physical URL."""
    model = StackTemplate.of(template)
    by_alias = {s.alias_id: name for name, s in model.stages.items() if s.alias_id}
    found = []
    for mapping in model.resources("AWS::Lambda::EventSourceMapping").values():
        p = mapping["Properties"]
        (stage,) = [by_alias[i] for i in referenced(p["FunctionName"]) if i in by_alias]
        queue = physical[str(ref_id(p["EventSourceArn"]))]
        found.append(
            MappingSpec(
                stage=stage,
                queue_url=queue["Ref"],
                queue_arn=queue["Arn"],
                batch_size=int(p.get("BatchSize", 10)),
                window_seconds=float(p.get("MaximumBatchingWindowInSeconds", 0)),
                report_item_failures="ReportBatchItemFailures"
                in p.get("FunctionResponseTypes", []),
                max_concurrency=_max_concurrency(p.get("ScalingConfig", {})),
            )
        )
    return found


def _max_concurrency(scaling: Mapping[str, Any]) -> int | None:
    value = scaling.get("MaximumConcurrency")
    return None if value is None else int(value)


class BatchScaling:
    """How many batches of one mapping Lambda runs at once, at a time on the virtual clock.

    :data:`START_BATCHES` while the queue keeps up; while messages remain after every batch
    has taken its share (a backlog), :data:`SCALE_UP_PER_MINUTE` more for each minute the
    backlog has lasted; never more than :data:`MAX_BATCHES` or the mapping's maximum
    concurrency; back to the start once a round finds the queue drained.
    """

    def __init__(self, max_concurrency: int | None = None) -> None:
        self.ceiling = min(MAX_BATCHES, max_concurrency or MAX_BATCHES)
        self.backlog_since: float | None = None

    def batches(self, now: float) -> int:
        """How many batches a round may run at ``now``."""
        grown = 0
        if self.backlog_since is not None:
            grown = int(SCALE_UP_PER_MINUTE * (now - self.backlog_since) / 60)
        return min(self.ceiling, START_BATCHES + grown)

    def observe(self, now: float, *, backlog: bool) -> None:
        """What a round found: a backlog (every batch it may run took messages, so more may
        wait) keeps the scaling up; a drained queue sends it back to the start."""
        if not backlog:
            self.backlog_since = None
        elif self.backlog_since is None:
            self.backlog_since = now


@dataclass
class Tally:
    """What the run did: invocations and messages per stage, batches that failed whole, batches
    throttled by the function's reserved concurrency, and the most batches of a round."""

    invocations: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)
    failed_batches: Counter[str] = field(default_factory=Counter)
    throttled_batches: Counter[str] = field(default_factory=Counter)
    peak_batches: Counter[str] = field(default_factory=Counter)


class QueuePipeline:
    """The batched path of a stack on moto: each mapping's stage fed from its queue."""

    def __init__(
        self,
        specs: Mapping[str, FunctionSpec],
        sqs_client: Any,
        mappings: list[MappingSpec],
        clock: VirtualClock | None = None,
    ) -> None:
        self.sqs = sqs_client
        self.mappings = {m.stage: m for m in mappings}
        self.scaling = {m.stage: BatchScaling(m.max_concurrency) for m in mappings}
        self.functions = {name: LoadedFunction(spec) for name, spec in specs.items()}
        self.clock = clock or VirtualClock()
        self.tally = Tally()
        #: The entry's batches were gathered by :meth:`run_arriving`: no window to wait out.
        self.gathered = False
        for function in self.functions.values():
            # The batch entry makes its SQS client at its first batch: make it now, under the
            # function's environment, so the role's policy is enforced on it too.
            entry = function.module.batch_handler.entry
            with function.activated():
                entry._sqs = _client()
            if function.spec.policy is not None:
                function.spec.policy.enforce_on(entry._sqs)

    def module(self, stage: str) -> Any:
        return self.functions[stage].module

    def run_arriving(self, bodies: list[str], rate: float, entry: str) -> list[tuple[float, int]]:
        """Messages arriving at ``rate`` a second, in virtual time, gathered by the entry
        stage's pollers as Lambda gathers them: :data:`START_BATCHES` share the arrivals, and a
        batch opens at its first message and is invoked when it holds ``BatchSize`` messages or
        its window has passed. Each batch then runs through the whole chain. Returns, for each
        message, its wait from its arrival to its batch's invocation (the stages after the
        entry take packed messages at once) and the number of messages in that batch."""
        mapping = self.mappings[entry]
        start = self.clock.seconds()
        arrivals = [start + i / rate for i in range(len(bodies))]
        batches: list[tuple[float, list[int]]] = []
        for poller in range(START_BATCHES):
            mine = list(range(poller, len(bodies), START_BATCHES))
            while mine:
                opened = arrivals[mine[0]]
                taken = [
                    i
                    for i in mine[: mapping.batch_size]
                    if arrivals[i] <= opened + mapping.window_seconds
                ]
                full = len(taken) == mapping.batch_size
                batches.append(
                    (arrivals[taken[-1]] if full else opened + mapping.window_seconds, taken)
                )
                mine = mine[len(taken) :]
        waits = [(0.0, 0)] * len(bodies)
        self.gathered = True
        try:
            with self.clock.driving_moto():
                for invoked, taken in sorted(batches):
                    self.clock.offset += max(0.0, invoked - self.clock.seconds())
                    for start_at in range(0, len(taken), RECEIVE_MAX):
                        chunk = taken[start_at : start_at + RECEIVE_MAX]
                        self.sqs.send_message_batch(
                            QueueUrl=mapping.queue_url,
                            Entries=[{"Id": str(i), "MessageBody": bodies[i]} for i in chunk],
                        )
                    for i in taken:
                        waits[i] = (invoked - arrivals[i], len(taken))
                    self.run()
        finally:
            self.gathered = False
        return waits

    def run(self, max_seconds: float = 3 * 3600) -> Tally:
        """Deliver batches until every stage queue is empty, moving the clock past delays and
        visibility timeouts when nothing is visible; at most ``max_seconds`` of virtual time."""
        started = self.clock.seconds()
        with self.clock.driving_moto():
            while True:
                if any(self.round(stage) for stage in self.mappings):
                    continue
                if not self._pending() or self.clock.seconds() - started > max_seconds:
                    return self.tally
                self.clock.advance(1.0)

    def round(self, stage: str) -> int:
        """As many batches of ``stage`` as its scaling allows now; returns how many were polled.

        The batches past the function's reserved concurrency are throttled: not invoked, their
        messages left to return after the visibility timeout."""
        scaling = self.scaling[stage]
        allowed = scaling.batches(self.clock.seconds())
        batches = []
        for _ in range(allowed):
            batch = self._poll(self.mappings[stage])
            if not batch:
                break
            batches.append(batch)
        scaling.observe(self.clock.seconds(), backlog=len(batches) == allowed)
        self.tally.peak_batches[stage] = max(self.tally.peak_batches[stage], len(batches))
        reserved = self.functions[stage].spec.reserved_concurrency
        for index, batch in enumerate(batches):
            if reserved is not None and index >= reserved:
                self.tally.throttled_batches[stage] += 1
            else:
                self._deliver(stage, batch)
        return len(batches)

    def _poll(self, mapping: MappingSpec) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        size = 0
        while len(batch) < mapping.batch_size:
            answer = self.sqs.receive_message(
                QueueUrl=mapping.queue_url,
                MaxNumberOfMessages=min(RECEIVE_MAX, mapping.batch_size - len(batch)),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = answer.get("Messages", [])
            if not messages:
                break
            for message in messages:
                size += len(message["Body"].encode())
                batch.append(message)
            if size >= SYNC_PAYLOAD_BYTES:
                break
        return batch

    def _deliver(self, stage: str, batch: list[dict[str, Any]]) -> None:
        mapping = self.mappings[stage]
        if len(batch) < mapping.batch_size and mapping.window_seconds and not self.gathered:
            # A batch short of its size waits out the window before Lambda invokes with it.
            self.clock.advance(mapping.window_seconds)
        event = {"Records": [_event_record(m, mapping) for m in batch]}
        self.tally.invocations[stage] += 1
        self.tally.messages[stage] += len(batch)
        try:
            response = self.functions[stage].invoke(event, str(uuid.uuid4()))
        except Exception:  # a function error: the whole batch returns after its timeout
            self.tally.failed_batches[stage] += 1
            return
        failed = _failed_ids(response, batch, mapping)
        if failed is None:
            self.tally.failed_batches[stage] += 1
            return
        done = [m for m in batch if m["MessageId"] not in failed]
        for start in range(0, len(done), RECEIVE_MAX):
            self.sqs.delete_message_batch(
                QueueUrl=mapping.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(done[start : start + RECEIVE_MAX])
                ],
            )

    def _pending(self) -> bool:
        """Whether any stage queue still holds a message (visible, in flight or delayed).

        moto computes a queue's three counts one after another, each at its own reading of the
        clock: a message whose delay or visibility timeout ends between two readings is in none
        of them, and the run would end with it still queued. The virtual clock is pinned for the
        check; a server's clock cannot be, so a second check counts a message the first missed
        (a message crosses that boundary once)."""
        with self.clock.pinned():
            return self._holds_messages() or self._holds_messages()

    def _holds_messages(self) -> bool:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        for mapping in self.mappings.values():
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=mapping.queue_url, AttributeNames=names
            )["Attributes"]
            if any(int(attributes.get(n, 0)) for n in names):
                return True
        return False


def _client() -> Any:
    """An SQS client made as the batch entry makes it."""
    import boto3

    return boto3.client("sqs")


def _event_record(message: Mapping[str, Any], mapping: MappingSpec) -> dict[str, Any]:
    """A message as Lambda's SQS event carries it (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html)."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "dataType": value["DataType"],
                "stringListValues": [],
                "binaryListValues": [],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": mapping.queue_arn,
        "awsRegion": mapping.queue_arn.split(":")[3],
    }


def _failed_ids(
    response: Any, batch: list[dict[str, Any]], mapping: MappingSpec
) -> set[str] | None:
    """The message ids a response fails; ``None``: the whole batch fails."""
    if not mapping.report_item_failures:
        return set()
    if not isinstance(response, dict) or not response.get("batchItemFailures"):
        return set()
    ids = {m["MessageId"] for m in batch}
    failed = set()
    for item in response["batchItemFailures"]:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in ids:
            return None
        failed.add(identifier)
    return failed
