"""`SafeDeployment`: CodeDeploy shifts a ``live`` alias to each new version, and rolls back.

Every invoke path goes through ``live``, so that is where a release is made safe: CloudFormation
hands the alias update to CodeDeploy (the alias's ``UpdatePolicy.CodeDeployLambdaAliasUpdate``),
which moves traffic from the old version to the new one by the deployment config (all at once,
canary or linear), stops and moves it all back when one of the rollback alarms fires, and fails
the stack update with it. CodeDeploy for Lambda has no charge
(https://aws.amazon.com/codedeploy/pricing/).

The deployment group's role holds no AWS-managed policy. aws-cdk-lib's
``LambdaDeploymentGroup`` attaches ``AWSCodeDeployRoleForLambdaLimited`` (``cloudwatch:
DescribeAlarms``, ``lambda:GetAlias``, ``lambda:UpdateAlias`` and ``lambda:
GetProvisionedConcurrencyConfig`` on ``*``, S3 reads of revisions, and invoking any
``CodeDeployHook_*`` function; no ``sns:Publish``:
https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSCodeDeployRoleForLambdaLimited.html)
to any role it can change, so it gets this role *without policy updates*. The role's own policy
holds what CodeDeploy calls, each on the resource form Lambda authorises it against
(https://docs.aws.amazon.com/lambda/latest/dg/lambda-api-permissions-ref.html, "Function
actions"):

* ``GetAlias`` and ``UpdateAlias`` act on the *function*: the unqualified ARN. A grant on
  ``<function>:live`` alone is denied (the first deploy creates the alias without CodeDeploy and
  passes; every later one would fail);
* ``GetProvisionedConcurrencyConfig`` acts on a version or an alias: the qualified ARNs of this
  function (``<function>:*``; AWS does not document which qualifier CodeDeploy names, and the
  action only reads);
* ``cloudwatch:DescribeAlarms`` on exactly the rollback alarms (the action takes alarm ARNs, as
  AWS's own examples scope it:
  https://docs.aws.amazon.com/r53recovery/latest/dg/security_iam_region_switch_cloudwatch.html);
* ``lambda:InvokeFunction`` on exactly the hooks.

No SNS triggers and no S3 revisions are used: CloudFormation passes the AppSpec itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from constructs_lib.deployment_settings import DEPLOYMENT_CONFIGS
from constructs_lib.paths import stack_path

__all__ = ["DeploymentPreference", "SafeDeployment", "deployment_config"]


def deployment_config(name: str) -> codedeploy.ILambdaDeploymentConfig:
    """The predefined Lambda deployment config named ``name`` (``canary_10_percent_5_minutes``)."""
    if name not in DEPLOYMENT_CONFIGS:
        raise ValueError(
            f"deployment config {name!r}: must be one of {', '.join(DEPLOYMENT_CONFIGS)}"
        )
    config: codedeploy.ILambdaDeploymentConfig = getattr(
        codedeploy.LambdaDeploymentConfig, DEPLOYMENT_CONFIGS[name]
    )
    return config


@dataclass(frozen=True)
class DeploymentPreference:
    """How an alias takes a new version.

    :param config: e.g. ``deployment_config("canary_10_percent_5_minutes")``.
    :param alarms: alarms that stop and roll back a deployment (more can be added later with
        ``SafeDeployment.add_rollback_alarm``). :default: none
    :param pre_traffic_hook: a function CodeDeploy runs before any traffic moves; it reports
        back with ``codedeploy:PutLifecycleEventHookExecutionStatus``. :default: none
    :param post_traffic_hook: the same after all traffic has moved. :default: none
    :param application: the CodeDeploy application to put the group in. :default: a new one
    """

    config: codedeploy.ILambdaDeploymentConfig
    alarms: tuple[cloudwatch.IAlarm, ...] = field(default_factory=tuple)
    pre_traffic_hook: lambda_.IFunction | None = None
    post_traffic_hook: lambda_.IFunction | None = None
    application: codedeploy.ILambdaApplication | None = None


class SafeDeployment(Construct):
    """A CodeDeploy deployment group on one alias, with a role of exactly what it needs.

    :param alias: the alias CodeDeploy shifts to each new version (a ``live`` alias).
    :param preference: how it shifts: the config, the rollback alarms and the hooks.

    Attributes: ``group`` (the ``LambdaDeploymentGroup``), ``role``, ``alarms``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alias: lambda_.Alias,
        preference: DeploymentPreference,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alarms: list[cloudwatch.IAlarm] = []
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("codedeploy.amazonaws.com"),
            description=f"CodeDeploy shifting {stack_path(alias)}",
        )
        # ARNs built from the function's, never the alias's Ref: the alias depends on the
        # deployment group (it must shift after the group is up to date), so the group's role
        # must not depend on the alias.
        function_arn = alias.version.lambda_.function_arn
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:GetAlias", "lambda:UpdateAlias"], resources=[function_arn]
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:GetProvisionedConcurrencyConfig"],
                resources=[f"{function_arn}:*"],
            )
        )
        self._describe_alarms: iam.PolicyStatement | None = None
        hooks = [h for h in (preference.pre_traffic_hook, preference.post_traffic_hook) if h]
        if hooks:
            self.role.add_to_policy(
                iam.PolicyStatement(
                    actions=["lambda:InvokeFunction"], resources=[h.function_arn for h in hooks]
                )
            )
        self.group = codedeploy.LambdaDeploymentGroup(
            self,
            "Group",
            alias=alias,
            application=preference.application,
            deployment_config=preference.config,
            # Without policy updates: the group would attach an AWS-managed policy to it.
            role=self.role.without_policy_updates(),
            pre_hook=preference.pre_traffic_hook,
            post_hook=preference.post_traffic_hook,
        )
        # CloudFormation updates the alias (and so starts the shift) only once the group, its
        # alarms and their dimensions (the new version) are up to date, and so is the role's
        # policy: it names the rollback alarms, which are new with every version, and with
        # IgnorePollAlarmFailure false CodeDeploy stops a deployment whose alarms it cannot
        # read (AWS::CodeDeploy::DeploymentGroup AlarmConfiguration,
        # https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-properties-codedeploy-deploymentgroup-alarmconfiguration.html).
        alias.node.add_dependency(self.group)
        alias.node.add_dependency(self.role)
        for alarm in preference.alarms:
            self.add_rollback_alarm(alarm)

    def add_rollback_alarm(self, alarm: cloudwatch.IAlarm) -> None:
        """Stop and roll back a deployment when ``alarm`` fires; the role may read it."""
        self.group.add_alarm(alarm)
        self.alarms.append(alarm)
        if self._describe_alarms is None:
            self._describe_alarms = iam.PolicyStatement(actions=["cloudwatch:DescribeAlarms"])
            self.role.add_to_policy(self._describe_alarms)
        self._describe_alarms.add_resources(alarm.alarm_arn)
