"""Application Auto Scaling cron expressions, parsed once for everyone that reads them.

Six fields, as AWS writes them *without* the ``cron(...)`` wrapper::

    minute  hour  day-of-month  month  day-of-week  year
    0       8     ?             *      MON-FRI      *

Ranges, lists, ``*`` and steps (``*/15``, ``10-50/10``) are accepted in every field; ``?`` in
day-of-month or day-of-week, and one of the two must be ``?`` (AWS: "You can't specify the
Day-of-month and Day-of-week fields in the same cron expression"); ``L``, ``W`` and ``#`` where
AWS allows them. Reference: https://docs.aws.amazon.com/autoscaling/application/userguide/scheduled-scaling-using-cron-expressions.html
(the same syntax as EventBridge's cron expressions).

Plain Python, no CDK: the configuration validates with it, the construct with it, and the cost
report expands a weekly schedule with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week", "year")
_RANGES = {
    "minute": (0, 59),
    "hour": (0, 23),
    "day-of-month": (1, 31),
    "month": (1, 12),
    "day-of-week": (1, 7),
    "year": (1970, 2199),
}
_MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_MONTHS = {m: i + 1 for i, m in enumerate(_MONTH_NAMES)}
#: AWS numbers the days of the week from Sunday = 1.
_WEEKDAYS = {d: i + 1 for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_NAMES = {"month": _MONTHS, "day-of-week": _WEEKDAYS}
_SPECIAL = {
    "day-of-month": re.compile(r"^(L|LW|\d{1,2}W)$"),
    "day-of-week": re.compile(r"^([1-7]|SUN|MON|TUE|WED|THU|FRI|SAT)(L|#[1-5])$|^L$"),
}
MINUTES_PER_WEEK = 7 * 24 * 60


class CronError(ValueError):
    """A cron expression AWS would refuse, with the field and the reason."""


@dataclass(frozen=True)
class Cron:
    """A parsed expression; ``None`` for a field given as ``?`` or a special (L, W, #) form.

    :param expression: the expression as given, ``M H DOM MON DOW YEAR``.
    :param minutes: the minutes it fires at, 0-59.
    :param hours: the hours (UTC) it fires at, 0-23.
    :param days_of_month: the days of the month, 1-31; ``None`` for ``?`` or L/W forms.
    :param months: the months, 1-12.
    :param days_of_week: the days of the week, 1 = Sunday ... 7 = Saturday; ``None`` for ``?``
        or L/# forms.
    :param years: the years, 1970-2199.
    """

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int] | None
    months: frozenset[int]
    days_of_week: frozenset[int] | None  # 1 = Sunday ... 7 = Saturday
    years: frozenset[int]

    def weekly_minutes(self) -> list[int]:
        """Minutes of the week (Sunday 00:00 = 0) at which a weekly schedule fires.

        :raises CronError: when the expression is not weekly (it names days of the month,
            months or years), since then it does not repeat every week.
        """
        every = (
            self.days_of_month in (None, frozenset(range(1, 32)))
            and self.months == frozenset(range(1, 13))
            and self.years == frozenset(range(1970, 2200))
        )
        if not every or (self.days_of_week is None and self.days_of_month is None):
            raise CronError(
                f"cron {self.expression!r}: not a weekly schedule (M H ? * DAYS * repeats every "
                "week)"
            )
        days = self.days_of_week if self.days_of_week is not None else frozenset(range(1, 8))
        return sorted(
            (d - 1) * 1440 + h * 60 + m for d in days for h in self.hours for m in self.minutes
        )


def parse(expression: object) -> Cron:
    """Parse a six-field cron expression; :class:`CronError` names the field that is wrong."""
    if not isinstance(expression, str):
        raise CronError(f"cron must be a string of six fields, got {expression!r}")
    fields = expression.split()
    if len(fields) != 6:
        raise CronError(
            f"cron {expression!r}: needs six fields (minute hour day-of-month month day-of-week "
            f"year), e.g. '0 8 ? * MON-FRI *'; got {len(fields)}"
        )
    values: dict[str, frozenset[int] | None] = {}
    for name, text in zip(FIELD_NAMES, fields, strict=True):
        values[name] = _field(expression, name, text.upper())
    day_of_month, day_of_week = fields[2], fields[4]
    if (day_of_month == "?") == (day_of_week == "?"):
        raise CronError(
            f"cron {expression!r}: exactly one of day-of-month and day-of-week must be '?'"
        )
    return Cron(
        expression=expression,
        minutes=_set(values["minute"]),
        hours=_set(values["hour"]),
        days_of_month=values["day-of-month"],
        months=_set(values["month"]),
        days_of_week=values["day-of-week"],
        years=_set(values["year"]),
    )


def _set(value: frozenset[int] | None) -> frozenset[int]:
    assert value is not None  # only day fields may be '?' or special
    return value


def _field(expression: str, name: str, text: str) -> frozenset[int] | None:
    low, high = _RANGES[name]
    if text == "?":
        if name in ("day-of-month", "day-of-week"):
            return None
        raise CronError(f"cron {expression!r}: '?' is only allowed in day-of-month or day-of-week")
    if name in _SPECIAL and _SPECIAL[name].match(text):
        return None
    result: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = _number(expression, name, step_text, 1, high) if step_text else 1
        if base == "*":
            start, end = low, high
        else:
            bounds = base.split("-")
            if len(bounds) > 2 or not all(bounds):
                raise CronError(f"cron {expression!r}: {name} field {text!r} is not valid")
            start = _value(expression, name, bounds[0], low, high)
            end = _value(expression, name, bounds[-1], low, high) if len(bounds) == 2 else start
            if step_text and len(bounds) == 1:
                end = high
            if end < start:
                raise CronError(f"cron {expression!r}: {name} range {base!r} runs backwards")
        result.update(range(start, end + 1, step))
    return frozenset(result)


def _value(expression: str, name: str, text: str, low: int, high: int) -> int:
    named = _NAMES.get(name, {})
    if text in named:
        return named[text]
    return _number(expression, name, text, low, high)


def _number(expression: str, name: str, text: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise CronError(
            f"cron {expression!r}: {name} value {text!r} is out of range {low}-{high}"
            + (f" (or {', '.join(_NAMES[name])})" if name in _NAMES else "")
        )
    return int(text)
