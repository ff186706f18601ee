"""``counts --day YYYY-MM-DD``: the per-type counts of a day, as the processor recorded them.

The count markers' layout belongs to the processor, which writes them
(``lambda_src/processor/counts.py``). The reader is in that same module, so writing and reading
share one definition; this loads it from the source tree by its path, under a private name, so
it never stands in for the ``processor`` package the in-process runner loads from an asset.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from serverless_stack.stages import STORING_STAGE

LAYOUT_FILE = Path(__file__).resolve().parents[1] / "lambda_src" / STORING_STAGE.name / "counts.py"


@cache
def layout() -> ModuleType:
    """``lambda_src/processor/counts.py``, loaded as ``_processor_counts``."""
    spec = importlib.util.spec_from_file_location("_processor_counts", LAYOUT_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def daily_counts(client: Any, table_name: str, day: str) -> dict[str, int]:
    """The records stored per type on ``day``; :raises ValueError: for a malformed day."""
    counts: dict[str, int] = layout().daily_counts(client, table_name, day)
    return counts


def print_counts(client: Any, table_name: str, day: str, out: TextIO | None = None) -> int:
    """Print a day's counts, a line per type and a total; an error is one line on stderr."""
    out = out or sys.stdout
    try:
        counts = daily_counts(client, table_name, day)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    width = max((len(t) for t in counts), default=5)
    for record_type, count in counts.items():
        print(f"{record_type:<{width}}  {count:>9,}", file=out)
    print(f"{sum(counts.values()):,} records stored on {day} ({len(counts)} types)", file=out)
    return 0
