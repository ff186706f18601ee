"""What the runner needs to know of each function, from a synthesized cloud assembly.

The stages and their wiring come from the template model (``pipeline_tools/template.py``); the
local deploy builds the same ``FunctionSpec`` from what the emulator returns
(``pipeline_tools/local/deployed.py``). Lambda's defaults are applied in one place,
``FunctionSpec.build``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_tools.runner.iam import RolePolicy
from pipeline_tools.template import Physical, StackTemplate, TemplateError, asset_dirs, resolve

#: Where the in-process runner says its functions live.
REGION, ACCOUNT = "us-east-1", "123456789012"

#: Lambda's defaults where a function or its async config does not set a value.
DEFAULT_RETRY_ATTEMPTS = 2
DEFAULT_MEMORY_MB = 128
DEFAULT_TIMEOUT_SECONDS = 3


@dataclass(frozen=True)
class FunctionSpec:
    """One function as Lambda would run it, behind its ``live`` alias.

    :param name: the stage name, e.g. ``validator``.
    :param code_dir: the unzipped deployment package.
    :param handler: ``module.function``, as in the function's ``Handler``.
    :param environment: the function's environment variables, resolved.
    :param retry_attempts: the alias's ``MaximumRetryAttempts``.
    :param on_success: the stage whose alias is the on-success destination, if any.
    :param dead_letter_queue_url: where failed events go after the retries, if anywhere.
    :param arn: the ``live`` alias's ARN (what the invocation context reports).
    """

    name: str
    code_dir: Path
    handler: str
    environment: Mapping[str, str]
    retry_attempts: int
    on_success: str | None
    dead_letter_queue_url: str | None
    memory_mb: int
    timeout_seconds: int
    arn: str
    #: The role's policy, enforced on the handler's calls and Lambda's own (``None``: not).
    policy: RolePolicy | None = None
    dead_letter_queue_arn: str | None = None
    #: The version the ``live`` alias runs (what Lambda reports as the executed version).
    version: str = "1"
    #: The function's ``ReservedConcurrentExecutions`` (``None``: none reserved).
    reserved_concurrency: int | None = None

    @classmethod
    def build(
        cls,
        *,
        name: str,
        code_dir: Path,
        function: Mapping[str, Any],
        async_config: Mapping[str, Any],
        on_success: str | None,
        dead_letter_queue: Mapping[str, str | None] | None,
        arn: str,
        policy: RolePolicy | None = None,
    ) -> FunctionSpec:
        """A spec from a function's settings and its async config, as either a template or
        Lambda's API spells them (``Handler``, ``MemorySize``, ``Timeout``,
        ``MaximumRetryAttempts``, ``Environment``), with Lambda's defaults for what is not set.

        :param dead_letter_queue: the queue's ``Ref`` (URL) and ``Arn``, if it has one.
        """
        queue = dead_letter_queue or {}
        return cls(
            name=name,
            code_dir=Path(code_dir),
            handler=function["Handler"],
            environment={
                **logging_environment(function.get("LoggingConfig", {})),
                **function.get("Environment", {}).get("Variables", {}),
            },
            retry_attempts=int(async_config.get("MaximumRetryAttempts", DEFAULT_RETRY_ATTEMPTS)),
            on_success=on_success,
            dead_letter_queue_url=queue.get("Ref"),
            memory_mb=int(function.get("MemorySize", DEFAULT_MEMORY_MB)),
            timeout_seconds=int(function.get("Timeout", DEFAULT_TIMEOUT_SECONDS)),
            arn=arn,
            policy=policy,
            dead_letter_queue_arn=queue.get("Arn"),
            reserved_concurrency=_int_or_none(function.get("ReservedConcurrentExecutions")),
        )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def logging_environment(logging_config: Mapping[str, Any]) -> dict[str, str]:
    """The variables Lambda sets from a function's ``LoggingConfig`` (template and API spell it
    alike): ``AWS_LAMBDA_LOG_FORMAT``, and with the JSON format ``AWS_LAMBDA_LOG_LEVEL``, which
    Powertools' Logger obeys over its own setting
    (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html)."""
    log_format = logging_config.get("LogFormat", "Text")
    variables = {"AWS_LAMBDA_LOG_FORMAT": log_format}
    if log_format == "JSON":
        variables["AWS_LAMBDA_LOG_LEVEL"] = logging_config.get("ApplicationLogLevel", "INFO")
    return variables


def specs_from_template(
    template: Mapping[str, Any], code_dirs: Mapping[str, Path], physical: Physical
) -> dict[str, FunctionSpec]:
    """Build a spec per stage of ``template``.

    :param code_dirs: stage -> its unzipped code.
    :param physical: physical values of the resources the functions reference.
    """
    model = StackTemplate.of(template)
    arns = {name: f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}" for name in model.stages}
    # The functions and aliases the runner stands in for, so the roles' policies resolve.
    physical = {
        **physical,
        **{s.function_id: {"Ref": name, "Arn": arns[name]} for name, s in model.stages.items()},
        **{
            s.alias_id: {"Ref": f"{arns[name]}:live"}
            for name, s in model.stages.items()
            if s.alias_id
        },
    }
    specs = {}
    for name, stage in model.stages.items():
        queue = stage.dead_letter_queue_id
        if "DeadLetterConfig" in stage.properties and (queue is None or queue not in physical):
            target = json.dumps(stage.properties["DeadLetterConfig"])
            raise TemplateError(f"{stage.function_id}: unknown dead-letter target {target}")
        variables = stage.properties.get("Environment", {}).get("Variables", {})
        specs[name] = FunctionSpec.build(
            name=name,
            code_dir=code_dirs[name],
            # the environment resolved: what Lambda's API reports
            function={
                **stage.properties,
                "Environment": {
                    "Variables": {
                        k: resolve(v, physical, f"{stage.function_id}.{k}", strict=True)
                        for k, v in variables.items()
                    }
                },
            },
            async_config=stage.async_config,
            on_success=stage.on_success,
            dead_letter_queue=physical[queue] if queue else None,
            arn=f"{arns[name]}:live",
            policy=RolePolicy.of(
                model, str(stage.role_id), physical, region=REGION, account=ACCOUNT
            ),
        )
    return specs


def specs_from_assembly(
    assembly_dir: str | Path, stack_name: str, physical: Physical
) -> dict[str, FunctionSpec]:
    """Specs for ``stack_name`` in a cloud assembly (``cdk.out``), with code from its assets."""
    template = json.loads((Path(assembly_dir) / f"{stack_name}.template.json").read_text())
    return specs_from_template(template, asset_dirs(assembly_dir, stack_name), physical)
