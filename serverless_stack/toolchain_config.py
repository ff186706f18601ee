"""The toolchain's settings: where the pipeline runs, what it builds, where each stage deploys.

``cdk.json`` holds them under the ``toolchain`` context key, beside the environments' own
settings (``pipeline``), and they are read only when the toolchain is synthesized (``make
synth-toolchain``, that is ``npx cdk synth -c toolchain=true``). Like the environments' settings,
a bad value stops synth with one line naming the key, the value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from serverless_stack.settings_errors import ConfigError, config_error

CONTEXT_KEY = "toolchain"
#: The environments the pipeline deploys, in order; the smoke test follows the second, and the
#: manual approval comes before the last.
ORDER = ("dev", "staging", "prod")
SMOKE_TESTED = "staging"

Account = Annotated[str, StringConstraints(pattern=r"^\d{12}$")]
Region = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")]
#: A CodeConnections connection (``codeconnections``), or one made under its former name,
#: CodeStar Connections (``codestar-connections``).
ConnectionArn = Annotated[
    str,
    StringConstraints(
        pattern=r"^arn:aws[a-z-]*:(codeconnections|codestar-connections):[a-z0-9-]+:\d{12}:"
        r"connection/[0-9a-f-]{36}$"
    ),
]
Repository = Annotated[str, StringConstraints(pattern=r"^[\w.-]+/[\w.-]+$")]
Branch = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\s~^:?*\[\\]+$")
]


#: What each field allows, in words (the patterns above say it to pydantic, not to a person).
ALLOWED = {
    "account": "must be a 12-digit AWS account id, e.g. '111111111111'",
    "region": "must be an AWS region, e.g. 'us-east-1'",
    "connection_arn": "must be the ARN of a CodeConnections connection "
    "(arn:aws:codeconnections:<region>:<account>:connection/<uuid>)",
    "repository": "must be the repository as owner/name, e.g. 'your-org/your-repo'",
    "branch": "must be a git branch name: 1-255 characters, no spaces or ~ ^ : ? * [ \\",
}


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Settings):
    """The account and region one environment deploys to."""

    account: Account
    region: Region


class ToolchainSettings(_Settings):
    """The pipeline's own account, its source, and each environment's account."""

    account: Account = Field(description="The toolchain account: the pipeline runs here")
    region: Region = Field(description="The toolchain's region")
    connection_arn: ConnectionArn = Field(
        description="An AWS CodeConnections connection to the repository's provider "
        "(created and authorised once in the console)"
    )
    repository: Repository = Field(description="owner/name of the repository")
    branch: Branch = Field("main", description="The branch whose pushes run the pipeline")
    manual_approval: bool = Field(
        True, description="A manual approval before prod deploys (off only for a sandbox)"
    )
    environments: dict[str, Target] = Field(
        description="Each environment's account and region: dev, staging and prod"
    )


def load_toolchain(context: object) -> ToolchainSettings:
    """Validate the ``toolchain`` context; raises :class:`ConfigError`."""
    if not isinstance(context, Mapping):
        raise ConfigError(CONTEXT_KEY, context, "cdk.json context must hold a toolchain object")
    try:
        settings = ToolchainSettings.model_validate(dict(context), strict=True)
    except ValidationError as error:
        raise config_error(CONTEXT_KEY, error, ToolchainSettings, ALLOWED) from None
    if tuple(settings.environments) != ORDER:
        raise ConfigError(
            f"{CONTEXT_KEY}.environments",
            list(settings.environments),
            f"must name {', '.join(ORDER)}, in that order (the order they deploy in)",
        )
    return settings


def json_schema() -> dict[str, Any]:
    """The schema of the ``toolchain`` block (``serverless_stack.settings_schema`` embeds it)."""
    return ToolchainSettings.model_json_schema(ref_template="#/$defs/{model}")
