"""The rollback signals of a new version: alarms on what the version ``live`` runs did alone.

``errors`` watches the stage's own ``Regressions`` metric (EMF; the errors its code did not
expect); ``duration`` the p99 ``Duration`` on Lambda's ``ExecutedVersion`` dimension
(https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics.html, "Using dimensions").
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from constructs_lib.alarm_thresholds import AlarmThresholds
from constructs_lib.optimized_function import OptimizedFunction

#: The EMF metric each stage publishes for an error its code did not expect, with the version
#: that ran (``lambda_src/pipeline_common/regressions.py`` emits it; a test holds the two equal).
REGRESSIONS_METRIC = "Regressions"
VERSION_DIMENSION = "FunctionVersion"


def version_checks(
    target: OptimizedFunction,
    metrics_namespace: str,
    service: str,
    *,
    period: Duration,
    thresholds: AlarmThresholds,
) -> dict[str, tuple[str, cloudwatch.IMetric, float, str]]:
    """Each rollback alarm of the version ``target``'s alias runs: its name, metric, threshold
    and meaning (``PipelineMonitoring.monitor_new_version``)."""
    function, alias, version = target.function, target.alias, target.version.version
    executed = {
        "FunctionName": function.function_name,
        "Resource": f"{function.function_name}:{alias.alias_name}",
        "ExecutedVersion": version,
    }
    # Lambda's default timeout where none is set (3 s)
    timeout_ms = (function.timeout or Duration.seconds(3)).to_milliseconds()
    return {
        "errors": (
            "NewVersionRegressions",
            cloudwatch.Metric(
                namespace=metrics_namespace,
                metric_name=REGRESSIONS_METRIC,
                dimensions_map={"service": service, VERSION_DIMENSION: version},
                period=period,
                statistic="Sum",
            ),
            thresholds.errors,
            "the new version failed in a way its code did not expect (a crash, an AWS error "
            "other than throttling, a response that is not JSON): the deployment rolls back",
        ),
        "duration": (
            "NewVersionDurationP99",
            cloudwatch.Metric(
                namespace="AWS/Lambda",
                metric_name="Duration",
                dimensions_map=executed,
                period=period,
                statistic="p99",
            ),
            timeout_ms * thresholds.duration_p99_timeout_ratio,
            "the new version runs near its timeout: the deployment rolls back",
        ),
    }
