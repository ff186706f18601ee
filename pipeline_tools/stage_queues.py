"""The operator commands on the batched path: each stage's queue is where its records enter.

``send`` packs records into messages of at most 64 KiB (one billed SQS request each,
https://aws.amazon.com/sqs/pricing/) and sends them to the validator's queue with
``SendMessageBatch``, 10 messages a call. ``redrive`` sends each dead letter back to the queue
of the stage that failed it (the message's ``FailedStage`` attribute, which the stages set and
SQS's redrive keeps), one message a record, so that a message is deleted from the DLQ only once
its record is back in a queue. The message format is the stages' own
(``lambda_src/pipeline_common/batch.py``): a body is one record or a JSON array of them, with
the attributes ``stage`` and ``attempt``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline_tools import runtime_source
from pipeline_tools.pipeline import THROTTLING_CODES, Pipeline, deployed_pipeline
from pipeline_tools.template import StackTemplate, ref_id

#: The message format, as the stages read and write it (one definition, loaded by path).
MESSAGES = runtime_source.load("pipeline_common/messages.py")


def deployed(session: Any, stack_name: str) -> tuple[Pipeline, Any]:
    """The pipeline of a deployed stack and its invoker, on either path: its stages' queues
    on the batched path, its aliases on the per-record path."""
    from pipeline_tools.local.deployed import DeployedStack

    stack = DeployedStack.read(session, stack_name)
    if not is_batched(stack.template):
        return deployed_pipeline(session, stack_name)
    pipeline, urls = queue_pipeline(stack.template, stack.physical, stack.outputs["DlqUrl"])
    return pipeline, QueueInvoker(session.client("sqs"), urls)


def is_batched(template: Mapping[str, Any]) -> bool:
    """Whether the stack's stages read queues (``ingestion.mode: batched``)."""
    return bool(StackTemplate.of(template).resources("AWS::Lambda::EventSourceMapping"))


def queue_pipeline(
    template: Mapping[str, Any], physical_ids: Mapping[str, str], dlq_url: str
) -> tuple[Pipeline, dict[str, str]]:
    """The pipeline of a batched stack, and each stage's queue URL, from the stages'
    ``NEXT_STAGE`` and ``STAGE_QUEUE_URL`` variables and ``physical_ids`` (a logical ID -> what
    CloudFormation reports as its physical ID: a queue's URL, a function's name).

    The stages' function names, where given, tell a letter of the per-record path (an
    asynchronous invocation record, left in the DLQ from before an environment switched over)
    which stage it was on its way to, so ``redrive`` sends it to that stage's queue."""
    stages = StackTemplate.of(template).stages
    variables = {
        name: stage.properties.get("Environment", {}).get("Variables", {})
        for name, stage in stages.items()
    }
    following = {name: v.get("NEXT_STAGE") for name, v in variables.items()}
    (entry,) = [name for name in stages if name not in set(following.values())]
    urls = {name: physical_ids[str(ref_id(v["STAGE_QUEUE_URL"]))] for name, v in variables.items()}
    functions = {
        physical_ids[s.function_id]: name
        for name, s in stages.items()
        if s.function_id in physical_ids
    }
    pipeline = Pipeline(
        entry=entry,
        next_stage=following,
        stage_of_function=functions,
        dead_letter_queue_url=dlq_url,
    )
    return pipeline, urls


class QueueInvoker:
    """Sends records to the stages' queues (the batched path's ``Invoker``)."""

    def __init__(self, sqs: Any, queue_urls: Mapping[str, str], attempts: int = 6) -> None:
        self.sqs = sqs
        self.queue_urls = dict(queue_urls)
        self.attempts = attempts
        #: SendMessageBatch calls made (what SQS bills for the sends).
        self.calls = 0

    def invoke(self, stage: str, event: Any) -> None:
        """One record into ``stage``'s queue: accepted when this returns."""
        refused = self.invoke_many(stage, [event])
        if refused:
            raise RuntimeError(refused[0][1])

    def invoke_many(self, stage: str, events: Sequence[Any]) -> list[tuple[int, str]]:
        """``events`` packed into ``stage``'s queue; the (index, why) of any not accepted."""
        refused: list[tuple[int, str]] = []
        groups = list(MESSAGES.pack(range(len(events)), sized=lambda i: events[i]))
        for start in range(0, len(groups), MESSAGES.BATCH_ENTRIES):
            call = groups[start : start + MESSAGES.BATCH_ENTRIES]
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": MESSAGES.body_of([events[j] for j in group]),
                    "MessageAttributes": {
                        MESSAGES.STAGE_ATTRIBUTE: {"DataType": "String", "StringValue": stage},
                        MESSAGES.ATTEMPT_ATTRIBUTE: {"DataType": "Number", "StringValue": "1"},
                    },
                }
                for i, group in enumerate(call)
            ]
            for failed_id, why in self._send(self.queue_urls[stage], entries):
                refused += [(j, why) for j in call[int(failed_id)]]
        return sorted(refused)

    def _send(self, url: str, entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
        """SendMessageBatch, retried whole while SQS throttles; the entries SQS refused."""
        for attempt in range(self.attempts):
            try:
                self.calls += 1
                answer = self.sqs.send_message_batch(QueueUrl=url, Entries=entries)
            except Exception as error:
                code = getattr(error, "response", {}).get("Error", {}).get("Code")
                if code not in THROTTLING_CODES | {"RequestThrottled"} or (
                    attempt == self.attempts - 1
                ):
                    raise
                time.sleep(min(8.0, 0.2 * 2**attempt))
                continue
            return [(f["Id"], f"{f.get('Code')}: {f.get('Message')}") for f in answer["Failed"]]
        return []

    def finish(self) -> None:
        """Nothing waits: every record is in a queue when ``invoke`` returns."""
