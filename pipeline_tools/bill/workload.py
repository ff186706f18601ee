"""The workload profile the bill is priced for, and what the code consumes per record.

The profile's defaults are ``pipeline_tools/data/workload.json``; the code's consumption is
measured by running the real handlers (``pipeline_tools.meter``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data"
WORKLOAD_FILE = DATA / "workload.json"
DAYS_PER_MONTH = 365.25 / 12
SECONDS_PER_MONTH = DAYS_PER_MONTH * 86400
REMOVED_WORKLOAD_KEYS = {
    "log_bytes_per_invocation": "removed: log bytes are measured from the code now",
    "log_months": "renamed to months (everything that accumulates: logs, records)",
}


class CostInputError(ValueError):
    """A workload profile or template that the report cannot price (it says what and why)."""


# --- the workload profile -------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """What the pipeline processes in a month. Defaults: ``pipeline_tools/data/workload.json``.

    :param months: the stack's ages, in months, the report prices (each a bill of its own).
    :param month: the age this workload prices. :default: the last of ``months``
    :param record_types: the record types a day holds (one count total each).
    """

    records_per_month: int
    duration_ms: Mapping[str, float]
    record_bytes: int
    months: tuple[int, ...]
    failed_record_ratio: float
    record_types: int = 10
    month: int = 0

    def __post_init__(self) -> None:
        if not self.month:
            object.__setattr__(self, "month", self.months[-1])

    @classmethod
    def load(
        cls, path: str | Path | None = None, say: Callable[[str], None] | None = None
    ) -> Workload:
        """The defaults, with the keys of ``path`` (a JSON object) merged over them, and each
        stage of its ``duration_ms`` over the default stages; ``say`` gets one line naming
        the defaults a partial file took."""
        raw: dict[str, Any] = json.loads(WORKLOAD_FILE.read_text())
        if path is None:
            return cls.from_mapping(raw)
        override = _read_override(Path(path), raw)
        taken = [key for key in raw if key not in override]
        durations = override.get("duration_ms")
        if isinstance(durations, Mapping):
            taken += [f"duration_ms.{k}" for k in raw["duration_ms"] if k not in durations]
            override["duration_ms"] = {**raw["duration_ms"], **durations}
        if taken and say is not None:
            defaults = ", ".join(f"{key} = {json.dumps(_at(raw, key))}" for key in taken)
            say(f"workload {path}: the defaults for what it leaves out: {defaults}")
        return cls.from_mapping({**raw, **override})

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Workload:
        def number(key: str, low: float, high: float, value: Any = None) -> float:
            value = raw[key] if value is None else value
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not low <= value <= high
            ):
                raise CostInputError(
                    f"workload {key} = {value!r}: must be a number from {low} to {high}"
                )
            return float(value)

        durations = raw["duration_ms"]
        if not isinstance(durations, Mapping) or not durations:
            raise CostInputError(
                f"workload duration_ms = {durations!r}: must map stage to milliseconds"
            )
        months = raw["months"] if isinstance(raw["months"], list) else [raw["months"]]
        ages = tuple(int(number("months", 1, 120, m)) for m in months)
        if not ages or list(ages) != sorted(set(ages)):
            raise CostInputError(
                f"workload months = {raw['months']!r}: must be ages in months from 1 to 120, "
                "in increasing order, e.g. [1, 12, 36]"
            )
        return cls(
            records_per_month=int(number("records_per_month", 0, 1e12)),
            duration_ms={
                k: number(f"duration_ms.{k}", 1, 900_000, v) for k, v in durations.items()
            },
            record_bytes=int(number("record_bytes", 200, 32_000)),
            months=ages,
            failed_record_ratio=number("failed_record_ratio", 0, 1),
            record_types=int(number("record_types", 1, 100_000, raw.get("record_types", 10))),
        )

    def at(self, records_per_month: int, month: int | None = None) -> Workload:
        """The same workload at another volume, and at another age if given."""
        return replace(self, records_per_month=records_per_month, month=month or self.month)

    @property
    def days(self) -> float:
        """The stack's age in days."""
        return self.month * DAYS_PER_MONTH


def _read_override(path: Path, defaults: Mapping[str, Any]) -> dict[str, Any]:
    try:
        override = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CostInputError(f"{path}: cannot read the workload profile: {error}") from None
    if not isinstance(override, dict):
        raise CostInputError(f"{path}: the workload profile must be a JSON object")
    for key in override:
        if key in REMOVED_WORKLOAD_KEYS:
            raise CostInputError(f"{path}: {key} {REMOVED_WORKLOAD_KEYS[key]}")
    unknown = set(override) - set(defaults)
    if unknown:
        raise CostInputError(
            f"{path}: unknown keys {sorted(unknown)}; allowed: {', '.join(defaults)}"
        )
    return override


def _at(raw: Mapping[str, Any], key: str) -> Any:
    """``raw[key]``, where ``key`` may be ``duration_ms.<stage>``."""
    head, _, stage = key.partition(".")
    return raw[head][stage] if stage else raw[head]
