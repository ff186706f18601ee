"""AWS's limits that the constructs and the configuration check, in one place.

Plain data, no CDK: the settings model (``serverless_stack/config.py``) and the constructs import
the same numbers, so a value the configuration accepts is one the construct accepts, and both
refuse at synth what AWS would refuse at deploy.
"""

from __future__ import annotations

#: Lambda function memory, MB (CreateFunction ``MemorySize``).
MEMORY_MB = (128, 10240)
#: Lambda function timeout, seconds (CreateFunction ``Timeout``).
TIMEOUT_SECONDS = (1, 900)
#: Async invoke config: retry attempts and maximum event age (PutFunctionEventInvokeConfig).
MAX_RETRY_ATTEMPTS = (0, 2)
MAX_EVENT_AGE_SECONDS = (60, 21600)
#: The longest SQS keeps a message (SetQueueAttributes ``MessageRetentionPeriod``): 14 days.
SQS_MAX_RETENTION_DAYS = 14
#: The maximum event age ``OptimizedFunction`` gives its alias where the caller gives none.
DEFAULT_MAX_EVENT_AGE_SECONDS = 3600
#: Provisioned and reserved concurrency the project lets a setting ask for. Lambda's real ceiling
#: is the account's concurrency quota minus the 100 it keeps unreserved; 1000 is the default quota.
CONCURRENCY = (0, 1000)
#: Target of ``ProvisionedConcurrencyUtilization`` for target tracking.
UTILIZATION_TARGET = (0.1, 0.9)
#: Every retention CloudWatch Logs accepts, in days (PutRetentionPolicy ``retentionInDays``).
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
#: CloudWatch alarms on one-minute metrics: the period is a whole number of minutes, and
#: Period x EvaluationPeriods is at most one day below a one-hour period, seven days from it
#: (PutMetricAlarm: https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html).
ALARM_PERIOD_STEP_SECONDS = 60
ALARM_PERIOD_SECONDS = (60, 86400)
ALARM_EVALUATION_PERIODS = (1, 100)


def max_evaluation_range_seconds(period_seconds: int) -> int:
    """The longest Period x EvaluationPeriods CloudWatch accepts for ``period_seconds``."""
    return 604800 if period_seconds >= 3600 else 86400


def check(
    argument: str, value: object, bounds: tuple[float, float], unit: str = "", *, label: str = ""
) -> None:
    """Refuse ``value`` outside ``bounds`` (inclusive), naming ``argument`` (within ``label``)."""
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise LimitError(argument, value, f"must be from {low} to {high}{unit}", label=label)


class LimitError(ValueError):
    """A value outside what AWS (or the construct) accepts, naming the argument.

    ``argument`` is the field's own name, ``label`` where it sits (``schedule['Night'].cron``);
    the settings model reads ``argument``, ``value`` and ``allowed`` to name the ``cdk.json`` key.
    """

    def __init__(self, argument: str, value: object, allowed: str, *, label: str = "") -> None:
        where = f"{label}.{argument}" if label else argument
        super().__init__(f"{where} {allowed}, got {value!r}")
        self.argument, self.value, self.allowed = argument, value, allowed
