"""The example app is real files that synthesize, and the docs show them as they are."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess

from aws_cdk import App
from aws_cdk.assertions import Match, Template

from tests.conftest import ROOT, docs_text
from tests.test_readme_commands import ordinary_path

EXAMPLE = ROOT / "examples" / "orders"


def test_the_docs_show_the_example_files_as_they_are():
    blocks = re.findall(r"```python\n(.*?)```", docs_text("constructs"), re.S)
    assert (EXAMPLE / "app.py").read_text() in blocks
    assert (EXAMPLE / "store_order" / "handler.py").read_text() in blocks


def test_the_example_cdk_json_runs_its_app_with_this_projects_feature_flags():
    example = json.loads((EXAMPLE / "cdk.json").read_text())
    root = json.loads((ROOT / "cdk.json").read_text())["context"]
    assert example["app"] == "python3 app.py"
    assert example["context"] == {k: v for k, v in root.items() if k.startswith("@aws-cdk")}


def _orders_stack():
    spec = importlib.util.spec_from_file_location("orders_example_app", EXAMPLE / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.OrdersStack


def test_the_example_synthesizes_an_alias_with_one_owner_of_its_concurrency():
    stack = _orders_stack()(App(), "OrdersExample")
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::Lambda::Alias", {"Name": "live"})
    # auto scaling owns the provisioned concurrency: the alias sets none itself
    for alias in template.find_resources("AWS::Lambda::Alias").values():
        assert "ProvisionedConcurrencyConfig" not in alias["Properties"]
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget", {"MinCapacity": 1, "MaxCapacity": 5}
    )
    template.has_resource_properties(
        "AWS::Events::Rule",
        {"Targets": [Match.object_like({"Arn": {"Ref": Match.string_like_regexp("StoreOrder")}})]},
    )
    template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 7})
    assert template.find_resources("AWS::CloudWatch::Alarm")


def test_make_synth_example_works_from_a_fresh_shell():
    """The docs' command in this repository, with the user's PATH (no venv, no node_modules)."""
    out = EXAMPLE / "cdk.out"
    result = subprocess.run(
        ["make", "synth-example"],
        cwd=ROOT,
        env={"HOME": os.environ.get("HOME", "/root"), "PATH": ordinary_path()},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "OrdersExample.template.json").is_file()
    assert "!!" not in result.stderr  # the pinned Node 22: no end-of-life banner
