"""The README's example is a real file that synthesizes, and the README shows it as it is."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from aws_cdk import App
from aws_cdk.assertions import Match, Template

from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "orders_stack.py"


def test_the_readme_shows_the_example_file_as_it_is():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert EXAMPLE.read_text() in blocks


def test_the_example_synthesizes_an_alias_with_one_owner_of_its_concurrency():
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        from orders_stack import OrdersStack
    finally:
        sys.path.remove(str(EXAMPLE.parent))
    stack = OrdersStack(App(), "OrdersExample")
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


def test_the_readme_command_synthesizes_it(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "cdk.out-example" / "OrdersExample.template.json").is_file()
