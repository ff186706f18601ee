"""What the code consumes, per record and per invocation: measured by running the real handlers
(``pipeline_tools.meter``) on the stack's settings and on the naive stack's."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_tools.bill.naive import naive_settings
from pipeline_tools.bill.workload import Workload

# --- what the code consumes (measured) ------------------------------------------------------


@dataclass(frozen=True)
class CodeUsage:
    """What the code consumes, per record and per invocation (``pipeline_tools/meter.py``).

    :param write_units: DynamoDB write units per valid record (every stage together).
    :param read_units: DynamoDB read units per valid record.
    :param log_bytes: stage -> bytes CloudWatch ingests per invocation of a valid record.
    :param failed_log_bytes: bytes ingested per failed record (its validator invocation).
    :param item_bytes: size of a stored record item.
    :param items_expire: whether stored items carry the TTL attribute.
    :param custom_metrics: distinct EMF metrics the code emits.
    :param marker_items: the other items written per record (its count markers).
    :param marker_item_bytes: the size of one of them.
    :param markers_expire: whether the markers carry the TTL attribute.
    """

    write_units: float
    read_units: float
    log_bytes: Mapping[str, float]
    failed_log_bytes: float
    item_bytes: float
    items_expire: bool
    custom_metrics: int
    marker_items: float = 0.0
    marker_item_bytes: float = 0.0
    markers_expire: bool = False


def measure(
    assembly_dir: Path,
    stack_name: str,
    template: Mapping[str, Any],
    workload: Workload,
    *,
    quiet: bool = False,
) -> tuple[CodeUsage, CodeUsage]:
    """Meter the stack's code as deployed, and as the naive stack would run it (text logs at
    INFO, plain JSON payloads); one progress line on stderr unless ``quiet``."""
    from pipeline_tools.meter import meter

    if not quiet:  # one line a stack, on stderr (the report is stdout): one step to a user
        print(
            f"metering {stack_name}: its code as deployed, and as the naive stack runs it ...",
            file=sys.stderr,
            flush=True,
        )

    def usage(naive: bool) -> CodeUsage:
        found = meter(
            assembly_dir,
            stack_name,
            record_bytes=workload.record_bytes,
            template=naive_settings(template) if naive else template,
        )
        per_record = found.records
        return CodeUsage(
            write_units=sum(u.write_units for u in found.valid.values()) / per_record,
            read_units=sum(u.read_units for u in found.valid.values()) / per_record,
            log_bytes={s: u.per_invocation(u.log_bytes) for s, u in found.valid.items()},
            failed_log_bytes=sum(u.log_bytes for u in found.invalid.values())
            / max(1, found.invalid_records),
            item_bytes=found.item_bytes,
            items_expire=found.items_expire,
            custom_metrics=len(found.metrics),
            marker_items=found.marker_items_per_record,
            marker_item_bytes=found.marker_item_bytes,
            markers_expire=found.markers_expire,
        )

    return usage(False), usage(True)
