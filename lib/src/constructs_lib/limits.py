"""AWS's limits that the constructs and the configuration check, in one place.

Plain data, no CDK: the settings model (``serverless_stack/config.py``) and the constructs import
the same numbers, so a value the configuration accepts is one the construct accepts, and both
refuse at synth what AWS would refuse at deploy.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Any, get_args, get_origin

from annotated_types import Ge, Le

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
#: The bounded values as types: the settings model's fields are these, so pydantic checks them
#: (and writes them into the JSON Schema), and ``check`` reads the same bounds for the constructs.
MemoryMB = Annotated[int, Ge(MEMORY_MB[0]), Le(MEMORY_MB[1])]
TimeoutSeconds = Annotated[int, Ge(TIMEOUT_SECONDS[0]), Le(TIMEOUT_SECONDS[1])]
Concurrency = Annotated[int, Ge(CONCURRENCY[0]), Le(CONCURRENCY[1])]
ReservedConcurrency = Annotated[int, Ge(1), Le(CONCURRENCY[1])]
UtilizationTarget = Annotated[float, Ge(UTILIZATION_TARGET[0]), Le(UTILIZATION_TARGET[1])]

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
    argument: str,
    value: object,
    bounds: tuple[float | None, float | None],
    unit: str = "",
    *,
    label: str = "",
) -> None:
    """Refuse ``value`` outside ``bounds`` (inclusive; ``None``: unbounded), naming ``argument``
    (within ``label``)."""
    low, high = bounds
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if number and (low is None or low <= value) and (high is None or value <= high):  # type: ignore[operator]
        return
    if low is not None and high is not None:
        allowed = f"must be from {low} to {high}{unit}"
    else:
        allowed = (
            f"must be a number of at least {low}" if high is None else f"must be at most {high}"
        )
    raise LimitError(argument, value, allowed, label=label)


def bounds_of(annotation: Any) -> tuple[Any, Any]:
    """The ``Ge`` and ``Le`` bounds of ``Annotated[X, Ge(a), Le(b)]`` (or of it ``| None``)."""
    if get_origin(annotation) in (types.UnionType, typing.Union):
        found = [bounds_of(a) for a in get_args(annotation) if a is not type(None)]
        return found[0] if found else (None, None)
    if get_origin(annotation) is not Annotated:
        return None, None
    marks = {type(m).__name__: m for m in get_args(annotation)[1:]}
    return getattr(marks.get("Ge"), "ge", None), getattr(marks.get("Le"), "le", None)


def check_fields(instance: Any, label: str = "") -> None:
    """Each field of a dataclass within the bounds its ``Annotated`` type carries: the same
    bounds the settings model (pydantic) applies, for a caller that builds it directly."""
    hints = typing.get_type_hints(type(instance), include_extras=True)
    for field in dataclasses.fields(instance):
        bounds = bounds_of(hints[field.name])
        if bounds != (None, None):
            check(field.name, getattr(instance, field.name), bounds, label=label)


class LimitError(ValueError):
    """A value outside what AWS (or the construct) accepts, naming the argument.

    The settings model reads ``argument``, ``value`` and ``allowed`` to name the ``cdk.json`` key.

    :param argument: the field's own name.
    :param value: the value given.
    :param allowed: what the field allows, in words (``must be from 1 to 10``).
    :param label: where the field sits (``schedule['Night'].cron``). :default: none
    """

    def __init__(self, argument: str, value: object, allowed: str, *, label: str = "") -> None:
        where = f"{label}.{argument}" if label else argument
        super().__init__(f"{where} {allowed}, got {value!r}")
        self.argument, self.value, self.allowed = argument, value, allowed
