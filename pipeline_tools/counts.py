"""``counts --day YYYY-MM-DD``: the per-type counts of a day, as the processor recorded them.

The counts' layout, their reader and their roll-up are one runtime module
(``lambda_src/pipeline_common/counts.py``), so writing and reading share one definition;
``pipeline_tools/runtime_source.py`` loads it from the source tree.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any, TextIO

from pipeline_tools import runtime_source

#: The runtime module of the counts' layout, reader and roll-up.
LAYOUT = "pipeline_common/counts.py"


def layout() -> ModuleType:
    """``lambda_src/pipeline_common/counts.py``, loaded from the source tree."""
    return runtime_source.load(LAYOUT)


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
