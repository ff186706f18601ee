"""The design stays easy to see: short functions, and stage names in one table.

ruff's gate (pyproject.toml: C901 at complexity 10, the PLR09 limits) runs in `make lint`;
these check what ruff has no rule for.
"""

from __future__ import annotations

import ast
import re

from serverless_stack.stages import STAGES
from tests.conftest import ROOT

#: The project's own code outside the tests and the handlers (lambda_src/ is checked for length).
PRODUCT_AND_TOOLS = ("app.py", "lib", "serverless_stack", "pipeline_tools", "examples")
MAX_FUNCTION_LINES = 60


def _python_files(*roots: str) -> list:
    found = []
    for root in roots:
        path = ROOT / root
        found += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return found


def test_no_function_outside_the_tests_runs_over_60_lines():
    long = []
    for path in _python_files(*PRODUCT_AND_TOOLS, "lambda_src"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert long == []


def test_stage_names_are_literals_only_in_the_stage_table():
    table = ROOT / "serverless_stack" / "stages.py"
    named = re.compile("|".join(rf"['\"]{name}['\"]" for name in STAGES))
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _python_files(*PRODUCT_AND_TOOLS)
        if path != table
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if named.search(line)
    ]
    assert found == []
    assert named.search(table.read_text())  # the check can see a literal where one is
