"""An SQS queue in front of a function's ``live`` alias, read in batches by an event source
mapping that takes failures per message (``ReportBatchItemFailures``).

The rules it follows are AWS's:

* the queue's visibility timeout is at least six times the function's timeout, "to allow your
  function time to process each batch of records" and to let Lambda retry a throttled batch;
  with a batching window, that window is added
  (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html);
* a batch of more than 10 messages needs a batching window of at least one second, and a
  standard queue takes batches of up to 10,000 messages and windows of up to 300 seconds
  (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-parameters.html);
* maximum concurrency is 2 to 1,000 (``ScalingConfig``,
  https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-properties-lambda-eventsourcemapping-scalingconfig.html);
* the mapping's own metrics (``PolledEventCount``, ``InvokedEventCount``,
  ``FilteredOutEventCount``, ``FailedInvokeEventCount``, ``DeletedEventCount`` for an SQS
  source, dimensioned by ``EventSourceMappingUUID``) are sent only when its ``MetricsConfig``
  names ``EventCount`` (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-properties-lambda-eventsourcemapping-metricsconfig.html;
  the metrics: https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html#event-source-mapping-metrics).
  ``FailedInvokeEventCount`` counts the messages Lambda failed to invoke the function with
  (network configuration, a missing permission, a deleted function, version or alias) and,
  with partial batch responses, those the function reported failed;
* reading the queue takes ``sqs:ReceiveMessage``, ``sqs:DeleteMessage`` and
  ``sqs:GetQueueAttributes`` on the function's execution role, and nothing more
  (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html, "Execution role
  permissions"): the construct grants exactly those, where ``SqsEventSource`` would also grant
  ``sqs:ChangeMessageVisibility`` and ``sqs:GetQueueUrl``.

A message that keeps failing as a whole (its batch timed out, or the function crashed) moves to
the dead-letter queue after ``max_receive_count`` deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from constructs_lib import limits

#: Lambda's reads of an SQS event source, on the function's role.
CONSUME_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
BATCH_SIZE = (1, 10_000)
BATCHING_WINDOW_SECONDS = (0, 300)
MAX_CONCURRENCY = (2, 1000)
MAX_RECEIVE_COUNT = (1, 1000)
#: The queue's visibility timeout, in timeouts of the function.
VISIBILITY_TIMEOUTS = 6
#: The metrics an SQS event source mapping sends when ``MetricsConfig`` names ``EventCount``
#: (the group's other metrics are the stream and Kafka sources'). ``PolledEventCount`` is sent
#: even for an empty poll, so the metrics exist for as long as the mapping polls.
EVENT_COUNT_METRICS = (
    "PolledEventCount",
    "InvokedEventCount",
    "FilteredOutEventCount",
    "FailedInvokeEventCount",
    "DeletedEventCount",
)


@dataclass(frozen=True)
class Batching:
    """How the event source mapping reads the queue.

    :param batch_size: messages per batch, 1 to 10,000. :default: 10
    :param batching_window: how long the mapping gathers a batch, 0 to 300 s (at least 1 s
        for a batch of more than 10). :default: 0 s
    :param max_concurrency: the most batches at once, 2 to 1,000. :default: Lambda's scaling
    :param max_receive_count: deliveries of a message before it moves to the DLQ. :default: 5
    :param mapping_metrics: the mapping sends its event counts (:data:`EVENT_COUNT_METRICS`),
        so :meth:`StageQueue.metric_failed_invoke_events` has data. Lambda's metrics page calls
        its function metrics free and says nothing of these opt-in ones; price each as a
        CloudWatch metric a month. :default: False
    """

    batch_size: int = 10
    batching_window: Duration | None = None
    max_concurrency: int | None = None
    max_receive_count: int = 5
    mapping_metrics: bool = False

    @property
    def window_seconds(self) -> float:
        return (self.batching_window or Duration.seconds(0)).to_seconds()

    def check(self) -> None:
        """:raises LimitError: naming the first argument out of AWS's bounds."""
        limits.check("batch_size", self.batch_size, BATCH_SIZE)
        limits.check("batching_window", self.window_seconds, BATCHING_WINDOW_SECONDS, " s")
        if self.batch_size > 10 and self.window_seconds < 1:
            raise limits.LimitError(
                "batching_window",
                self.window_seconds,
                "must be at least 1 s for a batch_size over 10 (Lambda's SQS event source rule)",
            )
        if self.max_concurrency is not None:
            limits.check("max_concurrency", self.max_concurrency, MAX_CONCURRENCY)
        limits.check("max_receive_count", self.max_receive_count, MAX_RECEIVE_COUNT)


class StageQueue(Construct):
    """A queue, and the event source mapping that hands its messages to ``alias`` in batches.

    :param alias: the function alias (``live``) the mapping invokes.
    :param role: the function's execution role: it gets exactly :data:`CONSUME_ACTIONS` on the
        queue.
    :param timeout: the function's timeout.
    :param dead_letter_queue: where a message goes after ``batching.max_receive_count``
        deliveries.
    :param batching: how the mapping reads the queue. :default: ``Batching()``
    :raises LimitError: (a ``ValueError``) naming a ``batching`` argument out of bounds.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alias: lambda_.IFunction,
        role: iam.IRole,
        timeout: Duration,
        dead_letter_queue: sqs.IQueue,
        batching: Batching | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        batching = batching or Batching()
        batching.check()
        window = batching.window_seconds
        visibility = Duration.seconds(VISIBILITY_TIMEOUTS * timeout.to_seconds() + window)
        #: The queue.
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=visibility,
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=batching.max_receive_count, queue=dead_letter_queue
            ),
        )
        grant = self.queue.grant(role, *CONSUME_ACTIONS)
        #: The event source mapping on ``alias``.
        self.mapping = lambda_.EventSourceMapping(
            self,
            "Mapping",
            target=alias,
            event_source_arn=self.queue.queue_arn,
            batch_size=batching.batch_size,
            max_batching_window=batching.batching_window if window else None,
            report_batch_item_failures=True,
            max_concurrency=batching.max_concurrency,
            metrics_config=(
                lambda_.MetricsConfig(metrics=[lambda_.MetricType.EVENT_COUNT])
                if batching.mapping_metrics
                else None
            ),
        )
        #: Whether the mapping sends its event counts (``Batching.mapping_metrics``).
        self.mapping_metrics = batching.mapping_metrics
        # Lambda checks the role's permissions when it creates the mapping: the grant first.
        grant.apply_before(self.mapping)

    def metric_failed_invoke_events(self, period: Duration) -> cloudwatch.Metric:
        """Messages of this queue that the mapping failed to invoke the function with, or that
        the function reported failed (``FailedInvokeEventCount``, the sum over ``period``).

        :raises ValueError: the mapping sends no event counts (``Batching.mapping_metrics``).
        """
        if not self.mapping_metrics:
            raise ValueError(
                "metric_failed_invoke_events: the mapping sends no event counts; "
                "set Batching(mapping_metrics=True)"
            )
        return cloudwatch.Metric(
            namespace="AWS/Lambda",
            metric_name="FailedInvokeEventCount",
            dimensions_map={"EventSourceMappingUUID": self.mapping.event_source_mapping_id},
            statistic="Sum",
            period=period,
        )
