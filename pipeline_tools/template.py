"""One small model of a synthesized pipeline template, for every tool that reads one.

The runner, the local deploy, the cost report, the IAM check, the summary and the benchmarks read
``cdk.out/<stack>.template.json`` through this module: the stages (each function labelled with
its stage in its ``Metadata``, see ``serverless_stack/stages.py``), each stage's ``live`` alias,
async invoke config, on-success stage, dead-letter queue and role, and the assets behind the
functions. Nothing here parses a handler string to guess which function is which.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serverless_stack.stages import STAGE_METADATA_KEY, SUPPORT_METADATA_KEY

FUNCTION = "AWS::Lambda::Function"


class TemplateError(ValueError):
    """The template is not one this model can read (it says what and where)."""


#: What a resolver knows of each resource: its ``Ref`` and attributes (``Arn``, ...), by
#: logical ID.
Physical = Mapping[str, Mapping[str, str]]


def resolve(
    value: Any,
    physical: Physical,
    where: str,
    pseudo: Mapping[str, str] | None = None,
    *,
    strict: bool = False,
) -> str:
    """A template value (a string, ``Ref``, ``Fn::GetAtt``, ``Fn::Join``, ``Fn::Sub``) as the
    string it makes, with ``physical`` for resources and ``pseudo`` for ``AWS::`` parameters.

    What it cannot resolve becomes ``unresolved:<where>:<value>`` (it matches nothing a caller
    checks), or with ``strict`` raises :class:`TemplateError`. The one resolver of the tools:
    the runner's specs and IAM, and the IAM reference gate.
    """
    found = _resolved(value, physical, where, pseudo or {}, strict)
    if found is not None:
        return found
    if strict:
        raise TemplateError(f"{where}: cannot resolve {json.dumps(value)}")
    return f"unresolved:{where}:{value}"


def _resolved(
    value: Any, physical: Physical, where: str, pseudo: Mapping[str, str], strict: bool
) -> str | None:
    if isinstance(value, str):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((function, argument),) = value.items()
    intrinsic = _INTRINSICS.get(function)
    if intrinsic is None:
        return None

    def again(inner: Any) -> str:
        return resolve(inner, physical, where, pseudo, strict=strict)

    return intrinsic(argument, physical, pseudo, again)


def _ref(name: Any, physical: Physical, pseudo: Mapping[str, str], _: Any) -> str | None:
    return pseudo[name] if name in pseudo else physical.get(name, {}).get("Ref")


def _get_att(argument: Any, physical: Physical, *_: Any) -> str | None:
    logical_id, attribute = argument
    return physical.get(logical_id, {}).get(attribute)


def _join(argument: Any, _: Physical, __: Mapping[str, str], again: Any) -> str:
    separator, parts = argument
    return str(separator).join(again(p) for p in parts)


def _sub(argument: Any, _: Physical, __: Mapping[str, str], again: Any) -> str | None:
    if not isinstance(argument, str):
        return None

    def named(match: re.Match[str]) -> str:
        logical_id, _, attribute = match[1].partition(".")
        return str(
            again({"Fn::GetAtt": [logical_id, attribute]} if attribute else {"Ref": logical_id})
        )

    return re.sub(r"\$\{([^}!]+)\}", named, argument)


_INTRINSICS: dict[str, Callable[..., str | None]] = {
    "Ref": _ref,
    "Fn::GetAtt": _get_att,
    "Fn::Join": _join,
    "Fn::Sub": _sub,
}


def load_template(path: str | Path) -> dict[str, Any]:
    """Load a template, with a clear error when ``cdk synth`` has not produced it yet."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: run `make synth ENV=<env>` first")
    return json.loads(file.read_text())


def resources(template: Mapping[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """The resources of ``resource_type``, by logical ID."""
    return {k: v for k, v in template.get("Resources", {}).items() if v["Type"] == resource_type}


def ref_id(value: Any) -> str | None:
    """The logical ID behind ``{"Ref": id}`` or ``{"Fn::GetAtt": [id, attr]}``."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


def referenced(value: Any) -> set[str]:
    """Every logical ID that ``value`` references (``Ref``, ``Fn::GetAtt``), at any depth: an
    alias's ARN spliced into a name (``Fn::Join`` of ``Fn::Split`` of a ``Ref``) included."""
    if isinstance(value, list):
        return set().union(*(referenced(v) for v in value)) if value else set()
    if not isinstance(value, dict):
        return set()
    found = {ref_id(value)} - {None} if ("Ref" in value or "Fn::GetAtt" in value) else set()
    return {str(i) for i in found} | set().union(*(referenced(v) for v in value.values()))


def stage_of(function_id: str, resource: Mapping[str, Any]) -> str:
    """The stage a function resource is labelled with."""
    stage = resource.get("Metadata", {}).get(STAGE_METADATA_KEY)
    if not isinstance(stage, str):
        raise TemplateError(
            f"{function_id}: no {STAGE_METADATA_KEY!r} in its Metadata; synthesize the stack "
            "again (every stage's function is labelled with its stage)"
        )
    return stage


@dataclass(frozen=True)
class Stage:
    """One stage of the template: its function and everything wired to it.

    :param properties: the function's ``Properties``.
    :param async_config: the ``Properties`` of the alias's ``AWS::Lambda::EventInvokeConfig``
        (empty without one).
    :param on_success: the stage whose alias is the on-success destination, if any.
    """

    name: str
    function_id: str
    properties: Mapping[str, Any]
    alias_id: str | None
    async_config: Mapping[str, Any]
    on_success: str | None
    dead_letter_queue_id: str | None
    role_id: str | None


@dataclass(frozen=True)
class StackTemplate:
    """A synthesized template and its stages, by stage name."""

    template: Mapping[str, Any]
    stages: Mapping[str, Stage]

    @classmethod
    def of(cls, template: Mapping[str, Any]) -> StackTemplate:
        """Read the stages of ``template``.

        :raises TemplateError: for an unlabelled function, an async config on ``$LATEST``, or an
            on-success destination that is not a stage's alias.
        """
        functions = {
            fn_id: fn
            for fn_id, fn in resources(template, FUNCTION).items()
            if SUPPORT_METADATA_KEY not in fn.get("Metadata", {})
        }
        names = {fn_id: stage_of(fn_id, fn) for fn_id, fn in functions.items()}
        aliases = {
            alias_id: str(ref_id(alias["Properties"]["FunctionName"]))
            for alias_id, alias in resources(template, "AWS::Lambda::Alias").items()
        }
        configs: dict[str, Mapping[str, Any]] = {}
        for config_id, resource in resources(template, "AWS::Lambda::EventInvokeConfig").items():
            p = resource["Properties"]
            if "$LATEST" in json.dumps(p.get("Qualifier")):
                raise TemplateError(f"{config_id}: async config on $LATEST; invoke the alias")
            configs[str(ref_id(p["FunctionName"]))] = p
        stages = {}
        for fn_id, fn in functions.items():
            properties = fn["Properties"]
            config = configs.get(fn_id, {})
            on_success_config = config.get("DestinationConfig", {}).get("OnSuccess", {})
            destination = on_success_config.get("Destination")
            on_success = None
            if destination is not None:
                target = aliases.get(str(ref_id(destination)))
                if target is None:
                    raise TemplateError(
                        f"{fn_id}: on-success destination {json.dumps(destination)} is not a "
                        "Lambda alias of this stack"
                    )
                on_success = names[target]
            stages[names[fn_id]] = Stage(
                name=names[fn_id],
                function_id=fn_id,
                properties=properties,
                alias_id=next((a for a, f in aliases.items() if f == fn_id), None),
                async_config=config,
                on_success=on_success,
                dead_letter_queue_id=ref_id(
                    properties.get("DeadLetterConfig", {}).get("TargetArn")
                ),
                role_id=ref_id(properties.get("Role")),
            )
        return cls(template, stages)

    @classmethod
    def load(cls, path: str | Path) -> StackTemplate:
        return cls.of(load_template(path))

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return resources(self.template, resource_type)

    def stage_by_function(self, function_id: str) -> Stage:
        return next(s for s in self.stages.values() if s.function_id == function_id)

    def role_statements(self, role_id: str) -> list[dict[str, Any]]:
        """Every statement of every inline policy attached to ``role_id``."""
        statements: list[dict[str, Any]] = []
        for policy in self.resources("AWS::IAM::Policy").values():
            if any(ref_id(r) == role_id for r in policy["Properties"].get("Roles", [])):
                statements += policy["Properties"]["PolicyDocument"]["Statement"]
        role = self.template["Resources"].get(role_id, {}).get("Properties", {})
        for inline in role.get("Policies", []):
            statements += inline["PolicyDocument"]["Statement"]
        return statements


def asset_dirs(assembly_dir: str | Path, stack_name: str) -> dict[str, Path]:
    """Stage -> the directory of its code asset in a cloud assembly (``cdk.out``)."""
    out = Path(assembly_dir)
    model = StackTemplate.load(out / f"{stack_name}.template.json")
    files = json.loads((out / f"{stack_name}.assets.json").read_text())["files"]
    found = {}
    for name, stage in model.stages.items():
        key = stage.properties["Code"].get("S3Key", "")
        asset = files.get(key.removesuffix(".zip"))
        if asset is None:
            raise TemplateError(
                f"{stage.function_id}: code {key!r} is not an asset of {stack_name}"
            )
        found[name] = out / asset["source"]["path"]
    return found
