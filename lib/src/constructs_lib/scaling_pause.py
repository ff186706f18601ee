"""`ScalingPause`: no provisioned-concurrency scaling while CodeDeploy shifts a ``live`` alias.

Lambda cannot change an alias's provisioned concurrency while the alias routes traffic to two
versions, so an Application Auto Scaling action that fires during a canary fails, and a failed
scheduled action is not run again. This construct adds, for one ``OptimizedFunction`` whose
provisioned concurrency is auto-scaled and whose deployments are gradual:

* the release probe's hook (``ReleaseProbe``, which it extends, with the code this package
  ships in ``constructs_lib/handlers/release_hook``), run by CodeDeploy *before traffic moves*: once
  the new version answers its probe, it suspends the scalable target's dynamic and scheduled
  scaling;
* an EventBridge rule on the end of this group's deployments (success, failure or stop) that
  runs it again to resume scaling and register the range the schedule has in effect, since
  scheduled actions that fall inside a suspension are not run on resume;
* a second path, since EventBridge delivers CodeDeploy's events on a best-effort basis
  (https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-codedeploy.html): a scheduled
  check (every ``check_every``) that resumes scaling whenever no deployment of the group is
  unfinished. A lost event leaves scaling suspended for at most that period.

Its role holds exactly what the hook calls: ``RegisterScalableTarget`` on the account's scalable
targets in the region (a target's ARN ends in an id that is not a CloudFormation attribute), the
Lambda
provisioned-concurrency actions that registering a Lambda target requires, on the alias only,
``PutLifecycleEventHookExecutionStatus`` on the deployment group (granted by aws-cdk-lib's
``LambdaDeploymentGroup`` to its hooks), and ``ListDeployments`` on the group (the check).

Use: create it first, pass ``pause.function`` as the ``pre_traffic_hook`` of the function's
``DeploymentPreference``, then ``pause.attach(function, scaling)``.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam

from constructs_lib import cron
from constructs_lib.optimized_function import OptimizedFunction
from constructs_lib.paths import stack_path
from constructs_lib.release_probe import ReleaseProbe
from constructs_lib.scaling import ProvisionedConcurrencyScaling

__all__ = ["ScalingPause", "scaling_timeline"]

#: CodeDeploy's deployment states that end a deployment
#: (https://docs.aws.amazon.com/codedeploy/latest/userguide/monitoring-cloudwatch-events.html).
DEPLOYMENT_ENDED = ("SUCCESS", "FAILURE", "STOP")
#: How often the scheduled check resumes scaling that no deployment holds suspended.
CHECK_EVERY = Duration.minutes(15)


def scaling_timeline(scaling: ProvisionedConcurrencyScaling) -> dict[str, Any]:
    """What the hook needs to know of a schedule: each action's weekly minutes and range.

    :raises ValueError: for an action that is not weekly (it names days of the month, months
        or years): the hook could not tell which range is in effect after a deployment.
    """
    actions = []
    for action in scaling.schedule:
        try:
            minutes = cron.parse(action.cron).weekly_minutes()
        except cron.CronError as error:
            raise ValueError(
                f"auto_scaling.schedule[{action.name!r}].cron: {error}; a gradual deployment "
                "restores the range in effect after each shift, which needs a weekly schedule"
            ) from None
        actions.append(
            {
                "name": action.name,
                "minutes": minutes,
                "time_zone": action.time_zone,
                "min_capacity": action.min_capacity,
                "max_capacity": action.max_capacity,
            }
        )
    return {
        "min_capacity": scaling.min_capacity,
        "max_capacity": scaling.max_capacity,
        "actions": actions,
    }


class ScalingPause(ReleaseProbe):
    """The release probe's pre-traffic hook, which also suspends one alias's auto scaling, a
    deployment-end rule and a scheduled check that resume it.

    Attributes: those of ``ReleaseProbe``; ``rule`` and ``check`` (after ``attach``).
    """

    #: The deployment-end rule and the scheduled check (after ``attach``).
    rule: events.Rule | None = None
    check: events.Rule | None = None

    def attach(  # type: ignore[override]
        self,
        target: OptimizedFunction,
        scaling: ProvisionedConcurrencyScaling,
        *,
        check_every: Duration = CHECK_EVERY,
    ) -> None:
        """Probe and guard ``target`` (an ``OptimizedFunction`` with auto scaling and a
        deployment).

        :param check_every: the scheduled check's period: the longest a lost deployment-end
            event leaves scaling suspended. :default: 15 minutes
        """
        if target.deployment is None or target.scalable_target is None:
            raise ValueError(
                "ScalingPause.attach: the function needs auto_scaling and a deployment"
            )
        super().attach(target)
        fn = target.function
        alias = target.alias
        group = target.deployment.group
        self.function.add_environment(
            "SCALABLE_RESOURCE_ID", f"function:{fn.function_name}:{alias.alias_name}"
        )
        self.function.add_environment("SCALING_TIMELINE", json.dumps(scaling_timeline(scaling)))
        self.function.add_environment("DEPLOYMENT_APPLICATION", group.application.application_name)
        self.function.add_environment("DEPLOYMENT_GROUP", group.deployment_group_name)
        self._grant(target)
        self.rule = self._deployment_end_rule(target)
        self.check = self._scheduled_check(target, check_every)

    def _grant(self, target: OptimizedFunction) -> None:
        """What the hook calls: register the target, on the alias's provisioned concurrency."""
        fn, alias = target.function, target.alias
        # The account's scalable targets in this region: a target's ARN ends in an id that
        # CloudFormation does not return (its only attribute is the resource id).
        stack = Stack.of(self)
        self.hook.role.add_to_policy(
            iam.PolicyStatement(
                actions=["application-autoscaling:RegisterScalableTarget"],
                resources=[
                    stack.format_arn(
                        service="application-autoscaling",
                        resource="scalable-target",
                        resource_name="*",
                        arn_format=ArnFormat.SLASH_RESOURCE_NAME,
                    )
                ],
            )
        )
        self.hook.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "lambda:GetProvisionedConcurrencyConfig",
                    "lambda:PutProvisionedConcurrencyConfig",
                    "lambda:DeleteProvisionedConcurrencyConfig",
                ],
                resources=[f"{fn.function_arn}:{alias.alias_name}"],
            )
        )

    def _scheduled_check(self, target: OptimizedFunction, every: Duration) -> events.Rule:
        """Runs the hook ``every`` so often to resume scaling no deployment holds."""
        assert target.deployment is not None
        group = target.deployment.group
        self.hook.role.add_to_policy(
            iam.PolicyStatement(
                actions=["codedeploy:ListDeployments"], resources=[group.deployment_group_arn]
            )
        )
        return events.Rule(
            self,
            "ScheduledCheck",
            description=f"Resumes {stack_path(target)}'s scaling when no deployment holds it",
            schedule=events.Schedule.rate(every),
            targets=[
                targets.LambdaFunction(
                    self.hook.alias,
                    retry_attempts=2,
                    dead_letter_queue=self.hook.dead_letter_queue,
                )
            ],
        )

    def _deployment_end_rule(self, target: OptimizedFunction) -> events.Rule:
        """Runs the hook again at the end of each deployment of ``target``'s group."""
        assert target.deployment is not None
        group = target.deployment.group
        return events.Rule(
            self,
            "DeploymentEnded",
            description=f"The end of {stack_path(target)}'s deployments: resume its scaling",
            event_pattern=events.EventPattern(
                source=["aws.codedeploy"],
                detail_type=["CodeDeploy Deployment State-change Notification"],
                detail={
                    "state": list(DEPLOYMENT_ENDED),
                    "application": [group.application.application_name],
                    "deploymentGroup": [group.deployment_group_name],
                },
            ),
            # Through the hook's live alias, whose async config retries and dead-letters; an
            # event EventBridge cannot deliver goes to the same queue.
            targets=[
                targets.LambdaFunction(
                    self.hook.alias,
                    retry_attempts=2,
                    dead_letter_queue=self.hook.dead_letter_queue,
                )
            ],
        )
