"""How records enter the pipeline, as an environment's ``ingestion`` block sets it.

Its bounds are the event source mapping's own (``constructs_lib/stage_queue.py``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import BaseModel, ConfigDict, Field, model_validator

from constructs_lib.limits import LimitError
from constructs_lib.stage_queue import BATCH_SIZE, BATCHING_WINDOW_SECONDS, MAX_CONCURRENCY
from serverless_stack.stages import STAGE_TABLE


class IngestionSettings(BaseModel):
    """How records enter the pipeline: one asynchronous invocation a record and stage, or
    batches through an SQS queue in front of each stage (``docs/batching.md``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["per_record", "batched"] = Field(
        default="per_record",
        description="per_record: async invokes of validator:live chained by destinations; "
        "batched: an SQS queue in front of each stage, read in batches",
    )
    batch_size: Annotated[int, Ge(BATCH_SIZE[0]), Le(BATCH_SIZE[1])] = Field(
        default=100,
        description="Messages per batch of the entry stage (batched mode); over 10 needs a "
        "batching window; later stages take packed messages, 10 a batch",
    )
    batching_window_seconds: Annotated[
        int, Ge(BATCHING_WINDOW_SECONDS[0]), Le(BATCHING_WINDOW_SECONDS[1])
    ] = Field(
        default=60,
        description="How long the entry stage's event source gathers a batch, in seconds "
        "(the latency a record pays once; later stages take what arrives at once)",
    )
    max_concurrency: Annotated[int, Ge(MAX_CONCURRENCY[0]), Le(MAX_CONCURRENCY[1])] | None = Field(
        default=None,
        description="The most batches a stage runs at once; null: Lambda's own scaling",
    )
    oldest_message_alarm_seconds: Annotated[int, Ge(60), Le(1_209_600)] = Field(
        default=300, description="Alarm when a stage's queue holds a message older than this"
    )
    mapping_metrics: bool = Field(
        default=False,
        description="batched: each queue's event source mapping sends its event counts "
        "(MetricsConfig EventCount, five metrics a mapping, priced as CloudWatch metrics), "
        "and each stage alarms on its mapping's FailedInvokeEventCount",
    )

    @model_validator(mode="after")
    def _window_for_large_batches(self) -> IngestionSettings:
        if self.batch_size > 10 and self.batching_window_seconds < 1:
            raise LimitError(
                "batching_window_seconds",
                self.batching_window_seconds,
                "must be at least 1 for a batch_size over 10 (Lambda's SQS event source rule)",
            )
        return self


def mappings_within_reserved(ingestion: IngestionSettings, functions: Any) -> None:
    """On the batched path, a stage with reserved concurrency needs ``max_concurrency`` at most
    that: event source mappings don't account for reserved concurrency, so without the cap a
    mapping scales to 1,000 batches and Lambda throttles the rest, whose messages return and
    count toward ``maxReceiveCount`` (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html,
    "Configuring maximum concurrency": "Don't configure the maximum concurrency to be more than
    the function's reserved concurrency").

    :raises LimitError: naming ``ingestion.max_concurrency`` and the stage's reserved concurrency.
    """
    ceiling = ingestion.max_concurrency
    for stage in STAGE_TABLE if ingestion.mode == "batched" else ():
        reserved = getattr(functions, stage.name).reserved_concurrency
        if reserved is not None and reserved < MAX_CONCURRENCY[0]:
            raise LimitError(
                f"functions.{stage.name}.reserved_concurrency",
                reserved,
                f"must be at least {MAX_CONCURRENCY[0]} on the batched path, the fewest batches "
                "a queue's mapping can be held to (ScalingConfig.MaximumConcurrency)",
            )
        if reserved is not None and (ceiling is None or ceiling > reserved):
            raise LimitError(
                "ingestion.max_concurrency",
                ceiling,
                f"must be set, from {MAX_CONCURRENCY[0]} to {reserved} "
                f"(functions.{stage.name}.reserved_concurrency), on the batched path: a "
                "queue's mapping does not stop at the function's reserved concurrency, and "
                "Lambda throttles the batches beyond it",
            )
