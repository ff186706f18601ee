"""Runtime modules the tools share with the handlers, loaded from ``lambda_src/`` by path.

The handlers' code is the one definition of what they write (the count markers' layout, the
item-size rule); the tools load those modules under private names, so they never stand in for
the packages the in-process runner loads from a synthesized asset.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

LAMBDA_SRC = Path(__file__).resolve().parents[1] / "lambda_src"


@cache
def load(relative: str) -> ModuleType:
    """``lambda_src/<relative>``, loaded as ``_runtime_<its path>``."""
    name = "_runtime_" + relative.removesuffix(".py").replace("/", "_")
    spec = importlib.util.spec_from_file_location(name, LAMBDA_SRC / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: a dataclass looks its module up in sys.modules.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
