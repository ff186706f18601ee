"""Right-size Lambda memory from real ``REPORT`` log lines.

Usage::

    python -m pipeline_tools.rightsize [--quantile 0.99] [--headroom 0.2] [--min-samples 100]
                                       [--function NAME] FILE [FILE ...]   (or - for stdin)

Feed it log lines as exported from CloudWatch Logs (``aws logs tail``, ``filter-log-events``,
an export to S3), from files or stdin. Each ``REPORT`` line carries ``Memory Size`` and ``Max
Memory Used``; in Lambda's JSON log format (which the stack uses) the same figures are in each
``platform.report`` line's ``record.metrics``. Lambda writes these lines only at system log
level INFO or DEBUG (``system_log_level``; prod's WARN drops them, so right-size from staging,
which runs the same code at INFO). The function is taken from ``--function``, else from a
``/aws/lambda/<name>`` token on the line, else from the file's name.

For each function: the chosen quantile (nearest rank, default p99) of *Max Memory Used*, plus
headroom (default 20 %), rounded up to a 64 MB step, never below 128 MB (nor above 10,240 MB).
It prints the sample count, the current size, a warning when there are too few samples, and
the ``cdk.json`` snippet to paste. Every line is accounted for: REPORT samples, START/END
lines, other log lines, and unreadable REPORT lines (counted, with their line numbers).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from serverless_stack.stages import STAGES

STEP_MB = 64
FLOOR_MB = 128
CEILING_MB = 10240
_REPORT = re.compile(
    r"REPORT RequestId: (?P<request>\S+)\s+Duration: (?P<duration>[\d.]+) ms\s+"
    r"Billed Duration: \d+ ms\s+Memory Size: (?P<size>\d+) MB\s+"
    r"Max Memory Used: (?P<used>\d+) MB"
)
#: START/END lines of the text log format, and the start line of the JSON format.
_START_END = ("START RequestId", "END RequestId", '"platform.start"')
_LOG_GROUP = re.compile(r"/aws/lambda/(?P<name>[A-Za-z0-9_.-]+)")


@dataclass
class FunctionSamples:
    name: str
    used_mb: list[int] = field(default_factory=list)
    sizes_mb: Counter[int] = field(default_factory=Counter)


@dataclass
class Reading:
    """Everything read, line by line: nothing is dropped without being counted."""

    functions: dict[str, FunctionSamples] = field(default_factory=dict)
    lines: int = 0
    start_end: int = 0
    other: int = 0
    unreadable: list[tuple[str, int]] = field(default_factory=list)

    def add(self, text: str, source: str, number: int, function: str | None) -> None:
        self.lines += 1
        group = _LOG_GROUP.search(text)
        name = function or (group.group("name") if group else Path(source).stem)
        if '"platform.report"' in text:
            self._add_json_report(text, source, number, name)
            return
        if "REPORT RequestId" not in text:
            if any(marker in text for marker in _START_END):
                self.start_end += 1
            else:
                self.other += 1
            return
        match = _REPORT.search(text)
        if match is None:
            self.unreadable.append((source, number))
            return
        self._sample(name, int(match.group("used")), int(match.group("size")))

    def _add_json_report(self, text: str, source: str, number: int, name: str) -> None:
        """A ``platform.report`` line of Lambda's JSON log format (``record.metrics``)."""
        try:
            event = json.loads(text[text.index("{") :])
            metrics = event["record"]["metrics"]
            used, size = int(metrics["maxMemoryUsedMB"]), int(metrics["memorySizeMB"])
        except (ValueError, KeyError, TypeError):
            self.unreadable.append((source, number))
            return
        self._sample(name, used, size)

    def _sample(self, name: str, used_mb: int, size_mb: int) -> None:
        samples = self.functions.setdefault(name, FunctionSamples(name))
        samples.used_mb.append(used_mb)
        samples.sizes_mb[size_mb] += 1


@dataclass(frozen=True)
class Recommendation:
    function: str
    stage: str | None
    samples: int
    quantile_mb: int
    recommended_mb: int
    current_mb: int
    enough_samples: bool


def quantile(values: Sequence[int], q: float) -> int:
    """Nearest-rank quantile: the smallest value with at least ``q`` of the values at or below."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def recommend_mb(used_mb: int, headroom: float) -> int:
    """``used_mb`` plus headroom, rounded up to 64 MB, within Lambda's 128-10,240 MB."""
    wanted = used_mb * (1 + headroom)
    return min(CEILING_MB, max(FLOOR_MB, math.ceil(wanted / STEP_MB) * STEP_MB))


def stage_of(function: str) -> str | None:
    """The pipeline stage a function name belongs to (``...-ProcessorFunction...`` -> processor)."""
    lowered = function.lower()
    found = [s for s in STAGES if s in lowered]
    return found[0] if len(found) == 1 else None


def read(sources: Iterable[tuple[str, TextIO]], function: str | None = None) -> Reading:
    reading = Reading()
    for source, stream in sources:
        for number, line in enumerate(stream, start=1):
            reading.add(line, source, number, function)
    return reading


def recommendations(
    reading: Reading, q: float = 0.99, headroom: float = 0.2, min_samples: int = 100
) -> list[Recommendation]:
    result = []
    for name, samples in sorted(reading.functions.items()):
        used = quantile(samples.used_mb, q)
        result.append(
            Recommendation(
                function=name,
                stage=stage_of(name),
                samples=len(samples.used_mb),
                quantile_mb=used,
                recommended_mb=recommend_mb(used, headroom),
                current_mb=samples.sizes_mb.most_common(1)[0][0],
                enough_samples=len(samples.used_mb) >= min_samples,
            )
        )
    return result


def render(
    reading: Reading, recs: list[Recommendation], q: float, headroom: float, min_samples: int
) -> str:
    label = f"p{q * 100:g}"
    lines = [
        f"Read {reading.lines} lines: {sum(r.samples for r in recs)} REPORT samples, "
        f"{reading.start_end} START/END lines, {reading.other} other log lines, "
        f"{len(reading.unreadable)} unreadable REPORT lines."
    ]
    for source, number in reading.unreadable:
        lines.append(f"  unreadable REPORT line: {source}:{number}")
    lines.append("")
    lines.append(
        f"{'function':<56}{'samples':>8}{'current':>9}{label + ' used':>11}{'recommended':>13}"
    )
    for r in recs:
        lines.append(
            f"{r.function:<56}{r.samples:>8}{r.current_mb:>6} MB{r.quantile_mb:>8} MB"
            f"{r.recommended_mb:>10} MB"
        )
    for r in recs:
        if not r.enough_samples:
            lines.append(
                f"WARNING: {r.function}: only {r.samples} samples (fewer than "
                f"{min_samples}); the {label} is not yet reliable."
            )
    staged = {r.stage: {"memory_mb": r.recommended_mb} for r in recs if r.stage}
    lines += [
        "",
        f"Memory = {label} of Max Memory Used + {headroom:.0%} headroom, rounded up to "
        f"{STEP_MB} MB, at least {FLOOR_MB} MB. Paste into cdk.json under "
        "context.pipeline.<environment>:",
        json.dumps({"functions": staged}, indent=2),
    ]
    unstaged = [r.function for r in recs if not r.stage]
    if unstaged:
        lines.append(f"(not a pipeline stage, so not in the snippet: {', '.join(unstaged)})")
    return "\n".join(lines)


#: The name standard input reads under, where no line names its function.
STDIN = "<stdin>"


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_tools.rightsize",
        description="Recommend Lambda memory from REPORT log lines.",
    )
    parser.add_argument("files", nargs="+", help="log files, or - for standard input")
    parser.add_argument("--quantile", type=float, default=0.99, help="default 0.99")
    parser.add_argument("--headroom", type=float, default=0.2, help="default 0.2 (20 %%)")
    parser.add_argument("--min-samples", type=int, default=100, help="warn below this; default 100")
    parser.add_argument("--function", help="attribute every line to this function")
    args = parser.parse_args(argv)
    if not 0 < args.quantile <= 1:
        parser.error(f"--quantile must be in (0, 1], got {args.quantile}")
    if not 0 <= args.headroom <= 10:
        parser.error(f"--headroom must be from 0 to 10, got {args.headroom}")
    opened: list[tuple[str, TextIO]] = []
    try:
        for name in args.files:
            if name == "-":
                opened.append((STDIN, stdin or sys.stdin))
            else:
                opened.append((name, open(name, encoding="utf-8", errors="replace")))  # noqa: SIM115
        reading = read(opened, args.function)
    except OSError as error:
        print(f"rightsize: cannot read {error.filename}: {error.strerror}", file=sys.stderr)
        return 1
    finally:
        for name, stream in opened:
            if name != STDIN:
                stream.close()
    if STDIN in reading.functions:
        print(
            "rightsize: standard input names no function (its lines carry no /aws/lambda/<name>):"
            " pass --function NAME, e.g. --function enricher",
            file=sys.stderr,
        )
        return 2
    if not reading.functions:
        print(
            f"rightsize: no REPORT lines found in {reading.lines} lines "
            f"({len(reading.unreadable)} unreadable REPORT lines)",
            file=sys.stderr,
        )
        return 1
    recs = recommendations(reading, args.quantile, args.headroom, args.min_samples)
    print(render(reading, recs, args.quantile, args.headroom, args.min_samples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
