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


MAX_MODULE_LINES = 500
#: The tool wing and the app's wiring, where no module may import itself through another.
ACYCLIC_PACKAGES = ("pipeline_tools", "serverless_stack")


def test_no_module_outside_the_tests_runs_over_500_lines():
    long = [
        f"{path.relative_to(ROOT)} ({lines})"
        for path in _python_files(*PRODUCT_AND_TOOLS, "lambda_src")
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert long == []


def _module_name(path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] in ("__init__", "__main__") else parts)


def import_graph(packages=ACYCLIC_PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports, at the top or inside a function (a
    lazy import still ties the two modules together)."""
    modules = {_module_name(p): p for p in _python_files(*packages)}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules ``start`` imports, directly or through others."""
    seen: set[str] = set()
    frontier = list(graph[start])
    while frontier:
        node = frontier.pop()
        if node not in seen:
            seen.add(node)
            frontier += graph[node]
    return seen


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import one another, through any path."""
    reach = {node: _reachable(graph, node) for node in graph}
    circles = {
        frozenset({node} | {other for other in reach[node] if node in reach[other]})
        for node in graph
        if node in reach[node]
    }
    return sorted(sorted(circle) for circle in circles)


def test_the_tool_wing_and_the_wiring_have_no_import_circles():
    graph = import_graph()
    assert len(graph) > 40  # every module of both packages is in it
    assert import_circles(graph) == []


def test_the_circle_check_finds_a_circle_where_there_is_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_circles(graph) == [["a", "b", "c"]]
    # a lazy import counts: pipeline_tools.cost imports the chart inside its main
    assert "pipeline_tools.bill.chart" in import_graph()["pipeline_tools.cost"]


def test_the_constructs_import_nothing_of_the_app_its_tools_or_the_runtime_code():
    forbidden = (
        "pipeline_tools",
        "serverless_stack",
        "lambda_src",
        "pipeline_common",
        "validator",
        "enricher",
        "processor",
        "rollup",
    )
    found = []
    for path in _python_files("lib/src/constructs_lib"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            found += [
                f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in forbidden
            ]
    assert found == []


def test_the_readme_says_who_runs_each_tool():
    """Every module and package of pipeline_tools is in the README's table, with who runs it."""
    text = (ROOT / "README.md").read_text()
    start = text.index("**The tools, and who runs each**")
    table = text[start : text.index("\n## ", start)]
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`([\w/]+(?:\.py|/))`", row[0])}
    tools = ROOT / "pipeline_tools"
    entries = {p.name for p in tools.glob("*.py") if p.name != "__init__.py"} | {
        f"{p.name}/" for p in tools.iterdir() if (p / "__init__.py").is_file()
    }
    assert entries - named == set(), "modules the README does not place"
    assert named - entries - {"concurrent.py"} == set(), "the README names modules that are gone"
    for row in rows:
        assert re.search(r"\b(user|CI|tests)\b", row[-1]), row
