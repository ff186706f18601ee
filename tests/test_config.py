"""Configuration: every bad value stops synth with the key, the value and what is allowed."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import pytest

from serverless_stack.config import ConfigError, load_config
from tests.conftest import ROOT, cdk_context


def settings() -> dict[str, Any]:
    return copy.deepcopy(cdk_context()["pipeline"])


def with_value(env: str, path: str, value: object) -> dict[str, Any]:
    """The cdk.json settings with ``pipeline.<env>.<path>`` set to ``value``."""
    data = settings()
    node = data[env]
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return data


def test_each_environment_in_cdk_json_is_valid_and_typed():
    data = settings()
    dev, staging, prod = (load_config(n, data) for n in ("dev", "staging", "prod"))
    assert dev.processor.provisioned_concurrency == 0
    assert prod.processor.auto_scaling is not None
    assert prod.processor.auto_scaling.min_capacity >= 2
    assert prod.record_retention_days is None and dev.record_retention_days == 30
    assert dev.alarm_emails == ()
    assert (dev.validator.memory_mb, dev.enricher.memory_mb, dev.processor.memory_mb) == (
        512,
        768,
        512,
    )
    assert prod.table.removal_policy == "retain" and prod.table.deletion_protection
    assert dev.table.removal_policy == "destroy" and not dev.table.deletion_protection
    assert staging.log_retention_days == 7
    with pytest.raises(AttributeError):
        dev.cost_center = "other"  # type: ignore[misc]  # frozen


def test_environment_defaults_to_dev():
    assert load_config(None, settings()).environment == "dev"


def test_a_block_needs_only_what_differs_from_the_built_in_defaults():
    config = load_config("dev", {"dev": {"functions": {"enricher": {"memory_mb": 1024}}}})
    assert config.enricher.memory_mb == 1024
    assert config.validator.memory_mb == 512
    assert config.log_retention_days == 7


BAD_VALUES = [
    # (environment, key path, value, words the error must contain)
    ("qa", None, None, ["environment", "'qa'", "dev, prod, staging"]),
    (
        "dev",
        "functions.validator.memory_mb",
        100,
        ["functions.validator.memory_mb", "100", "128 to 10240"],
    ),
    (
        "dev",
        "functions.enricher.memory_mb",
        20000,
        ["functions.enricher.memory_mb", "20000", "128 to 10240"],
    ),
    ("dev", "functions.processor.memory_mb", "512", ["memory_mb", "'512'", "integer"]),
    (
        "dev",
        "functions.processor.provisioned_concurrency",
        -1,
        ["provisioned_concurrency", "-1", "0 to 1000"],
    ),
    ("dev", "log_retention_days", 10, ["log_retention_days", "10", "1, 3, 5, 7, 14"]),
    (
        "dev",
        "table.removal_policy",
        "delete",
        ["table.removal_policy", "'delete'", "destroy, retain, snapshot"],
    ),
    (
        "dev",
        "alarm_emails",
        ["ops@example.com", "ops-at-example"],
        ["alarm_emails[1]", "'ops-at-example'", "e-mail"],
    ),
    ("dev", "alarm_emails", "ops@example.com", ["alarm_emails", "list of e-mail addresses"]),
    (
        "dev",
        "alarm_emails",
        ["ops@example.com", "ops@example.com"],
        ["alarm_emails", "twice"],
    ),
    ("dev", "alarm_email", "ops@example.com", ["alarm_email", "renamed to alarm_emails"]),
    (
        "dev",
        "record_retention_days",
        14,
        ["record_retention_days", "14", "integer from 15"],
    ),
    ("dev", "record_retention_days", "30", ["record_retention_days", "'30'", "integer"]),
    ("dev", "table.deletion_protection", "yes", ["deletion_protection", "'yes'", "true or false"]),
    ("dev", "cost_center", "", ["cost_center", "''", "tag value"]),
    ("dev", "functions.processor.timeout_seconds", 901, ["timeout_seconds", "901", "1 to 900"]),
    (
        "dev",
        "functions.validater",
        {"memory_mb": 512},
        ["functions.validater", "unknown key", "validator"],
    ),
    ("dev", "log_retension_days", 7, ["log_retension_days", "unknown key", "log_retention_days"]),
    (
        "prod",
        "functions.processor.provisioned_concurrency",
        2,
        [
            "pipeline.prod.functions.processor.provisioned_concurrency",
            "2",
            "scalable target alone owns",
        ],
    ),
    (
        "prod",
        "functions.processor.auto_scaling.min_capacity",
        1,
        ["pipeline.prod.functions.processor.auto_scaling.min_capacity", "1", "at least 2"],
    ),
    (
        "prod",
        "functions.processor.auto_scaling.schedule",
        [{"name": "Lunch", "cron": "0 12 ? * MON-FRI *", "min_capacity": 1, "max_capacity": 4}],
        ["auto_scaling.schedule[0].min_capacity", "1", "0 (off) or at least 2"],
    ),
    (
        "prod",
        "functions.processor.reserved_concurrency",
        5,
        ["reserved_concurrency", "5", "integer from 10"],
    ),
    ("prod", "table.removal_policy", "destroy", ["pipeline.prod.table.removal_policy", "'retain'"]),
    (
        "prod",
        "table.deletion_protection",
        False,
        ["pipeline.prod.table.deletion_protection", "true"],
    ),
    (
        "prod",
        "functions.processor.auto_scaling.utilization_target",
        0.95,
        ["utilization_target", "0.95", "0.1 to 0.9"],
    ),
    ("prod", "functions.processor.auto_scaling.max_capacity", 1, ["max_capacity", "1", "from 2"]),
    (
        "dev",
        "powertools_layer_version",
        36,
        ["powertools_layer_version", "removed", "lambda_src/requirements.txt"],
    ),
    (
        "dev",
        "alarms.duration_p99_timeout_ratio",
        1.5,
        ["alarms.duration_p99_timeout_ratio", "1.5", "0.01 to 1.0"],
    ),
    ("dev", "alarms.period_seconds", 30, ["alarms.period_seconds", "30", "from 60"]),
    ("dev", "alarms.period_seconds", 90, ["alarms.period_seconds", "90", "whole number"]),
    ("dev", "alarms.async_events_dropped", 0, ["async_events_dropped", "removed", "DLQ"]),
    ("dev", "alarms.error_threshold", 1, ["alarms.error_threshold", "unknown key", "errors"]),
    (
        "dev",
        "alarms.dlq_oldest_message_seconds",
        -5,
        ["dlq_oldest_message_seconds", "-5", "number from 0"],
    ),
]


def test_evaluation_range_is_capped_as_cloudwatch_caps_it():
    """PutMetricAlarm: Period x EvaluationPeriods at most one day below a one-hour period
    (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html)."""
    data = with_value("dev", "alarms", {"period_seconds": 900, "evaluation_periods": 97})
    with pytest.raises(ConfigError, match=r"evaluation_periods = 97.*at most 86400 s.*87300 s"):
        load_config("dev", data)
    ok = with_value("dev", "alarms", {"period_seconds": 900, "evaluation_periods": 96})
    assert load_config("dev", ok).alarms.evaluation_periods == 96


@pytest.mark.parametrize(("env", "path", "value", "words"), BAD_VALUES)
def test_bad_value_names_key_value_and_what_is_allowed(env, path, value, words):
    data = settings() if path is None else with_value(env, path, value)
    with pytest.raises(ConfigError) as caught:
        load_config(env, data)
    message = str(caught.value)
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"


def test_missing_settings_block_is_a_clear_error():
    with pytest.raises(ConfigError, match="pipeline"):
        load_config("dev", None)


def test_cdk_synth_stops_with_the_message_and_no_traceback():
    """What a user sees: ``cdk synth -c environment=qa`` runs ``app.py`` with that context."""
    env = {"CDK_CONTEXT_JSON": '{"environment": "qa", "pipeline": {"dev": {}}}'}
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, **env, "CDK_OUTDIR": str(ROOT / ".pytest_cache" / "bad")},
    )
    assert result.returncode != 0
    assert "Configuration error in cdk.json: invalid setting environment = 'qa'" in result.stderr
    assert "Traceback" not in result.stderr
