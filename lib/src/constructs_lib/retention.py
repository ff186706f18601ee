"""CloudWatch Logs retention periods, as plain day counts and as CDK values.

Configuration speaks in days (``7``); CDK speaks in ``RetentionDays`` members. CloudWatch
offers only a fixed set of periods, so anything else is rejected before deploy.
"""

from __future__ import annotations

from aws_cdk import aws_logs as logs

from constructs_lib.limits import LOG_RETENTION_DAYS

#: Every retention CloudWatch Logs accepts, in days, in the order of ``RetentionDays``.
RETENTION_DAYS = LOG_RETENTION_DAYS

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
