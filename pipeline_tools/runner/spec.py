"""What the runner needs to know of each function, read from a synthesized cloud assembly."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_tools.template import ref_id

#: Physical values of template resources: logical ID -> {"Ref": ..., "Arn": ...}.
Physical = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class FunctionSpec:
    """One function as Lambda would run it, behind its ``live`` alias.

    :param name: the stage name (the handler's top-level package), e.g. ``validator``.
    :param code_dir: the unzipped deployment package.
    :param handler: ``module.function``, as in the function's ``Handler``.
    :param environment: the function's environment variables, resolved.
    :param retry_attempts: the alias's ``MaximumRetryAttempts`` (Lambda's default is 2).
    :param max_event_age_seconds: the alias's ``MaximumEventAgeInSeconds``.
    :param on_success: the stage whose alias is the on-success destination, if any.
    :param dead_letter_queue_url: where failed events go after the retries, if anywhere.
    """

    name: str
    code_dir: Path
    handler: str
    environment: Mapping[str, str]
    retry_attempts: int = 2
    max_event_age_seconds: int = 21600
    on_success: str | None = None
    dead_letter_queue_url: str | None = None
    memory_mb: int = 128
    timeout_seconds: int = 3
    arn: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


class UnsupportedTemplate(ValueError):
    """The template wires something the runner cannot emulate (it says what)."""


def resolve(value: Any, physical: Physical, where: str) -> str:
    """Resolve a template value (a string, ``Ref`` or ``Fn::GetAtt ... Arn``) to a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Ref" in value and value["Ref"] in physical:
        return physical[value["Ref"]]["Ref"]
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        if logical_id in physical and attribute in physical[logical_id]:
            return physical[logical_id][attribute]
    raise UnsupportedTemplate(f"{where}: cannot resolve {json.dumps(value)}")


def specs_from_template(
    template: Mapping[str, Any], code_dirs: Mapping[str, Path], physical: Physical
) -> dict[str, FunctionSpec]:
    """Build a spec per function of ``template``.

    :param code_dirs: function logical ID -> its unzipped code.
    :param physical: physical values of the resources the functions reference.
    """
    resources = template["Resources"]

    def of_type(kind: str) -> dict[str, Any]:
        return {k: v.get("Properties", {}) for k, v in resources.items() if v["Type"] == kind}

    functions = of_type("AWS::Lambda::Function")
    alias_to_function = {
        alias_id: ref_id(alias["FunctionName"])
        for alias_id, alias in of_type("AWS::Lambda::Alias").items()
    }
    stage_of = {fn_id: fn["Handler"].split(".")[0] for fn_id, fn in functions.items()}
    async_config: dict[str, dict[str, Any]] = {}
    for config_id, config in of_type("AWS::Lambda::EventInvokeConfig").items():
        qualifier = json.dumps(config.get("Qualifier"))
        if "$LATEST" in qualifier:
            raise UnsupportedTemplate(f"{config_id}: async config on $LATEST; invoke the alias")
        async_config[str(ref_id(config["FunctionName"]))] = config

    specs = {}
    for fn_id, fn in functions.items():
        stage = stage_of[fn_id]
        config = async_config.get(fn_id, {})
        on_success = None
        destination = config.get("DestinationConfig", {}).get("OnSuccess", {}).get("Destination")
        if destination is not None:
            target = alias_to_function.get(str(ref_id(destination)))
            if target is None:
                raise UnsupportedTemplate(
                    f"{fn_id}: on-success destination {json.dumps(destination)} is not a "
                    "Lambda alias of this stack; only Lambda destinations are emulated"
                )
            on_success = stage_of[str(target)]
        dlq = fn.get("DeadLetterConfig", {}).get("TargetArn")
        dlq_url = None
        if dlq is not None:
            dlq_id = ref_id(dlq)
            if dlq_id is None or dlq_id not in physical:
                raise UnsupportedTemplate(f"{fn_id}: unknown dead-letter target {json.dumps(dlq)}")
            dlq_url = physical[dlq_id]["Ref"]
        variables = fn.get("Environment", {}).get("Variables", {})
        specs[stage] = FunctionSpec(
            name=stage,
            code_dir=Path(code_dirs[fn_id]),
            handler=fn["Handler"],
            environment={k: resolve(v, physical, f"{fn_id}.{k}") for k, v in variables.items()},
            retry_attempts=int(config.get("MaximumRetryAttempts", 2)),
            max_event_age_seconds=int(config.get("MaximumEventAgeInSeconds", 21600)),
            on_success=on_success,
            dead_letter_queue_url=dlq_url,
            memory_mb=int(fn.get("MemorySize", 128)),
            timeout_seconds=int(fn.get("Timeout", 3)),
            arn=f"arn:aws:lambda:us-east-1:123456789012:function:{stage}:live",
        )
    return specs


def specs_from_assembly(
    assembly_dir: str | Path, stack_name: str, physical: Physical
) -> dict[str, FunctionSpec]:
    """Specs for ``stack_name`` in a cloud assembly (``cdk.out``), with code from its assets."""
    out = Path(assembly_dir)
    template = json.loads((out / f"{stack_name}.template.json").read_text())
    files = json.loads((out / f"{stack_name}.assets.json").read_text())["files"]
    code_dirs = {}
    for fn_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        key = resource["Properties"]["Code"].get("S3Key", "")
        asset = files.get(key.removesuffix(".zip"))
        if asset is None:
            raise UnsupportedTemplate(f"{fn_id}: code {key!r} is not an asset of {stack_name}")
        code_dirs[fn_id] = out / asset["source"]["path"]
    return specs_from_template(template, code_dirs, physical)
