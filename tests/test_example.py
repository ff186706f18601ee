"""The README's example is a real file that synthesizes, and the README shows it as it is."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from aws_cdk import App
from aws_cdk.assertions import Match, Template

from tests.conftest import ROOT, docs_text, project_copy

EXAMPLE = ROOT / "examples" / "orders_stack.py"


def test_the_readme_shows_the_example_file_as_it_is():
    readme = docs_text("constructs")
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


def _python(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run this Python with ``args`` in ``cwd``; its standard output, or fail with its errors."""
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_readme_pip_install_gives_another_project_the_constructs(tmp_path):
    """`pip install /path/to/this/checkout`, offline: the wheel pip builds carries the constructs
    and declares what they need; installed apart from this checkout, they import and build."""
    # a copy: setuptools builds in the source tree (build/, *.egg-info)
    checkout = project_copy(tmp_path / "checkout")
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    pip = ("-m", "pip", "--disable-pip-version-check")
    _python(
        tmp_path,
        *pip,
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--quiet",
        "--wheel-dir",
        str(wheels),
        str(checkout),
    )
    (wheel,) = wheels.glob("*.whl")
    _python(
        tmp_path,
        *pip,
        "install",
        "--no-deps",
        "--no-index",
        "--quiet",
        "--target",
        str(target),
        str(wheel),
    )
    metadata = next(target.glob("*.dist-info")) / "METADATA"
    requires = [
        line for line in metadata.read_text().splitlines() if line.startswith("Requires-Dist")
    ]
    assert any("aws-cdk-lib" in line for line in requires)
    assert any("pydantic" in line for line in requires)
    used = _python(
        tmp_path,
        "-c",
        "import constructs_lib, aws_cdk as cdk\n"
        "from constructs_lib.optimized_function import OptimizedFunction\n"
        "print(constructs_lib.__file__)",
        env={**os.environ, "PYTHONPATH": str(target)},
    )
    assert used.strip().startswith(str(target))
