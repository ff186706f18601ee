"""`AlarmTopic`: an SNS topic that CloudWatch alarms can really publish to.

A topic with ``enforce_ssl=True`` gets an explicit topic policy holding the TLS ``Deny``. An
explicit policy *replaces* SNS's default one, so nothing allows CloudWatch to publish any more,
and every alarm action fails with "not authorized to perform SNS:Publish" in the alarm history
(AWS re:Post, "Why didn't I receive an SNS notification for my CloudWatch alarm trigger?",
https://repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger).

This topic's policy therefore holds, besides the TLS deny, one ``Allow`` for the service
principal ``cloudwatch.amazonaws.com`` to ``sns:Publish``, scoped against the confused deputy
(https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html) with
``aws:SourceAccount`` (this account) and ``aws:SourceArn`` (exactly the ARNs of the alarms bound
to the topic, nothing broader).

Subscribers are e-mail addresses and HTTPS endpoints (an on-call service's SNS integration
URL). SNS sends each a subscription confirmation first, and delivers nothing to it until it is
confirmed: an e-mail subscriber clicks the link in the mail, an HTTPS endpoint visits the
``SubscribeURL`` of the ``SubscriptionConfirmation`` message SNS posts (on-call services do
this themselves); an unconfirmed subscription expires after 3 days
(https://docs.aws.amazon.com/sns/latest/dg/sns-create-subscribe-endpoint-to-topic.html,
https://docs.aws.amazon.com/sns/latest/dg/sns-http-https-endpoint-as-subscriber.html).

Each subscription has a redrive policy: SNS retries a delivery to an e-mail or HTTPS
subscriber (a "customer managed endpoint") and, once its delivery policy is exhausted, discards
the message
unless a dead-letter queue is attached to the subscription
(https://docs.aws.amazon.com/sns/latest/dg/sns-message-delivery-retries.html,
https://docs.aws.amazon.com/sns/latest/dg/sns-dead-letter-queues.html). So an alarm
notification that could not be delivered is kept 14 days in ``undelivered``, an encrypted,
TLS-only queue that only this topic may send to.

The construct is itself the alarm action: ``alarm.add_alarm_action(topic)`` both points the
alarm at the topic and adds that alarm's ARN to the policy, so the policy can never miss an
alarm, or name one that does not notify.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jsii
from aws_cdk import Duration, IStableListProducer, Lazy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IValidation

CLOUDWATCH_PRINCIPAL = "cloudwatch.amazonaws.com"


@jsii.implements(IStableListProducer)
class _AlarmArns:
    """The ARNs of the alarms bound so far, rendered when the template is written."""

    def __init__(self) -> None:
        self.arns: list[str] = []

    def produce(self) -> list[str] | None:
        return list(self.arns)


@jsii.implements(cloudwatch.IAlarmAction)
class AlarmTopic(Construct):
    """An SNS topic for alarm notifications: TLS only, publishable by this stack's alarms.

    Attributes: ``topic``; ``undelivered``, the subscriptions' dead-letter queue (``None``
    without subscribers). Use the construct itself as the alarm action
    (``alarm.add_alarm_action(alarm_topic)``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        emails: Sequence[str] = (),
        https_endpoints: Sequence[str] = (),
    ) -> None:
        """
        :param emails: addresses to subscribe; each must confirm the subscription e-mail SNS
            sends before it receives anything. :default: none
        :param https_endpoints: ``https://`` URLs to subscribe (an on-call service's SNS
            integration); each confirms SNS's subscription request first. :default: none
        """
        super().__init__(scope, construct_id)
        for name, addresses in (("emails", emails), ("https_endpoints", https_endpoints)):
            if len(set(addresses)) != len(addresses):
                raise ValueError(f"{name} must not repeat an address, got {list(addresses)!r}")
        for url in https_endpoints:
            if not url.startswith("https://"):
                raise ValueError(f"https_endpoints: {url!r} must be an https:// URL")
        # "Default": the topic keeps the logical ID a plain ``sns.Topic(scope, id)`` would have,
        # so swapping one for this construct does not replace the topic or its subscriptions.
        self.topic = sns.Topic(self, "Default", enforce_ssl=True)
        self.undelivered: sqs.Queue | None = None
        if emails or https_endpoints:
            # SQS-managed encryption: SNS can send to it with no key policy to grant
            # (an SSE-KMS queue would need a customer-managed key, sns-dead-letter-queues.html).
            self.undelivered = sqs.Queue(
                self,
                "Undelivered",
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
                retention_period=Duration.days(14),
            )
        self._subscribe(emails, https_endpoints)
        self._alarm_arns = _AlarmArns()
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowThisStacksAlarmsToPublish",
                principals=[iam.ServicePrincipal(CLOUDWATCH_PRINCIPAL)],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Stack.of(self).account},
                    "ArnLike": {
                        "aws:SourceArn": Lazy.list(self._alarm_arns, omit_empty=False),
                    },
                },
            )
        )
        self.node.add_validation(_EveryAlarmBound(self._alarm_arns))

    def _subscribe(self, emails: Sequence[str], https_endpoints: Sequence[str]) -> None:
        """Each subscriber, its undeliverable notifications kept in ``undelivered``."""
        for email in emails:
            self.topic.add_subscription(
                subscriptions.EmailSubscription(email, dead_letter_queue=self.undelivered)
            )
        for url in https_endpoints:
            self.topic.add_subscription(
                subscriptions.UrlSubscription(
                    url, protocol=sns.SubscriptionProtocol.HTTPS, dead_letter_queue=self.undelivered
                )
            )

    @property
    def alarm_arns(self) -> list[str]:
        """The ARNs (tokens) of the alarms that publish to this topic."""
        return list(self._alarm_arns.arns)

    def bind(self, scope: Construct, alarm: cloudwatch.IAlarm) -> cloudwatch.AlarmActionConfig:
        """Called by ``alarm.add_alarm_action(self)``: allow this alarm to publish."""
        self._alarm_arns.arns.append(alarm.alarm_arn)
        return cloudwatch.AlarmActionConfig(alarm_action_arn=self.topic.topic_arn)


@jsii.implements(IValidation)
class _EveryAlarmBound:
    """A topic that no alarm uses would carry an Allow with an empty ARN list: refuse it."""

    def __init__(self, arns: _AlarmArns) -> None:
        self._arns = arns

    def validate(self) -> list[Any]:
        if self._arns.arns:
            return []
        return ["AlarmTopic: no alarm publishes to this topic; bind one with add_alarm_action"]
