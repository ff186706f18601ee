"""How a new version of a ``live`` alias takes traffic: the CodeDeploy config, what rolls back.

Plain data with no CDK in it, like ``scaling.py``: the settings model parses the ``deployment``
block of ``cdk.json`` straight into :class:`DeploymentSettings`, and the stack turns it into an
``OptimizedFunction`` deployment preference (``constructs_lib.deployment``).
"""

from __future__ import annotations

from dataclasses import dataclass

from constructs_lib.limits import LimitError

#: The predefined CodeDeploy configurations for Lambda, by the name ``cdk.json`` uses, to the
#: name of the ``LambdaDeploymentConfig`` constant
#: (https://docs.aws.amazon.com/codedeploy/latest/userguide/deployment-configurations.html).
DEPLOYMENT_CONFIGS = {
    "all_at_once": "ALL_AT_ONCE",
    "canary_10_percent_5_minutes": "CANARY_10_PERCENT_5_MINUTES",
    "canary_10_percent_10_minutes": "CANARY_10_PERCENT_10_MINUTES",
    "canary_10_percent_15_minutes": "CANARY_10_PERCENT_15_MINUTES",
    "canary_10_percent_30_minutes": "CANARY_10_PERCENT_30_MINUTES",
    "linear_10_percent_every_1_minute": "LINEAR_10_PERCENT_EVERY_1_MINUTE",
    "linear_10_percent_every_2_minutes": "LINEAR_10_PERCENT_EVERY_2_MINUTES",
    "linear_10_percent_every_3_minutes": "LINEAR_10_PERCENT_EVERY_3_MINUTES",
    "linear_10_percent_every_10_minutes": "LINEAR_10_PERCENT_EVERY_10_MINUTES",
}

#: The stage's own alarms a deployment can roll back on, each on the new version alone:
#: ``errors``, the errors its code did not expect (the ``Regressions`` metric, never a rejected
#: record, a conflict or a throttle); ``duration``, its p99 duration near the timeout.
ROLLBACK_SIGNALS = ("errors", "duration")
#: Signals that are not a regression of a version, with the reason given to whoever asks.
NOT_ROLLBACK_SIGNALS = {
    "throttles": "a throttle is ordinary traffic and runs no version, so it never rolls a "
    "release back; sustained throttling pages through the stage's Throttles alarm",
}


@dataclass(frozen=True)
class DeploymentSettings:
    """How each stage's ``live`` alias moves to a new version.

    :param config: a key of :data:`DEPLOYMENT_CONFIGS`. :default: canary 10 % for 5 minutes
    :param rollback_on: the stage's own alarms that stop the shift and roll back, from
        :data:`ROLLBACK_SIGNALS`. :default: both
    """

    config: str = "canary_10_percent_5_minutes"
    rollback_on: tuple[str, ...] = ROLLBACK_SIGNALS

    def __post_init__(self) -> None:
        if self.config not in DEPLOYMENT_CONFIGS:
            raise LimitError(
                "config", self.config, f"must be one of {', '.join(DEPLOYMENT_CONFIGS)}"
            )
        for signal in self.rollback_on:
            if signal in NOT_ROLLBACK_SIGNALS:
                raise LimitError(
                    "rollback_on",
                    list(self.rollback_on),
                    f"{signal!r}: {NOT_ROLLBACK_SIGNALS[signal]}",
                )
        unknown = [s for s in self.rollback_on if s not in ROLLBACK_SIGNALS]
        if unknown or len(set(self.rollback_on)) != len(self.rollback_on):
            raise LimitError(
                "rollback_on",
                list(self.rollback_on),
                f"must list each stage alarm at most once, from {', '.join(ROLLBACK_SIGNALS)}"
                + (f" (no alarm {', '.join(map(repr, unknown))})" if unknown else ""),
            )

    @property
    def gradual(self) -> bool:
        """Whether traffic moves in steps (canary or linear), leaving time for alarms."""
        return self.config != "all_at_once"
