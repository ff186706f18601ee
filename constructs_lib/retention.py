"""CloudWatch Logs retention periods, as plain day counts and as CDK values.

Configuration speaks in days (``7``); CDK speaks in ``RetentionDays`` members. CloudWatch
offers only a fixed set of periods, so anything else is rejected before deploy.
"""

from __future__ import annotations

from aws_cdk import aws_logs as logs

#: Every retention CloudWatch Logs accepts, in days, in the order of ``RetentionDays``.
RETENTION_DAYS: tuple[int, ...] = (
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

_BY_DAYS = dict(
    zip(RETENTION_DAYS, [m for m in logs.RetentionDays if m.name != "INFINITE"], strict=True)
)


def retention_days(days: int) -> logs.RetentionDays:
    """Return the ``RetentionDays`` member for ``days``; ``ValueError`` if CloudWatch has none."""
    try:
        return _BY_DAYS[days]
    except KeyError:
        raise ValueError(
            f"log retention must be one of {', '.join(map(str, RETENTION_DAYS))} days, got {days!r}"
        ) from None
