"""`ReleaseProbe`: a new version that cannot start is stopped before it takes any traffic.

A stage's rollback alarms count what its code sees. A version that fails before its code runs
(an import error, an exception at init, an out-of-memory kill, ``Runtime.ExitError``, a timeout)
emits none of that, so without a probe CodeDeploy would shift it to 100 % while every record
went to the dead-letter queue.

So each gradually shifted ``live`` alias gets a pre-traffic hook (CodeDeploy's
``BeforeAllowTraffic``) that invokes the *new version* once, synchronously, with a probe event
the stage answers without storing anything. Any ``FunctionError`` fails the hook, and CodeDeploy
stops the deployment before traffic moves; CloudFormation then rolls the alias back
(https://docs.aws.amazon.com/codedeploy/latest/userguide/reference-appspec-file-structure-hooks.html#appspec-hooks-lambda;
the pattern of AWS's tutorial, whose hook gets the new version in its environment:
https://docs.aws.amazon.com/codedeploy/latest/userguide/tutorial-lambda-sam-create-lambda-hooks.html).
The hook's code comes with this package (``constructs_lib/handlers/release_hook``, deployed as
its own asset and never imported here); a caller may give other code in ``function_props``.

Its role holds ``lambda:InvokeFunction`` on exactly the new version, and
``PutLifecycleEventHookExecutionStatus`` on the deployment group (granted by aws-cdk-lib's
``LambdaDeploymentGroup`` to its hooks) and on ``*``: the Service Authorization Reference lists
no resource type for that action, and an action without one matches only ``*``
(https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscodedeploy.html).
The alias depends on the hook, so the hook, its new target and its grant are in place before
the alias update starts the deployment.

Use: create it first, pass ``probe.function`` as the ``pre_traffic_hook`` of the function's
``DeploymentPreference``, then ``probe.attach(function)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from constructs_lib.optimized_function import OptimizedFunction, props_of

__all__ = ["HOOK_DEFAULTS", "HOOK_HANDLER", "ReleaseProbe", "hook_code"]

#: The folder this package ships the hook's code in: ``release_hook/`` (boto3 only, which the
#: Lambda Python runtime provides).
HOOK_CODE = Path(__file__).resolve().parent / "handlers"
#: The shipped hook's handler.
HOOK_HANDLER = "release_hook.handler.lambda_handler"

#: The hook's props where the caller gives none. Its timeout covers the probed version's own
#: (the probe waits for it) with a margin for the hook's own calls.
HOOK_DEFAULTS: dict[str, Any] = {
    "memory_size": 128,
    "timeout": Duration.seconds(90),
    "tracing": lambda_.Tracing.PASS_THROUGH,
    "description": "Probes a new version of the alias before CodeDeploy moves traffic to it",
}
#: What the hook needs beyond the probed version's timeout: its client set-up and its report.
HOOK_MARGIN_SECONDS = 30


def hook_code() -> lambda_.Code:
    """The shipped hook's code, as a new asset (an asset belongs to one stack)."""
    return lambda_.Code.from_asset(
        str(HOOK_CODE), exclude=["**/__pycache__", "**/*.pyc", "**/.mypy_cache"]
    )


class ReleaseProbe(Construct):
    """A pre-traffic hook that probes the new version of one alias.

    Attributes: ``function`` (the hook, an ``OptimizedFunction``'s function), ``hook`` (that
    ``OptimizedFunction``) and ``target`` (after ``attach``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function_props: lambda_.FunctionOptions | lambda_.FunctionProps | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_WEEK,
        log_encryption_key: kms.IKey | None = None,
    ) -> None:
        """
        :param function_props: the hook's props (``FunctionOptions``, or ``FunctionProps``
            with code of the caller's own), merged over :data:`HOOK_DEFAULTS` and the
            shipped code (``code``: :func:`hook_code`, ``handler``: :data:`HOOK_HANDLER`,
            ``runtime``: Python 3.14); for example its ``architecture`` and where a failed
            event goes (``dead_letter_queue``). :default: the shipped hook, as it is
        :param log_retention: the hook's log retention. :default: 7 days
        :param log_encryption_key: a KMS key for the hook's logs. :default: none
        """
        super().__init__(scope, construct_id)
        self.hook = OptimizedFunction(
            self,
            "Hook",
            function_props=lambda_.FunctionProps(**self._props(function_props)),
            log_retention=log_retention,
            log_encryption_key=log_encryption_key,
        )
        self.function = self.hook.function
        self.target: OptimizedFunction | None = None

    @staticmethod
    def _props(
        function_props: lambda_.FunctionOptions | lambda_.FunctionProps | None,
    ) -> dict[str, Any]:
        given = props_of(function_props) if function_props is not None else {}
        shipped = {"handler": HOOK_HANDLER, "runtime": lambda_.Runtime.PYTHON_3_14}
        if "code" not in given:
            shipped["code"] = hook_code()
        return {**HOOK_DEFAULTS, **shipped, **given}

    def attach(self, target: OptimizedFunction) -> None:
        """Probe each new version of ``target`` (an ``OptimizedFunction`` with a deployment)
        before its alias takes traffic.

        :raises ValueError: when ``target`` has no deployment, or its timeout leaves the hook
            (whose timeout is its props') no time to report after the probe.
        """
        if target.deployment is None:
            raise ValueError("ReleaseProbe.attach: the function needs a deployment")
        hook_timeout = int(self.function.timeout.to_seconds()) if self.function.timeout else 3
        target_timeout = int(target.function.timeout.to_seconds()) if target.function.timeout else 3
        if hook_timeout < target_timeout + HOOK_MARGIN_SECONDS:
            raise ValueError(
                f"ReleaseProbe.attach: the hook's timeout ({hook_timeout} s) must be at least the "
                f"probed function's ({target_timeout} s) plus {HOOK_MARGIN_SECONDS} s; set "
                "timeout in the hook's function_props"
            )
        self.target = target
        # The hook (its target and its grant) is up to date before the alias update calls it.
        target.alias.node.add_dependency(self.function)
        self.function.add_environment("PROBE_FUNCTION", target.version.function_arn)
        self.hook.role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[target.version.function_arn]
            )
        )
        # aws-cdk-lib's deployment group grants its hooks this action on the group's ARN, as
        # AWS's tutorial scopes it; the Service Authorization Reference lists no resource type
        # for it, and then only "*" matches. Both are held, so the hook may report either way.
        self.hook.role.add_to_policy(
            iam.PolicyStatement(
                actions=["codedeploy:PutLifecycleEventHookExecutionStatus"], resources=["*"]
            )
        )
