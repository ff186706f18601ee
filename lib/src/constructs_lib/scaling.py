"""How a ``live`` alias's provisioned concurrency auto-scales: the range, the target, a schedule.

Plain, frozen dataclasses with no CDK in them: ``OptimizedFunction`` takes them, and the
settings model (``serverless_stack/config.py``) parses ``cdk.json`` straight into them, so there
is one definition of each field and one set of checks. The ``Annotated`` bounds are read by the
settings model (and its JSON Schema) and by ``limits.check_fields`` for any other caller.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from typing import Annotated

from annotated_types import Ge, Le, MaxLen, MinLen

from constructs_lib import cron
from constructs_lib.limits import CONCURRENCY, LimitError, UtilizationTarget, check, check_fields

Capacity = Annotated[int, Ge(CONCURRENCY[0]), Le(CONCURRENCY[1])]
Floor = Annotated[int, Ge(1), Le(CONCURRENCY[1])]
Name = Annotated[str, MinLen(1), MaxLen(64)]


@dataclass(frozen=True)
class ScheduledCapacity:
    """One scheduled change of the alias's provisioned-concurrency range.

    :param name: unique within the schedule: letters, digits and ``-``.
    :param cron: six fields without the ``cron(...)`` wrapper, e.g. ``"0 8 ? * MON-FRI *"``.
    :param min_capacity: the floor from then on (0 turns provisioned concurrency off).
    :param max_capacity: the ceiling from then on (at least ``min_capacity``).
    :param time_zone: an IANA time zone for ``cron``. :default: none (UTC)
    """

    name: Name
    cron: str
    min_capacity: Capacity
    max_capacity: Capacity
    time_zone: str | None = None

    def __post_init__(self) -> None:
        label = f"auto_scaling.schedule[{self.name!r}]"
        if not self.name.replace("-", "").isalnum() or not self.name[:1].isalpha():
            raise LimitError(
                "name",
                self.name,
                "must be letters, digits and '-', starting with a letter",
                label=label,
            )
        try:
            cron.parse(self.cron)
        except cron.CronError as error:
            reason = str(error).removeprefix(f"cron {self.cron!r}: ")
            raise LimitError("cron", self.cron, f"is not valid: {reason}", label=label) from None
        check_fields(self, label)
        check("max_capacity", self.max_capacity, (self.min_capacity, CONCURRENCY[1]), label=label)
        if self.time_zone is not None:
            try:
                zoneinfo.ZoneInfo(self.time_zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise LimitError(
                    "time_zone",
                    self.time_zone,
                    "must be an IANA time zone such as 'Europe/Berlin'",
                    label=label,
                ) from None


@dataclass(frozen=True)
class ProvisionedConcurrencyScaling:
    """Application Auto Scaling of the ``live`` alias's provisioned concurrency.

    :param min_capacity: the floor the alias never scales below (at least 1); registering the
        target raises the alias's provisioned concurrency to it (Application Auto Scaling,
        ``RegisterScalableTarget``).
    :param max_capacity: the ceiling (at least ``min_capacity``).
    :param utilization_target: the target of ``ProvisionedConcurrencyUtilization``
        (0.1 to 0.9). :default: 0.7
    :param schedule: scheduled changes of the range (business hours up, nights down).
        :default: none
    """

    min_capacity: Floor
    max_capacity: Capacity
    utilization_target: UtilizationTarget = 0.7
    schedule: tuple[ScheduledCapacity, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        label = "auto_scaling"
        check_fields(self, label)
        check("max_capacity", self.max_capacity, (self.min_capacity, CONCURRENCY[1]), label=label)
        names = [action.name for action in self.schedule]
        if len(set(names)) != len(names):
            raise LimitError("schedule", names, "must give each action a unique name", label=label)
