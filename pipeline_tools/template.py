"""Reading a synthesized CloudFormation template (``cdk.out/<stack>.template.json``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


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
