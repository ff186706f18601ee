"""Small readers of synthesized templates. They find resources by what they are (a handler,
a type, a reference), never by a hard-coded logical ID."""

from __future__ import annotations

from typing import Any

from pipeline_tools.template import StackTemplate, ref_id
from pipeline_tools.template import resources as of_type
from serverless_stack.stages import STAGES as FUNCTION_NAMES

__all__ = ["of_type", "ref_id"]

Resources = dict[str, dict[str, Any]]
STAGES = FUNCTION_NAMES


def props(resource: dict[str, Any]) -> dict[str, Any]:
    return resource.get("Properties", {})


def function_ids(template: dict[str, Any]) -> dict[str, str]:
    """Stage name -> logical ID of its ``AWS::Lambda::Function`` (found by its stage label)."""
    return {name: stage.function_id for name, stage in StackTemplate.of(template).stages.items()}


def alias_ids(template: dict[str, Any]) -> dict[str, str]:
    """Stage name -> logical ID of its ``live`` alias."""
    by_function = {v: k for k, v in function_ids(template).items()}
    found = {}
    for logical_id, alias in of_type(template, "AWS::Lambda::Alias").items():
        function = ref_id(props(alias)["FunctionName"])
        if function in by_function:  # a stage's, not a deployment hook's
            found[by_function[function]] = logical_id
    return found


def role_id(template: dict[str, Any], stage: str) -> str:
    fn = template["Resources"][function_ids(template)[stage]]
    return str(ref_id(props(fn)["Role"]))


def role_statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """Every statement of every inline policy attached to ``role``."""
    statements: list[dict[str, Any]] = []
    for policy in of_type(template, "AWS::IAM::Policy").values():
        if any(ref_id(r) == role for r in props(policy)["Roles"]):
            statements += props(policy)["PolicyDocument"]["Statement"]
    for inline in props(template["Resources"][role]).get("Policies", []):
        statements += inline["PolicyDocument"]["Statement"]
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def single(resources: Resources) -> tuple[str, dict[str, Any]]:
    assert len(resources) == 1, f"expected one resource, found {sorted(resources)}"
    return next(iter(resources.items()))


def support_function_id(template: dict[str, Any], label: str) -> str:
    """Logical ID of the support function labelled ``label`` (``pipeline:support``)."""
    (found,) = [
        i
        for i, f in of_type(template, "AWS::Lambda::Function").items()
        if f.get("Metadata", {}).get("pipeline:support") == label
    ]
    return found
