"""Where a record is stored: its table key. Plain data, importing nothing, so the operator
tools (the smoke test) read the layout from here too (``pipeline_tools/runtime_source.py``)."""

from __future__ import annotations

#: The sort key of every record item; its partition key is ``RECORD#<id>``.
RECORD_SK = "RECORD"


def record_key(record_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"RECORD#{record_id}"}, "sk": {"S": RECORD_SK}}
