"""The hook CodeDeploy runs around a release of a ``live`` alias: probe it, pause its scaling.

**The probe.** Before any traffic moves (CodeDeploy's ``BeforeAllowTraffic`` hook), the hook
invokes the new version once, synchronously, with :data:`PROBE_EVENT` (``PROBE_FUNCTION``: the
version's ARN, set by the construct, as AWS's own pre-traffic hook tutorial passes the new
version, https://docs.aws.amazon.com/codedeploy/latest/userguide/tutorial-lambda-sam-create-lambda-hooks.html).
A stage answers the probe from inside its handler, after its module is imported and its clients
made, and stores nothing (``pipeline_common.invocation``). A version that cannot import, fails
in its init, is killed (out of memory, ``Runtime.ExitError``) or times out answers with a
``FunctionError`` instead (Lambda's ``Invoke`` response, "FunctionError",
https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html). The hook then reports
``Failed``: CodeDeploy stops the deployment before any traffic has moved, and CloudFormation
rolls the alias back (https://docs.aws.amazon.com/codedeploy/latest/userguide/reference-appspec-file-structure-hooks.html#appspec-hooks-lambda).

**The scaling pause** (where ``SCALABLE_RESOURCE_ID`` is set): keeps Application Auto Scaling
off a ``live`` alias while CodeDeploy shifts its traffic.

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
from botocore.config import Config

MINUTES_PER_WEEK = 7 * 24 * 60
SCALABLE_DIMENSION = "lambda:function:ProvisionedConcurrency"

#: What the hook sends the new version, and what a healthy stage answers
#: (``lambda_src/pipeline_common/invocation.py`` answers it; a test holds the two equal).
PROBE_EVENT = {"releaseProbe": True}
PROBE_ANSWER = {"releaseProbe": "ok"}

autoscaling = boto3.client("application-autoscaling")
codedeploy = boto3.client("codedeploy")
#: The probe waits for the version's own timeout (up to Lambda's 900 s), not botocore's 60 s.
lambda_client = boto3.client("lambda", config=Config(read_timeout=910, connect_timeout=10))


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
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return periodic_check(event)
    raise ValueError(
        "event: not a CodeDeploy lifecycle hook (DeploymentId, LifecycleEventHookExecutionId), "
        "a CodeDeploy deployment state change or the scheduled check"
    )


def probe_failure() -> str | None:
    """Invoke the new version with the probe; why it failed, or ``None`` when it answered."""
    version = os.environ.get("PROBE_FUNCTION")
    if not version:
        return None
    try:
        response = lambda_client.invoke(
            FunctionName=version,
            InvocationType="RequestResponse",
            Payload=json.dumps(PROBE_EVENT).encode(),
        )
    except Exception as error:
        return f"could not invoke {version}: {error}"
    body = response["Payload"].read().decode("utf-8", "replace")
    if response.get("FunctionError"):
        return f"{version} failed the release probe ({response['FunctionError']}): {body[:500]}"
    try:
        answer = json.loads(body)
    except ValueError:
        answer = body
    if answer != PROBE_ANSWER:
        return f"{version} answered the release probe with {body[:200]!r}, not {PROBE_ANSWER}"
    return None


def before_traffic(event: dict[str, Any]) -> dict[str, Any]:
    failure = probe_failure()
    scaling = "unchanged"
    if failure is None and "SCALABLE_RESOURCE_ID" in os.environ:
        try:
            autoscaling.register_scalable_target(**target(), SuspendedState=suspended(True))
            scaling = "suspended"
        except Exception as error:  # reported to CodeDeploy, which then fails the deployment
            failure = f"could not suspend scaling: {error}"
    if failure is not None:
        print(json.dumps({"level": "ERROR", "message": failure}))
    status = "Succeeded" if failure is None else "Failed"
    codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=event["DeploymentId"],
        lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"],
        status=status,
    )
    return {"scaling": scaling, "status": status, **({"failure": failure} if failure else {})}


def after_deployment(event: dict[str, Any]) -> dict[str, Any]:
    return resume(deployment=event.get("detail", {}).get("state"))


def resume(**why: Any) -> dict[str, Any]:
    """Resume scaling with the range the schedule has in effect now."""
    low, high = range_in_effect(json.loads(os.environ["SCALING_TIMELINE"]), datetime.now(UTC))
    autoscaling.register_scalable_target(
        **target(), MinCapacity=low, MaxCapacity=high, SuspendedState=suspended(False)
    )
    return {"scaling": "resumed", **why, "min_capacity": low, "max_capacity": high}


#: CodeDeploy's deployment statuses of a deployment that has not ended
#: (https://docs.aws.amazon.com/codedeploy/latest/APIReference/API_ListDeployments.html).
UNFINISHED = ["Created", "Queued", "InProgress", "Baking", "Ready"]


def periodic_check(event: dict[str, Any]) -> dict[str, Any]:
    """The second path to resume: EventBridge delivers CodeDeploy's state changes on a
    best-effort basis, so a scheduled check resumes scaling whenever no deployment of the group
    is unfinished. Registering the range in effect again is what the end of a deployment does,
    so a check while scaling runs changes nothing."""
    unfinished = codedeploy.list_deployments(
        applicationName=os.environ["DEPLOYMENT_APPLICATION"],
        deploymentGroupName=os.environ["DEPLOYMENT_GROUP"],
        includeOnlyStatuses=UNFINISHED,
    )["deployments"]
    if unfinished:
        return {"scaling": "suspended", "unfinished": unfinished}
    return resume(check=event.get("time"))
