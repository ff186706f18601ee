"""Per-environment settings: read from ``cdk.json`` context, validated, frozen.

``cdk.json`` holds one block per environment under the ``pipeline`` context key::

    "pipeline": {
      "dev":  {"cost_center": "...", "functions": {"processor": {"memory_mb": 512}}, ...},
      "prod": {...}
    }

The environment is chosen with ``-c environment=NAME`` (default ``dev``). Each block is merged
over the built-in defaults below (so a block only needs what differs), then every value is
checked. A bad value raises :class:`ConfigError`, whose message names the key, the value and
what is allowed; unknown keys are errors too, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from constructs_lib.monitoring import AlarmThresholds
from constructs_lib.retention import RETENTION_DAYS

DEFAULT_ENVIRONMENT = "dev"
#: Context key that holds the per-environment blocks.
CONTEXT_KEY = "pipeline"
#: Environments held to production rules (warm critical stage, retained and protected data).
PRODUCTION_ENVIRONMENTS = frozenset({"prod"})
PRODUCTION_MIN_PROCESSOR_CONCURRENCY = 2
FUNCTION_NAMES = ("validator", "enricher", "processor")
REMOVAL_POLICIES = ("destroy", "retain", "snapshot")
ARCHITECTURES = ("arm64", "x86_64")

#: How long a failed event can come back: the DLQ keeps a message 14 days (the SQS maximum) and
#: Lambda keeps an async event up to its maximum event age before that. A record kept for less
#: than this could be stored a second time by a late redrive, so ``record_retention_days`` must
#: exceed it.
DLQ_RETENTION_DAYS = 14
MAX_EVENT_AGE_SECONDS = 3600
REPLAY_WINDOW_SECONDS = DLQ_RETENTION_DAYS * 86400 + MAX_EVENT_AGE_SECONDS
MIN_RECORD_RETENTION_DAYS = REPLAY_WINDOW_SECONDS // 86400 + 1  # whole days, strictly longer
MAX_RECORD_RETENTION_DAYS = 36500

#: Keys that were replaced: the error says what to write instead.
RENAMED_KEYS = {
    "alarm_email": 'renamed to alarm_emails, a list of addresses (e.g. ["ops@example.com"])',
    "powertools_layer_version": (
        "removed: the Powertools release is pinned once, in lambda_src/requirements.txt, and the "
        "layer is resolved from it at deploy time"
    ),
    "async_events_dropped": (
        "removed: AsyncEventsDropped also counts events delivered to the DLQ, which "
        "dlq_visible_messages and dead_letter_errors already alarm on"
    ),
}

#: Built-in defaults. Memory was sized from observed usage: the naive stack ran every function
#: at 3008 MB while REPORT lines showed about 400 MB Max Memory Used (the enricher about
#: 600 MB, as it holds reference data); p99 of Max Memory Used plus 20 % headroom, rounded
#: up, gives 512 MB and 768 MB. Re-derive them from your own logs with the right-sizing tool.
DEFAULTS: dict[str, Any] = {
    "cost_center": "data-platform",
    "alarm_emails": [],
    "log_retention_days": 7,
    "record_retention_days": None,
    "architecture": "arm64",
    "table": {"removal_policy": "destroy", "deletion_protection": False},
    "alarms": {},
    "functions": {
        "validator": {"memory_mb": 512},
        "enricher": {"memory_mb": 768},
        "processor": {"memory_mb": 512},
    },
}
FUNCTION_DEFAULTS: dict[str, Any] = {
    "timeout_seconds": 30,
    "provisioned_concurrency": 0,
    "reserved_concurrency": None,
    "auto_scaling": None,
}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
# AWS tag values: letters, digits, spaces and + - = . _ : / @, at most 256 characters.
_TAG_VALUE = re.compile(r"^[\w\s+\-=.:/@]{1,256}$")
_ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


class ConfigError(ValueError):
    """A setting in ``cdk.json`` is missing, unknown or out of range."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(f"invalid setting {key} = {value!r}: {allowed}")
        self.key = key
        self.value = value
        self.allowed = allowed


@dataclass(frozen=True)
class ScheduleSettings:
    """A scheduled change of the provisioned-concurrency range (cron without ``cron()``)."""

    name: str
    cron: str
    min_capacity: int
    max_capacity: int
    time_zone: str | None


@dataclass(frozen=True)
class AutoScalingSettings:
    """Auto scaling of a function's provisioned concurrency (on its ``live`` alias)."""

    min_capacity: int
    max_capacity: int
    utilization_target: float
    schedule: tuple[ScheduleSettings, ...] = ()


@dataclass(frozen=True)
class FunctionSettings:
    """One pipeline function's sizing and concurrency."""

    memory_mb: int
    timeout_seconds: int
    provisioned_concurrency: int
    reserved_concurrency: int | None
    auto_scaling: AutoScalingSettings | None


@dataclass(frozen=True)
class TableSettings:
    """What happens to the data table when the stack is deleted."""

    removal_policy: str
    deletion_protection: bool


@dataclass(frozen=True)
class PipelineConfig:
    """The validated settings of one environment."""

    environment: str
    cost_center: str
    alarm_emails: tuple[str, ...]
    log_retention_days: int
    record_retention_days: int | None
    architecture: str
    table: TableSettings
    alarms: AlarmThresholds
    validator: FunctionSettings
    enricher: FunctionSettings
    processor: FunctionSettings

    @property
    def is_production(self) -> bool:
        return self.environment in PRODUCTION_ENVIRONMENTS


def load_config(environment: object, context: object) -> PipelineConfig:
    """Validate and return the settings of ``environment`` from the ``pipeline`` context.

    :param environment: the ``environment`` context value (``None`` means ``dev``).
    :param context: the value of the ``pipeline`` context key (a mapping of environments).
    :raises ConfigError: on any missing, unknown or out-of-range value.
    """
    name = DEFAULT_ENVIRONMENT if environment is None else environment
    if not isinstance(context, Mapping) or not context:
        raise ConfigError(
            CONTEXT_KEY, context, "cdk.json context must map environment names to settings"
        )
    if not isinstance(name, str) or name not in context:
        raise ConfigError("environment", name, f"must be one of {', '.join(sorted(context))}")
    if not _ENV_NAME.match(name):
        raise ConfigError(
            "environment", name, "must be lowercase letters, digits and '-', at most 20"
        )
    block = _mapping(f"{CONTEXT_KEY}.{name}", context[name])
    return _parse(name, _merge(DEFAULTS, block), f"{CONTEXT_KEY}.{name}")


def _parse(name: str, raw: Mapping[str, Any], key: str) -> PipelineConfig:
    _no_unknown_keys(key, raw, DEFAULTS)
    functions = _mapping(f"{key}.functions", raw["functions"])
    _no_unknown_keys(f"{key}.functions", functions, DEFAULTS["functions"])
    parsed = {
        fn: _function(f"{key}.functions.{fn}", _merge(FUNCTION_DEFAULTS, functions[fn]))
        for fn in FUNCTION_NAMES
    }
    table = _mapping(f"{key}.table", raw["table"])
    _no_unknown_keys(f"{key}.table", table, DEFAULTS["table"])
    config = PipelineConfig(
        environment=name,
        cost_center=_matching(
            f"{key}.cost_center",
            raw["cost_center"],
            _TAG_VALUE,
            "a tag value: 1-256 letters, digits, spaces or + - = . _ : / @",
        ),
        alarm_emails=_emails(f"{key}.alarm_emails", raw["alarm_emails"]),
        log_retention_days=_one_of(
            f"{key}.log_retention_days", raw["log_retention_days"], RETENTION_DAYS
        ),
        record_retention_days=_optional(
            f"{key}.record_retention_days",
            raw["record_retention_days"],
            lambda k, v: _integer(k, v, MIN_RECORD_RETENTION_DAYS, MAX_RECORD_RETENTION_DAYS),
        ),
        architecture=_one_of(f"{key}.architecture", raw["architecture"], ARCHITECTURES),
        table=TableSettings(
            removal_policy=_one_of(
                f"{key}.table.removal_policy", table["removal_policy"], REMOVAL_POLICIES
            ),
            deletion_protection=_boolean(
                f"{key}.table.deletion_protection", table["deletion_protection"]
            ),
        ),
        alarms=_alarms(f"{key}.alarms", raw["alarms"]),
        **parsed,
    )
    if config.is_production:
        _production_rules(config, key)
    return config


def _function(key: str, raw: Mapping[str, Any]) -> FunctionSettings:
    _no_unknown_keys(key, raw, {**FUNCTION_DEFAULTS, "memory_mb": None})
    if "memory_mb" not in raw:
        raise ConfigError(f"{key}.memory_mb", None, "required: an integer from 128 to 10240 (MB)")
    provisioned = _integer(
        f"{key}.provisioned_concurrency", raw["provisioned_concurrency"], 0, 1000
    )
    scaling = _optional(f"{key}.auto_scaling", raw["auto_scaling"], _auto_scaling)
    if scaling is not None and provisioned:
        # One owner of the alias's provisioned concurrency (aws-cdk issue 29992): a fixed value
        # on the alias next to a schedule that scales it to 0 makes CloudFormation updates fail
        # with ProvisionedConcurrencyConfigNotFoundException, and a redeploy resets a scaled one.
        raise ConfigError(
            f"{key}.provisioned_concurrency",
            provisioned,
            "must be 0 (or left out) when auto_scaling is set: the scalable target alone owns "
            "the alias's provisioned concurrency; set its floor with auto_scaling.min_capacity",
        )
    ceiling = scaling.max_capacity if scaling else provisioned
    reserved = _optional(
        f"{key}.reserved_concurrency",
        raw["reserved_concurrency"],
        lambda k, v: _integer(k, v, ceiling or 1, 1000),
    )
    return FunctionSettings(
        memory_mb=_integer(f"{key}.memory_mb", raw["memory_mb"], 128, 10240),
        timeout_seconds=_integer(f"{key}.timeout_seconds", raw["timeout_seconds"], 1, 900),
        provisioned_concurrency=provisioned,
        reserved_concurrency=reserved,
        auto_scaling=scaling,
    )


def _auto_scaling(key: str, value: object) -> AutoScalingSettings:
    raw = _mapping(key, value)
    allowed = {"min_capacity": 0, "max_capacity": 0, "utilization_target": 0.7, "schedule": []}
    _no_unknown_keys(key, raw, allowed)
    for required in ("min_capacity", "max_capacity"):
        if required not in raw:
            raise ConfigError(f"{key}.{required}", None, "required: an integer of 1 or more")
    low = _integer(f"{key}.min_capacity", raw["min_capacity"], 1, 1000)
    return AutoScalingSettings(
        min_capacity=low,
        max_capacity=_integer(f"{key}.max_capacity", raw["max_capacity"], low, 1000),
        utilization_target=_number(
            f"{key}.utilization_target", raw.get("utilization_target", 0.7), 0.1, 0.9
        ),
        schedule=_schedule(f"{key}.schedule", raw.get("schedule", [])),
    )


_SCHEDULE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}$")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?/,\-#L]+$")


def _schedule(key: str, value: object) -> tuple[ScheduleSettings, ...]:
    if not isinstance(value, list):
        raise ConfigError(key, value, "must be a list of scheduled actions")
    actions = []
    allowed = {"name": "", "cron": "", "min_capacity": 0, "max_capacity": 0, "time_zone": None}
    for index, item in enumerate(value):
        item_key = f"{key}[{index}]"
        raw = _mapping(item_key, item)
        _no_unknown_keys(item_key, raw, allowed)
        for required in ("name", "cron", "min_capacity", "max_capacity"):
            if required not in raw:
                raise ConfigError(f"{item_key}.{required}", None, "required")
        cron = raw["cron"]
        if not (
            isinstance(cron, str)
            and len(cron.split()) == 6
            and all(_CRON_FIELD.match(f) for f in cron.split())
        ):
            raise ConfigError(
                f"{item_key}.cron",
                cron,
                "a six-field cron: minute hour day month weekday year, "
                "e.g. '0 8 ? * MON-FRI *' (UTC unless time_zone is set)",
            )
        low = _integer(f"{item_key}.min_capacity", raw["min_capacity"], 0, 1000)
        actions.append(
            ScheduleSettings(
                name=_matching(
                    f"{item_key}.name",
                    raw["name"],
                    _SCHEDULE_NAME,
                    "a name of letters, digits and '-'",
                ),
                cron=cron,
                min_capacity=low,
                max_capacity=_integer(f"{item_key}.max_capacity", raw["max_capacity"], low, 1000),
                time_zone=_optional(
                    f"{item_key}.time_zone",
                    raw.get("time_zone"),
                    lambda k, v: _matching(
                        k,
                        v,
                        re.compile(r"^[A-Za-z_]+(/[A-Za-z_+-]+)*$"),
                        "an IANA time zone such as Europe/Berlin",
                    ),
                ),
            )
        )
    if len({a.name for a in actions}) != len(actions):
        raise ConfigError(key, [a.name for a in actions], "scheduled action names must be unique")
    return tuple(actions)


#: Alarm settings that are shares (0-1] rather than counts or seconds.
_RATIO_ALARMS = ("duration_p99_timeout_ratio", "provisioned_concurrency_utilization")
#: Lambda, SQS and DynamoDB publish these metrics once a minute, so an alarm period is a whole
#: number of minutes: a 10, 20 or 30 s period never sees a data point between two minutes and is
#: billed as a high-resolution alarm (PutMetricAlarm, ``Period``:
#: https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html).
ALARM_PERIOD_STEP_SECONDS = 60
MAX_ALARM_PERIOD_SECONDS = 86400
#: PutMetricAlarm caps Period x EvaluationPeriods at one day below a one-hour period, and at
#: seven days from one hour up.
MAX_EVALUATION_RANGE_SECONDS = {False: 86400, True: 604800}


def _alarms(key: str, value: object) -> AlarmThresholds:
    raw = _mapping(key, value)
    defaults = AlarmThresholds()
    known = {f: getattr(defaults, f) for f in AlarmThresholds.__dataclass_fields__}
    _no_unknown_keys(key, raw, known)
    parsed: dict[str, Any] = {}
    for name, setting in raw.items():
        if name in _RATIO_ALARMS:
            parsed[name] = _number(f"{key}.{name}", setting, 0.01, 1.0)
        elif name == "period_seconds":
            parsed[name] = _integer(
                f"{key}.{name}", setting, ALARM_PERIOD_STEP_SECONDS, MAX_ALARM_PERIOD_SECONDS
            )
            if setting % ALARM_PERIOD_STEP_SECONDS:
                raise ConfigError(
                    f"{key}.{name}",
                    setting,
                    "must be a whole number of minutes (60, 120, 300, ...): the metrics have "
                    "one-minute resolution",
                )
        elif name == "evaluation_periods":
            parsed[name] = _integer(f"{key}.{name}", setting, 1, 100)
        else:
            parsed[name] = _number(f"{key}.{name}", setting, 0, 1e9)
    thresholds = AlarmThresholds(**parsed)
    window = thresholds.period_seconds * thresholds.evaluation_periods
    limit = MAX_EVALUATION_RANGE_SECONDS[thresholds.period_seconds >= 3600]
    if window > limit:
        raise ConfigError(
            f"{key}.evaluation_periods",
            thresholds.evaluation_periods,
            f"period_seconds x evaluation_periods must be at most {limit} s "
            f"(CloudWatch's limit for this period), got {window} s",
        )
    return thresholds


def _production_rules(config: PipelineConfig, key: str) -> None:
    minimum = PRODUCTION_MIN_PROCESSOR_CONCURRENCY
    processor = f"{key}.functions.processor"
    scaling = config.processor.auto_scaling
    if scaling is None and config.processor.provisioned_concurrency < minimum:
        raise ConfigError(
            f"{processor}.provisioned_concurrency",
            config.processor.provisioned_concurrency,
            f"production keeps the critical stage warm: at least {minimum} "
            "(or auto_scaling with min_capacity of at least that)",
        )
    if scaling is not None:
        if scaling.min_capacity < minimum:
            raise ConfigError(
                f"{processor}.auto_scaling.min_capacity",
                scaling.min_capacity,
                f"production keeps the critical stage warm: at least {minimum}",
            )
        for index, action in enumerate(scaling.schedule):
            if 0 < action.min_capacity < minimum:
                raise ConfigError(
                    f"{processor}.auto_scaling.schedule[{index}].min_capacity",
                    action.min_capacity,
                    f"production keeps the critical stage warm whenever a schedule keeps it "
                    f"on: 0 (off) or at least {minimum}",
                )
    if config.table.removal_policy != "retain":
        raise ConfigError(
            f"{key}.table.removal_policy",
            config.table.removal_policy,
            "production data must be kept: 'retain'",
        )
    if not config.table.deletion_protection:
        raise ConfigError(
            f"{key}.table.deletion_protection",
            False,
            "production tables must be deletion-protected: true",
        )


# --- small typed checkers; each names the key, the value and what is allowed -----------------

T = TypeVar("T")


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in override.items():
        merged[k] = (
            _merge(base[k], v) if isinstance(base.get(k), Mapping) and isinstance(v, Mapping) else v
        )
    return merged


def _no_unknown_keys(key: str, raw: Mapping[str, Any], known: Mapping[str, Any]) -> None:
    for k in raw:
        if k in RENAMED_KEYS and k not in known:
            raise ConfigError(f"{key}.{k}", raw[k], RENAMED_KEYS[k])
        if k not in known:
            raise ConfigError(
                f"{key}.{k}", raw[k], f"unknown key; allowed keys: {', '.join(known)}"
            )


def _mapping(key: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, "must be an object")
    return value


def _integer(key: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(key, value, f"must be an integer from {low} to {high}")
    return value


def _number(key: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(key, value, f"must be a number from {low} to {high}")
    return float(value)


def _boolean(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "must be true or false")
    return value


def _one_of(key: str, value: T, allowed: tuple[T, ...]) -> T:
    if isinstance(value, bool) or value not in allowed:
        raise ConfigError(key, value, f"must be one of {', '.join(map(str, allowed))}")
    return value


def _matching(key: str, value: object, pattern: re.Pattern[str], allowed: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ConfigError(key, value, f"must be {allowed}")
    return value


def _optional(key: str, value: object, parse: Callable[[str, Any], T]) -> T | None:
    return None if value is None else parse(key, value)


def _emails(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(key, value, "must be a list of e-mail addresses (may be empty)")
    emails = tuple(
        _matching(f"{key}[{i}]", v, _EMAIL, "an e-mail address") for i, v in enumerate(value)
    )
    if len(set(emails)) != len(emails):
        raise ConfigError(key, value, "must not list an address twice")
    return emails
