"""The constructs' API reference (make api-docs, pdoc) documents every public construct and prop.

"Public" is what pdoc renders: the modules of ``constructs_lib`` and their members without a
leading underscore, defined there (not imported). Each has a docstring; each parameter of a
public class (a construct's props, a settings dataclass's fields) is documented as
``:param name:`` in the class's or its ``__init__``'s docstring, or by a docstring of its own.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess

import pdoc
import pdoc.doc
import pytest

import constructs_lib
from tests.conftest import ROOT

#: Parameters every construct takes, documented once by CDK itself.
CONSTRUCT_ARGUMENTS = {"self", "scope", "construct_id", "id", "args", "kwargs"}


def _modules() -> list[str]:
    return [m.name for m in pkgutil.iter_modules(constructs_lib.__path__, "constructs_lib.")]


def _own_public(module: pdoc.doc.Module) -> list[pdoc.doc.Doc]:
    return [
        member
        for member in module.members.values()
        if not member.name.startswith("_") and member.taken_from[0] == module.modulename
    ]


def undocumented(module_name: str) -> list[str]:
    """What the reference of ``module_name`` would show without words."""
    module = pdoc.doc.Module(importlib.import_module(module_name))
    gaps = [] if module.docstring.strip() else [f"{module_name} (module)"]
    for member in _own_public(module):
        where = f"{module_name}.{member.name}"
        if isinstance(member, pdoc.doc.Function | pdoc.doc.Class) and not member.docstring.strip():
            gaps.append(where)
        if isinstance(member, pdoc.doc.Class):
            gaps += _undocumented_params(member, where)
            gaps += [
                f"{where}.{method.name}"
                for method in _own_public_methods(member)
                if not method.docstring.strip()
            ]
    return gaps


def _own_public_methods(cls: pdoc.doc.Class) -> list[pdoc.doc.Function]:
    return [
        m
        for m in cls.members.values()
        if isinstance(m, pdoc.doc.Function)
        and not m.name.startswith("_")
        and m.taken_from[0] == cls.taken_from[0]
    ]


def _props(cls: type) -> list[str]:
    """The parameters a user passes to ``cls`` (its ``__init__``'s: a construct's metaclass
    hides them from ``inspect.signature(cls)``), less those every construct takes."""
    try:
        parameters = inspect.signature(cls.__init__).parameters
    except ValueError:  # an exception with the built-in constructor: no props of its own
        return []
    return [name for name in parameters if name not in CONSTRUCT_ARGUMENTS]


def _undocumented_params(cls: pdoc.doc.Class, where: str) -> list[str]:
    init = cls.members.get("__init__")
    text = cls.docstring + (init.docstring if init is not None else "")
    gaps = []
    for name in _props(cls.obj):
        own = cls.members.get(name)
        documented = f":param {name}:" in text or (own is not None and own.docstring.strip())
        if not documented:
            gaps.append(f"{where}({name})")
    return gaps


@pytest.mark.parametrize("module_name", _modules())
def test_every_public_construct_and_prop_is_documented(module_name):
    assert undocumented(module_name) == []


def test_the_check_sees_the_constructs_and_their_props():
    module = pdoc.doc.Module(importlib.import_module("constructs_lib.optimized_function"))
    assert "OptimizedFunction" in {m.name for m in _own_public(module)}
    optimized = module.members["OptimizedFunction"]
    assert isinstance(optimized, pdoc.doc.Class)
    assert {"function_props", "provisioned_concurrency", "deployment"} <= set(_props(optimized.obj))


def test_a_prop_or_a_method_without_words_is_a_gap(tmp_path, monkeypatch):
    (tmp_path / "half_documented.py").write_text(
        '"""A module."""\n\n\n'
        "class Widget:\n"
        '    """A construct."""\n\n'
        "    def __init__(self, scope, construct_id, *, colour: str, size: int) -> None:\n"
        '        """:param colour: its colour."""\n\n'
        "    def grow(self) -> None:\n"
        "        pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert undocumented("half_documented") == [
        "half_documented.Widget(size)",
        "half_documented.Widget.grow",
    ]


def test_make_api_docs_writes_a_page_for_every_module(tmp_path):
    """The make target's command (pdoc, reStructuredText docstrings) renders every module."""
    pdoc.render.configure(docformat="restructuredtext")  # the make target's --docformat
    pdoc.pdoc("constructs_lib", output_directory=tmp_path)
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    for name in _modules():
        assert name.replace(".", "/") + ".html" in pages
    page = (tmp_path / "constructs_lib" / "optimized_function.html").read_text()
    assert "OptimizedFunction" in page and "function_props" in page
    makefile = (ROOT / "Makefile").read_text()
    assert "pdoc --docformat restructuredtext -o docs/api constructs_lib" in makefile
    assert subprocess.run(["make", "-n", "api-docs"], cwd=ROOT, capture_output=True).returncode == 0
