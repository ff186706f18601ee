"""Keeps Application Auto Scaling off a ``live`` alias while CodeDeploy shifts its traffic.

Lambda cannot change an alias's provisioned concurrency while the alias routes traffic to two
versions ("you can't manage provisioned concurrency settings on the alias while the routing
configuration is in place", https://docs.aws.amazon.com/lambda/latest/dg/configuration-aliases.html;
the error is "Alias with weights can not be used with Provisioned Concurrency"). A scaling action
during a canary would fail, and a failed scheduled action is not run again: a processor left
cold all morning, or warm all night.

So the alias's scaling is suspended for the length of each deployment:

* **before traffic moves** (CodeDeploy's ``BeforeAllowTraffic`` hook: an event with
  ``DeploymentId`` and ``LifecycleEventHookExecutionId``), this suspends dynamic and scheduled
  scaling of the scalable target (``SuspendedState``,
  https://docs.aws.amazon.com/autoscaling/application/userguide/application-auto-scaling-suspend-resume-scaling.html)
  and reports the hook's status; a failure to suspend fails the deployment before any traffic
  moves;
* **when the deployment ends**, however it ends (an EventBridge "CodeDeploy Deployment
  State-change Notification" with state SUCCESS, FAILURE or STOP,
  https://docs.aws.amazon.com/codedeploy/latest/userguide/monitoring-cloudwatch-events.html),
  the alias routes to one version again: this resumes scaling and registers the range the
  schedule has in effect now. Scheduled actions that fell inside the suspension are not run
  when scaling resumes, so the range they would have set is applied here; target tracking
  evaluates its alarms again on resume.

``SCALING_TIMELINE`` (set by the construct from the schedule) lists, per scheduled action, the
minutes of the week it fires at in its time zone and the range it sets; the action that fired
last is the one in effect.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import boto3

MINUTES_PER_WEEK = 7 * 24 * 60
SCALABLE_DIMENSION = "lambda:function:ProvisionedConcurrency"

autoscaling = boto3.client("application-autoscaling")
codedeploy = boto3.client("codedeploy")


def target() -> dict[str, str]:
    """The scalable target: the alias's provisioned concurrency."""
    return {
        "ServiceNamespace": "lambda",
        "ResourceId": os.environ["SCALABLE_RESOURCE_ID"],
        "ScalableDimension": SCALABLE_DIMENSION,
    }


def suspended(value: bool) -> dict[str, bool]:
    return {
        "DynamicScalingInSuspended": value,
        "DynamicScalingOutSuspended": value,
        "ScheduledScalingSuspended": value,
    }


def minute_of_week(moment: datetime) -> int:
    """Sunday 00:00 = 0, as the construct counts a schedule's minutes."""
    return (moment.isoweekday() % 7) * 1440 + moment.hour * 60 + moment.minute


def range_in_effect(timeline: dict[str, Any], now: datetime) -> tuple[int, int]:
    """The (min, max) the schedule has set last before ``now``; without one, the target's own."""
    latest: tuple[int, int, int] | None = None  # minutes ago, min, max
    for action in timeline["actions"]:
        local = now.astimezone(ZoneInfo(action["time_zone"] or "UTC"))
        minute = minute_of_week(local)
        ago = min((minute - fired) % MINUTES_PER_WEEK for fired in action["minutes"])
        if latest is None or ago < latest[0]:
            latest = (ago, action["min_capacity"], action["max_capacity"])
    if latest is None:
        return timeline["min_capacity"], timeline["max_capacity"]
    return latest[1], latest[2]


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "LifecycleEventHookExecutionId" in event:
        return before_traffic(event)
    if event.get("source") == "aws.codedeploy":
        return after_deployment(event)
    raise ValueError(
        "event: not a CodeDeploy lifecycle hook (DeploymentId, LifecycleEventHookExecutionId) "
        "or a CodeDeploy deployment state change"
    )


def before_traffic(event: dict[str, Any]) -> dict[str, Any]:
    status = "Succeeded"
    try:
        autoscaling.register_scalable_target(**target(), SuspendedState=suspended(True))
    except Exception as error:  # reported to CodeDeploy, which then fails the deployment
        status = "Failed"
        print(json.dumps({"level": "ERROR", "message": f"could not suspend scaling: {error}"}))
    codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=event["DeploymentId"],
        lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"],
        status=status,
    )
    return {"scaling": "suspended" if status == "Succeeded" else "unchanged", "status": status}


def after_deployment(event: dict[str, Any]) -> dict[str, Any]:
    low, high = range_in_effect(json.loads(os.environ["SCALING_TIMELINE"]), datetime.now(UTC))
    autoscaling.register_scalable_target(
        **target(), MinCapacity=low, MaxCapacity=high, SuspendedState=suspended(False)
    )
    state = event.get("detail", {}).get("state")
    return {"scaling": "resumed", "deployment": state, "min_capacity": low, "max_capacity": high}
