"""Per-environment settings: one pydantic model, read from ``cdk.json``, validated once.

``cdk.json`` holds one block per environment under the ``pipeline`` context key::

    "pipeline": {
      "dev":  {"cost_center": "...", "functions": {"<stage>": {"memory_mb": 512}}, ...},
      "prod": {...}
    }

The environment is chosen with ``-c environment=NAME`` (default ``dev``). A block holds only
what differs from the defaults (each function's memory default is merged under its block), and
every value is checked by :class:`EnvironmentSettings`. A bad value raises :class:`ConfigError`,
whose one-line message names the key, the value and what is allowed; unknown keys are errors
too, so a typo never silently falls back to a default.

The model is the only place the settings are checked. The limits come from
``constructs_lib.limits``; the auto-scaling block parses straight into the construct's own
``ProvisionedConcurrencyScaling`` and the alarms block into ``AlarmThresholds``, so the stack
passes them on as they are. ``python -m serverless_stack.settings_schema`` writes the JSON Schema
that ``cdk.json`` points editors at; one-line errors come from ``settings_errors``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from constructs_lib import limits
from constructs_lib.alarm_thresholds import AlarmThresholds
from constructs_lib.deployment_settings import DeploymentSettings
from constructs_lib.limits import LimitError
from constructs_lib.scaling import ProvisionedConcurrencyScaling
from serverless_stack.ingestion import IngestionSettings, mappings_within_reserved
from serverless_stack.settings_errors import ConfigError, config_error
from serverless_stack.stages import CRITICAL_STAGE, STAGE_TABLE

DEFAULT_ENVIRONMENT = "dev"
#: Context key that holds the per-environment blocks.
CONTEXT_KEY = "pipeline"
#: Environments held to production rules (warm critical stage, retained and protected data).
PRODUCTION_ENVIRONMENTS = frozenset({"prod"})
PRODUCTION_MIN_PROCESSOR_CONCURRENCY = 2

#: How long a failed event can come back: the DLQ keeps a message 14 days (the SQS maximum) and
#: Lambda keeps an async event up to its maximum event age before that. A record kept for less
#: than this could be stored a second time by a late redrive, so ``record_retention_days`` must
#: exceed it.
REPLAY_WINDOW_SECONDS = limits.SQS_MAX_RETENTION_DAYS * 86400 + limits.DEFAULT_MAX_EVENT_AGE_SECONDS
MIN_RECORD_RETENTION_DAYS = REPLAY_WINDOW_SECONDS // 86400 + 1  # whole days, strictly longer
MAX_RECORD_RETENTION_DAYS = 36500

#: Why the application log level stops at INFO: Lambda files a JSON line that has no ``level``
#: key as INFO (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html),
#: and the EMF lines that carry the custom metrics have none, so WARN would drop every metric.
LOG_LEVEL_LIMIT = (
    "WARN and above would drop the EMF metric lines, which Lambda files as INFO; "
    "per-record lines are DEBUG, so INFO already logs only warnings, errors and metrics"
)

#: Keys that were replaced: the error says what to write instead.
RENAMED_KEYS = {
    "alarm_email": 'renamed to alarm_emails, a list of addresses (e.g. ["ops@example.com"])',
    "powertools_layer_version": (
        "removed: the Powertools release is pinned once, in lambda_src/requirements.txt, and the "
        "layer is resolved from it at deploy time"
    ),
    "provisioned_concurrency_utilization": (
        "removed: high utilization is what auto scaling aims for, so it is on the dashboard; "
        "provisioned_concurrency_spillover alarms on the harm (invocations beyond it)"
    ),
    "async_events_dropped": (
        "removed: AsyncEventsDropped also counts events delivered to the DLQ, which "
        "dlq_visible_messages and dead_letter_errors already alarm on"
    ),
}


# --- value types: pydantic checks them, and they describe themselves in the JSON Schema --------


_EMAIL = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
_KMS_KEY_ARN = (
    r"^arn:aws[a-z-]*:kms:[a-z]{2}[a-z0-9-]*:\d{12}:key/(mrk-[0-9a-f]{32}|[0-9a-f-]{36})$"
)
# AWS tag values: letters, digits, spaces and + - = . _ : / @, at most 256 characters.
_TAG_VALUE = r"^[\w\s+\-=.:/@]{1,256}$"
ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")

Email = Annotated[str, StringConstraints(pattern=_EMAIL)]
#: An SNS topic of the caller's (an organisation's on-call or chat topic).
SnsTopicArn = Annotated[
    str, StringConstraints(pattern=r"^arn:aws[a-z-]*:sns:[a-z]{2}[a-z0-9-]*:\d{12}:[\w-]{1,256}$")
]
#: An HTTPS endpoint SNS posts to (on-call services give one per integration).
HttpsUrl = Annotated[str, StringConstraints(pattern=r"^https://[^\s/?#]+[^\s]*$", max_length=2048)]
KmsKeyArn = Annotated[str, StringConstraints(pattern=_KMS_KEY_ARN)]
TagValue = Annotated[str, StringConstraints(pattern=_TAG_VALUE)]
RecordRetentionDays = Annotated[int, Ge(MIN_RECORD_RETENTION_DAYS), Le(MAX_RECORD_RETENTION_DAYS)]

#: What a field allows, where its type's own words would say less (a pattern, a reason).
_ALLOWED = {
    "alarm_emails": "must be a list of e-mail addresses (may be empty)",
    "alarm_https_endpoints": "must be a list of https:// URLs (may be empty)",
    "alarm_topic_arns": "must be a list of at most 4 SNS topic ARNs "
    "(arn:aws:sns:<region>:<account>:<name>; may be empty)",
    "cost_center": "must be a tag value: 1-256 letters, digits, spaces or + - = . _ : / @",
    "log_kms_key_arn": "must be the ARN of a KMS key (arn:aws:kms:<region>:<account>:key/<id>)",
    "log_level": f"must be one of DEBUG, INFO ({LOG_LEVEL_LIMIT})",
}


# --- the model ---------------------------------------------------------------------------------


class _Settings(BaseModel):
    # Python's re: the tag-value pattern's Unicode \w outgrows the Rust engine's size limit.
    model_config = ConfigDict(extra="forbid", frozen=True, regex_engine="python-re")


class FunctionSettings(_Settings):
    """One pipeline function's sizing and concurrency."""

    memory_mb: limits.MemoryMB = Field(
        description="Memory in MB: p99 of Max Memory Used plus 20 % headroom"
    )
    timeout_seconds: limits.TimeoutSeconds = 30
    provisioned_concurrency: limits.Concurrency = Field(
        0, description="A fixed provisioned concurrency on the live alias (0: none)"
    )
    reserved_concurrency: limits.ReservedConcurrency | None = None
    auto_scaling: ProvisionedConcurrencyScaling | None = Field(
        None,
        description="Provisioned concurrency owned by a scalable target on the live alias "
        "instead of a fixed value; min_capacity is the floor",
    )
    tracing: Literal["Active", "PassThrough"] = Field(
        "PassThrough",
        description="X-Ray tracing: Active records nearly every invocation at these volumes "
        "($5 per million traces); PassThrough only traces a caller already sampled",
    )

    @model_validator(mode="after")
    def _one_owner(self) -> FunctionSettings:
        if self.auto_scaling is not None and self.provisioned_concurrency:
            # One owner of the alias's provisioned concurrency: see docs/deployments.md.
            raise LimitError(
                "provisioned_concurrency",
                self.provisioned_concurrency,
                "must be 0 (or left out) when auto_scaling is set: the scalable target alone "
                "owns the alias's provisioned concurrency; set its floor with "
                "auto_scaling.min_capacity",
            )
        scaling = self.auto_scaling
        ceiling = scaling.max_capacity if scaling else self.provisioned_concurrency
        if self.reserved_concurrency is not None and self.reserved_concurrency < ceiling:
            raise LimitError(
                "reserved_concurrency",
                self.reserved_concurrency,
                f"must be an integer from {ceiling} to 1000: at least the provisioned "
                "concurrency it has to hold",
            )
        return self


#: Each stage's ``FunctionSettings``, a field per stage of the stage table.
StageFunctions = create_model(
    "StageFunctions",
    __base__=_Settings,
    **{stage.name: (FunctionSettings, ...) for stage in STAGE_TABLE},  # type: ignore[call-overload]
)


class TableSettings(_Settings):
    """What happens to the data table when it leaves the stack.

    ``snapshot`` is not offered: CloudFormation has no snapshot deletion policy for
    ``AWS::DynamoDB::Table`` (use point-in-time recovery, which is always on).
    """

    removal_policy: Literal["destroy", "retain"] = "destroy"
    deletion_protection: bool = False


class EnvironmentSettings(_Settings):
    """The validated settings of one environment (the block under ``pipeline.<environment>``)."""

    cost_center: TagValue = "data-platform"
    alarm_emails: tuple[Email, ...] = Field((), json_schema_extra={"uniqueItems": True})
    alarm_https_endpoints: tuple[HttpsUrl, ...] = Field(
        (),
        description="HTTPS endpoints subscribed to the alarm topic (an on-call service's SNS "
        "integration URL); each confirms SNS's subscription request first",
        json_schema_extra={"uniqueItems": True},
    )
    log_retention_days: Literal[limits.LOG_RETENTION_DAYS] = Field(  # type: ignore[valid-type]
        7,
        description="Days each function's log group keeps its logs (AWS Control Tower's "
        "CT.CLOUDWATCH.PR.2 asks for at least 365)",
    )
    log_kms_key_arn: KmsKeyArn | None = Field(
        None,
        description="A customer-managed KMS key that encrypts every log group (its key policy "
        "must let logs.<region>.amazonaws.com use it; Control Tower's CT.CLOUDWATCH.PR.3); "
        "null: CloudWatch Logs' own encryption",
    )
    record_retention_days: RecordRetentionDays | None = Field(
        None, description="Days a stored record is kept (DynamoDB TTL); null: for ever"
    )
    architecture: Literal["arm64", "x86_64"] = "arm64"
    log_level: Literal["DEBUG", "INFO"] = Field(
        "INFO",
        description="Application log level (Lambda's JSON log format; Powertools follows it). "
        "INFO keeps warnings, errors and the EMF metric lines; DEBUG adds a line per record",
    )
    system_log_level: Literal["DEBUG", "INFO", "WARN"] = Field(
        "INFO",
        description="Lambda's own log lines: INFO keeps the START and REPORT lines that "
        "`make rightsize` reads; WARN drops them",
    )
    payload_encoding: Literal["json", "deflate"] = Field(
        "json",
        description="How the processor stores a payload: json text, or deflate (zlib-compressed "
        "text, lossless) where that saves a DynamoDB write unit",
    )
    dashboard: bool = Field(True, description="A CloudWatch dashboard of the pipeline ($3 a month)")
    table: TableSettings = TableSettings()
    alarms: AlarmThresholds = AlarmThresholds()
    ingestion: IngestionSettings = Field(
        IngestionSettings(),
        description="How records enter: per_record (async invokes) or batched (SQS queues)",
    )
    deployment: DeploymentSettings = Field(
        DeploymentSettings(),
        description="How each stage's live alias moves to a new version (CodeDeploy): config, "
        "and the stage's own alarms that roll it back",
    )
    functions: StageFunctions  # type: ignore[valid-type]

    alarm_topic_arns: tuple[SnsTopicArn, ...] = Field(
        (),
        max_length=4,
        description="Existing SNS topics every alarm also notifies, in the stack's region (an "
        "on-call or chat topic); each topic's policy must let cloudwatch.amazonaws.com publish "
        "from this account. At most 4: an alarm takes 5 actions, one is the stack's own topic",
        json_schema_extra={"uniqueItems": True},
    )

    @field_validator("alarm_emails", "alarm_https_endpoints", "alarm_topic_arns")
    @classmethod
    def _each_address_once(cls, addresses: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(addresses)) != len(addresses):
            raise ValueError("must not list an address twice")
        return addresses

    @model_validator(mode="after")
    def _mappings_within_reserved(self) -> EnvironmentSettings:
        mappings_within_reserved(self.ingestion, self.functions)
        return self

    @property
    def alarm_subscribers(self) -> int:
        """How many subscribers the alarm topic has."""
        return len(self.alarm_emails) + len(self.alarm_https_endpoints) + len(self.alarm_topic_arns)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """An environment's name and its validated settings."""

    environment: str
    settings: EnvironmentSettings

    @property
    def is_production(self) -> bool:
        return self.environment in PRODUCTION_ENVIRONMENTS


def with_nulls_restored(received: object, cdk_json: Path) -> object:
    """The ``pipeline`` context as cdk.json wrote it, nulls included.

    The CDK CLI drops null-valued context keys before the app sees them (``{"m": null}``
    arrives as ``{}``), so a ``null`` setting would silently become its default. Each null of
    cdk.json's ``pipeline`` block is put back where the received context has no key of that
    name, and the settings model then refuses it like any other bad value.
    """
    if not cdk_json.is_file() or not isinstance(received, Mapping):
        return received
    try:
        written = json.loads(cdk_json.read_text()).get("context", {}).get(CONTEXT_KEY)
    except (ValueError, AttributeError):
        return received  # the CLI has already refused a cdk.json it cannot read
    return _restore(received, written) if isinstance(written, Mapping) else received


def _restore(received: Mapping[str, Any], written: Mapping[str, Any]) -> dict[str, Any]:
    restored = dict(received)
    for key, value in written.items():
        if value is None and key not in restored:
            restored[key] = None
        elif isinstance(value, Mapping) and isinstance(restored.get(key), Mapping):
            restored[key] = _restore(restored[key], value)
    return restored


#: ``-c ingestion=MODE``: the path an environment takes for one synth, over its cdk.json.
INGESTION_CONTEXT_KEY = "ingestion"
INGESTION_MODES = ("per_record", "batched")


def with_ingestion(context: object, environment: object, mode: object) -> object:
    """The ``pipeline`` context with ``environment``'s ``ingestion.mode`` set to ``mode``
    (``-c ingestion=batched`` tries the batched path without editing cdk.json); ``mode``
    ``None`` leaves it as it is.

    :raises ConfigError: for a mode that is neither ``per_record`` nor ``batched``.
    """
    if mode is None:
        return context
    if mode not in INGESTION_MODES:
        raise ConfigError(
            f"{INGESTION_CONTEXT_KEY} (-c)", mode, f"must be one of {', '.join(INGESTION_MODES)}"
        )
    name = DEFAULT_ENVIRONMENT if environment is None else environment
    if not isinstance(context, Mapping) or not isinstance(context.get(name), Mapping):
        return context  # load_config names what is wrong with it
    block = dict(context[name])
    block["ingestion"] = {**(block.get("ingestion") or {}), "mode": mode}
    return {**context, name: block}


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
    if not ENV_NAME.match(name):
        raise ConfigError(
            "environment", name, "must be lowercase letters, digits and '-', at most 20"
        )
    key = f"{CONTEXT_KEY}.{name}"
    block = context[name]
    if not isinstance(block, Mapping):
        raise ConfigError(key, block, "must be an object")
    _refuse_renamed_keys(key, block)
    try:
        settings = EnvironmentSettings.model_validate_json(
            json.dumps(_with_default_memory(block)), strict=True
        )
    except ValidationError as error:
        raise config_error(key, error, EnvironmentSettings, _ALLOWED) from None
    config = PipelineConfig(name, settings)
    if config.is_production:
        _production_rules(config, key)
    return config


def _with_default_memory(block: Mapping[str, Any]) -> dict[str, Any]:
    """``block`` with each function's default memory under what it sets itself."""
    functions = block.get("functions", {})
    if not isinstance(functions, Mapping):
        return dict(block)  # the model reports it
    merged: dict[str, Any] = {s.name: {"memory_mb": s.default_memory_mb} for s in STAGE_TABLE}
    for fn, value in functions.items():
        merged[fn] = {**merged.get(fn, {}), **value} if isinstance(value, Mapping) else value
    return {**block, "functions": merged}


def _refuse_renamed_keys(key: str, block: Mapping[str, Any]) -> None:
    places = [("", block), ("alarms.", block.get("alarms"))]
    for prefix, mapping in places:
        if isinstance(mapping, Mapping):
            for old in mapping:
                if old in RENAMED_KEYS:
                    raise ConfigError(f"{key}.{prefix}{old}", mapping[old], RENAMED_KEYS[old])


def _production_rules(config: PipelineConfig, key: str) -> None:
    minimum = PRODUCTION_MIN_PROCESSOR_CONCURRENCY
    critical = getattr(config.settings.functions, CRITICAL_STAGE.name)
    where = f"{key}.functions.{CRITICAL_STAGE.name}"
    scaling = critical.auto_scaling
    if scaling is None and critical.provisioned_concurrency < minimum:
        raise ConfigError(
            f"{where}.provisioned_concurrency",
            critical.provisioned_concurrency,
            f"production keeps the critical stage warm: at least {minimum} "
            "(or auto_scaling with min_capacity of at least that)",
        )
    if scaling is not None:
        if scaling.min_capacity < minimum:
            raise ConfigError(
                f"{where}.auto_scaling.min_capacity",
                scaling.min_capacity,
                f"production keeps the critical stage warm: at least {minimum}",
            )
        for index, action in enumerate(scaling.schedule):
            if 0 < action.min_capacity < minimum:
                raise ConfigError(
                    f"{where}.auto_scaling.schedule[{index}].min_capacity",
                    action.min_capacity,
                    f"production keeps the critical stage warm whenever a schedule keeps it "
                    f"on: 0 (off) or at least {minimum}",
                )
    deployment = config.settings.deployment
    if not deployment.gradual:
        raise ConfigError(
            f"{key}.deployment.config",
            deployment.config,
            "production shifts traffic gradually (a canary_... or linear_... config), so the "
            "stage's alarms can roll a bad release back before it takes all traffic",
        )
    if "errors" not in deployment.rollback_on:
        raise ConfigError(
            f"{key}.deployment.rollback_on",
            list(deployment.rollback_on),
            'production rolls back on the new version\'s errors at least: include "errors"',
        )
    table = config.settings.table
    if table.removal_policy != "retain":
        raise ConfigError(
            f"{key}.table.removal_policy",
            table.removal_policy,
            "production data must be kept: 'retain'",
        )
    if not table.deletion_protection:
        raise ConfigError(
            f"{key}.table.deletion_protection",
            False,
            "production tables must be deletion-protected: true",
        )
