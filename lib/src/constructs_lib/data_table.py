"""`DataTable`: the pipeline's single DynamoDB table, on-demand and protected.

One table holds everything (records, their count markers, reference items) under a generic
``pk``/``sk`` key pair, so the stack pays for one table and its handlers need one ARN.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

#: The conventional TTL attribute: items that carry an epoch-seconds value here expire for free.
TTL_ATTRIBUTE = "expires_at"


class DataTable(Construct):
    """A PAY_PER_REQUEST table with ``pk``/``sk`` string keys, PITR, encryption, optional TTL.

    On-demand billing replaces the naive stack's fixed 5 RCU / 5 WCU: it costs nothing when
    idle and never throttles a burst that provisioned capacity would.

    Attributes: ``table``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        removal_policy: RemovalPolicy,
        deletion_protection: bool,
        time_to_live_attribute: str | None = None,
    ) -> None:
        """Create the table.

        :param removal_policy: what CloudFormation does with the table when it leaves the
            stack. Required: production data should be ``RETAIN``ed, a dev table destroyed.
        :param deletion_protection: DynamoDB's own guard against ``DeleteTable``. Required.
        :param time_to_live_attribute: the attribute whose epoch-seconds value expires an item.
            Enable it only where code writes that attribute: a TTL nobody writes deletes
            nothing. :default: none (TTL off)
        """
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute=time_to_live_attribute,
            removal_policy=removal_policy,
            deletion_protection=deletion_protection,
        )
