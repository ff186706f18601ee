"""Configuration: every bad value stops synth with the key, the value and what is allowed."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from constructs_lib.alarm_thresholds import AlarmThresholds
from constructs_lib.scaling import ProvisionedConcurrencyScaling
from serverless_stack.config import ConfigError, load_config
from serverless_stack.settings_schema import SCHEMA_FILE, render_json_schema
from tests.conftest import ROOT, cdk_context, docs_text


def settings() -> dict[str, Any]:
    return copy.deepcopy(cdk_context()["pipeline"])


def with_value(env: str, path: str, value: object) -> dict[str, Any]:
    """The cdk.json settings with ``pipeline.<env>.<path>`` set to ``value`` (digits index
    lists)."""
    data = settings()
    node: Any = data[env]
    *parents, leaf = path.split(".")
    for key in parents:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    if leaf.isdigit():
        node[int(leaf)] = value
    else:
        node[leaf] = value
    return data


def test_each_environment_in_cdk_json_is_valid_and_typed():
    data = settings()
    dev, staging, prod = (load_config(n, data).settings for n in ("dev", "staging", "prod"))
    assert dev.functions.processor.provisioned_concurrency == 0
    scaling = prod.functions.processor.auto_scaling
    assert isinstance(scaling, ProvisionedConcurrencyScaling) and scaling.min_capacity >= 2
    assert {a.name for a in scaling.schedule} == {"BusinessHours", "OffHours"}
    assert prod.record_retention_days == 60 and dev.record_retention_days == 30
    assert dev.alarm_emails == ()
    assert isinstance(dev.alarms, AlarmThresholds)
    fns = dev.functions
    assert (fns.validator.memory_mb, fns.enricher.memory_mb, fns.processor.memory_mb) == (
        512,
        768,
        512,
    )
    assert prod.table.removal_policy == "retain" and prod.table.deletion_protection
    assert dev.table.removal_policy == "destroy" and not dev.table.deletion_protection
    assert staging.log_retention_days == 7
    with pytest.raises(ValidationError):
        dev.cost_center = "other"  # frozen


def test_environment_defaults_to_dev():
    assert load_config(None, settings()).environment == "dev"


def test_a_block_needs_only_what_differs_from_the_built_in_defaults():
    settings = load_config("dev", {"dev": {"functions": {"enricher": {"timeout_seconds": 60}}}})
    assert settings.settings.functions.enricher.memory_mb == 768  # its default, kept
    assert settings.settings.functions.enricher.timeout_seconds == 60
    assert settings.settings.functions.validator.memory_mb == 512
    assert settings.settings.log_retention_days == 7


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
        ["table.removal_policy", "'delete'", "destroy, retain"],
    ),
    ("dev", "table.removal_policy", "snapshot", ["table.removal_policy", "'snapshot'", "retain"]),
    (
        "dev",
        "functions.processor.memory_mb",
        None,
        ["functions.processor.memory_mb", "None", "128 to 10240"],
    ),
    (
        "prod",
        "functions.processor.auto_scaling.schedule.0.cron",
        "0 25 ? * MON-FRI *",
        ["auto_scaling.schedule[0].cron", "'0 25 ? * MON-FRI *'", "hour", "0-23"],
    ),
    (
        "prod",
        "functions.processor.auto_scaling.schedule.0.cron",
        "0 8 ? * FUNDAY *",
        ["schedule[0].cron", "FUNDAY", "SUN, MON"],
    ),
    (
        "prod",
        "functions.processor.auto_scaling.schedule.1.time_zone",
        "Mars/Olympus",
        ["schedule[1].time_zone", "'Mars/Olympus'", "IANA time zone"],
    ),
    (
        "dev",
        "alarm_emails",
        ["ops@example.com", "ops-at-example"],
        ["alarm_emails", "'ops-at-example'", "e-mail addresses"],
    ),
    ("dev", "alarm_emails", "ops@example.com", ["alarm_emails", "list of e-mail addresses"]),
    (
        "prod",
        "alarm_topic_arns",
        [f"arn:aws:sns:us-east-1:123456789012:t{i}" for i in range(5)],
        ["alarm_topic_arns", "at most 4"],
    ),
    (
        "prod",
        "alarm_topic_arns",
        ["arn:aws:sqs:us-east-1:123456789012:q"],
        ["alarm_topic_arns", "SNS topic ARNs"],
    ),
    (
        "prod",
        "alarm_https_endpoints",
        ["http://oncall.example.com/hook"],
        ["alarm_https_endpoints", "'http://oncall.example.com/hook'", "https:// URLs"],
    ),
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
        ["auto_scaling.utilization_target", "0.95", "0.1 to 0.9"],
    ),
    (
        "prod",
        "functions.processor.auto_scaling.max_capacity",
        1,
        ["auto_scaling.max_capacity", "1", "from 2"],
    ),
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
    ("dev", "alarms.period_seconds", 30, ["alarms.period_seconds", "30", "from 60 to 86400"]),
    ("dev", "alarms.period_seconds", 90, ["alarms.period_seconds", "90", "whole number"]),
    ("dev", "alarms.errors", True, ["alarms.errors", "True", "a number"]),
    ("dev", "alarms.async_events_dropped", 0, ["async_events_dropped", "removed", "DLQ"]),
    ("dev", "alarms.error_threshold", 1, ["alarms.error_threshold", "unknown key", "errors"]),
    (
        "dev",
        "alarms.dlq_oldest_message_seconds",
        -5,
        ["alarms.dlq_oldest_message_seconds", "-5", "at least 0"],
    ),
]


def test_evaluation_range_is_capped_as_cloudwatch_caps_it():
    """PutMetricAlarm: Period x EvaluationPeriods at most one day below a one-hour period
    (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html)."""
    data = with_value("dev", "alarms", {"period_seconds": 900, "evaluation_periods": 97})
    with pytest.raises(ConfigError, match=r"evaluation_periods = 97.*at most 86400 s.*87300 s"):
        load_config("dev", data)
    ok = with_value("dev", "alarms", {"period_seconds": 900, "evaluation_periods": 96})
    assert load_config("dev", ok).settings.alarms.evaluation_periods == 96
    hourly = with_value("dev", "alarms", {"period_seconds": 3600, "evaluation_periods": 100})
    assert load_config("dev", hourly).settings.alarms.evaluation_periods == 100  # 7-day cap


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


def test_every_error_is_one_line():
    for env, path, value, _ in BAD_VALUES:
        data = settings() if path is None else with_value(env, path, value)
        with pytest.raises(ConfigError) as caught:
            load_config(env, data)
        assert "\n" not in str(caught.value), str(caught.value)


def test_the_checked_in_json_schema_is_the_models():
    """Editors complete and check cdk.json from this file; regenerate it with
    ``python -m serverless_stack.settings_schema`` when the settings change."""
    assert SCHEMA_FILE.read_text() == render_json_schema()


def test_cdk_json_points_at_the_schema_and_follows_it():
    import json

    import jsonschema

    document = json.loads((ROOT / "cdk.json").read_text())
    assert (ROOT / document["$schema"]).resolve() == SCHEMA_FILE
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.validate(document, schema)
    broken = settings()
    broken["dev"]["functions"]["validator"] = {"memory_mb": 100}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"context": {"pipeline": broken}}, schema)


def _schema_paths() -> tuple[set[str], set[str]]:
    """(leaf settings, every key path) of the JSON Schema (``<stage>`` for the functions)."""
    import json

    definitions = json.loads(SCHEMA_FILE.read_text())["$defs"]

    leaves: set[str] = set()
    containers: set[str] = set()

    def walk(name: str, prefix: str) -> None:
        for key, spec in definitions[name].get("properties", {}).items():
            path = f"{prefix}{key}"
            refs = [spec.get("$ref"), spec.get("items", {}).get("$ref")]
            refs += [a.get("$ref") for a in spec.get("anyOf", [])]
            refs = [r for r in refs if r]
            (containers if refs else leaves).add(path)
            for ref in refs:
                walk(ref.rsplit("/", 1)[1], f"{path}.")

    walk("EnvironmentSettings", "")

    def by_stage(paths: set[str]) -> set[str]:
        return {
            re.sub(r"^functions\.(validator|enricher|processor)", "functions.<stage>", p)
            for p in paths
        }

    return by_stage(leaves), by_stage(leaves | containers)


def test_the_readme_configuration_table_matches_the_schema():
    """Every key the configuration page's table lists exists, and every setting is listed (the
    scaling and alarm fields are described in their rows and in the Monitoring table)."""
    section = docs_text("configuration").split("\n## ", 1)[0]
    listed = {
        re.sub(r"functions\.(validator|enricher|processor)\.", "functions.<stage>.", key)
        for key in re.findall(r"^\| `([^`]+)` \|", section, re.M)
    }
    leaves, paths = _schema_paths()
    scaling = {p for p in leaves if ".auto_scaling." in p}
    alarms = {p for p in leaves if p.startswith("alarms.")}
    assert listed - paths == {"alarms.<threshold>"}, listed - paths
    assert leaves - listed == scaling | alarms, leaves - listed - scaling - alarms
    monitoring = docs_text("monitoring").split("## Monitoring", 1)[1].split("\n## ", 1)[0]
    text = monitoring + section
    names = {p.split(".", 1)[1] for p in alarms} | {p.rsplit(".", 1)[1] for p in scaling}
    assert {n for n in names if not re.search(rf"\b{n}\b", text)} == set()


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("log_level", "WARN", "would drop the EMF metric lines"),
        ("log_level", "WARNING", "must be one of DEBUG, INFO"),
        ("system_log_level", "ERROR", "must be one of DEBUG, INFO, WARN"),
        ("functions.processor.tracing", "active", "must be one of Active, PassThrough"),
        ("dashboard", "yes", "must be true or false"),
        ("payload_encoding", "gzip", "must be one of json, deflate"),
    ],
)
def test_cost_levers_refuse_what_they_cannot_do(path, value, expected):
    """Each lever names the key, the value and what is allowed."""
    from serverless_stack.config import ConfigError, load_config

    settings = copy.deepcopy(cdk_context()["pipeline"])
    node = settings["prod"]
    *parents, leaf = path.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    with pytest.raises(ConfigError) as raised:
        load_config("prod", settings)
    message = str(raised.value)
    assert f"pipeline.prod.{path} = {value!r}" in message and expected in message


def test_a_batched_stage_with_reserved_concurrency_needs_a_mapping_capped_at_it():
    """AWS: "Don't configure the maximum concurrency to be more than the function's reserved
    concurrency": a queue's event source mapping does not stop at reserved concurrency, and
    Lambda throttles the batches past it
    (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html). prod is batched."""
    assert settings()["prod"]["ingestion"]["mode"] == "batched"  # the premise
    data = with_value("prod", "functions.enricher.reserved_concurrency", 40)
    with pytest.raises(ConfigError) as caught:
        load_config("prod", data)
    assert str(caught.value).startswith(
        "invalid setting pipeline.prod.ingestion.max_concurrency = None: must be set, from 2 "
        "to 40 (functions.enricher.reserved_concurrency)"
    )
    above = copy.deepcopy(data)
    above["prod"]["ingestion"]["max_concurrency"] = 41
    with pytest.raises(ConfigError, match=r"max_concurrency = 41: must be set, from 2 to 40"):
        load_config("prod", above)
    within = copy.deepcopy(data)
    within["prod"]["ingestion"]["max_concurrency"] = 40
    assert load_config("prod", within).settings.ingestion.max_concurrency == 40
    one = with_value("prod", "functions.enricher.reserved_concurrency", 1)
    with pytest.raises(ConfigError, match=r"enricher.reserved_concurrency = 1: must be at least 2"):
        load_config("prod", one)
    # The per-record path has no mapping to cap.
    per_record = copy.deepcopy(data)
    per_record["prod"]["ingestion"]["mode"] = "per_record"
    assert load_config("prod", per_record).settings.functions.enricher.reserved_concurrency == 40
