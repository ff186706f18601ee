"""The project's one way of making a dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from constructs_lib.limits import SQS_MAX_RETENTION_DAYS

#: The longest SQS allows: time to notice an alarm, fix the cause and redrive.
DLQ_RETENTION = Duration.days(SQS_MAX_RETENTION_DAYS)


def dead_letter_queue(
    scope: Construct, construct_id: str, *, retention: Duration = DLQ_RETENTION
) -> sqs.Queue:
    """An SQS queue for failed events: SQS-managed encryption, SSL only, 14-day retention.

    SSE-SQS encrypts at rest at no charge and needs no key policy; a customer-managed KMS key
    would add $1 a month and a key policy per producer.
    """
    return sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=retention,
    )
