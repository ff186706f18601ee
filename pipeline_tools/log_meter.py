"""What CloudWatch Logs would ingest from a function, and the custom metrics its EMF lines make.

Logs are what CloudWatch Logs would ingest: the lines the code writes to stdout after Lambda's
log-level filtering (a JSON line without a ``level`` counts as INFO,
https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html), plus
Lambda's own lines for the function's format and system log level (INFO: ``platform.start`` and
``platform.report``; WARN: none; the text format: START, END and REPORT), each event counted
with the 26 bytes PutLogEvents adds to it
(https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutLogEvents.html).
Every distinct EMF metric (namespace, name and dimension values) is one custom metric.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

#: PutLogEvents counts each event as its UTF-8 message plus 26 bytes.
LOG_EVENT_OVERHEAD_BYTES = 26
#: Lambda's application log levels, most detailed first; Python's WARNING and CRITICAL are
#: Lambda's WARN and FATAL.
LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
LEVEL_ALIASES = {"WARNING": "WARN", "CRITICAL": "FATAL"}
#: The system lines Lambda writes per invocation, by log format and system log level.
SYSTEM_LINES = {
    ("JSON", "DEBUG"): ("start", "runtime_done", "report"),
    ("JSON", "INFO"): ("start", "report"),
    ("JSON", "WARN"): (),
    ("Text", None): ("text_start", "text_end", "text_report"),
}


class LogCounts(Protocol):
    """Where ``LogMeter.account`` adds an invocation's log events and bytes."""

    application_log_bytes: int
    system_log_bytes: int
    log_events: int


class LogMeter:
    """Captures what a function writes to stdout during an invocation, as CloudWatch gets it."""

    def __init__(self, logging_config: Mapping[str, Any], memory_mb: int) -> None:
        self.format = logging_config.get("LogFormat", "Text")
        self.level = logging_config.get("ApplicationLogLevel", "INFO")
        system = logging_config.get("SystemLogLevel", "INFO") if self.format == "JSON" else None
        self.system_lines = SYSTEM_LINES[(self.format, system)]
        self.memory_mb = memory_mb
        self.metrics: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()

    @contextlib.contextmanager
    def capture(self, service: str) -> Iterator[io.StringIO]:
        """Route stdout, and the stream of ``service``'s Powertools logger, into a buffer."""
        buffer = io.StringIO()
        handlers = [
            h for h in logging.getLogger(service).handlers if isinstance(h, logging.StreamHandler)
        ]
        streams = [h.setStream(buffer) for h in handlers]
        try:
            with contextlib.redirect_stdout(buffer):
                yield buffer
        finally:
            for handler, stream in zip(handlers, streams, strict=True):
                handler.setStream(stream)

    def account(self, output: str, usage: LogCounts) -> None:
        """Add one invocation's output, filtered as Lambda filters it, and its system lines."""
        for line in output.splitlines():
            if not line.strip():
                continue
            parsed = _json_object(line)
            if parsed is not None and "_aws" in parsed:
                self.metrics.update(emf_metrics(parsed))
            if self.format == "JSON" and not self._kept(parsed):
                continue
            usage.application_log_bytes += len(line.encode()) + LOG_EVENT_OVERHEAD_BYTES
            usage.log_events += 1
        for kind in self.system_lines:
            usage.system_log_bytes += len(system_line(kind, self.memory_mb).encode())
            usage.system_log_bytes += LOG_EVENT_OVERHEAD_BYTES
            usage.log_events += 1

    def _kept(self, parsed: Mapping[str, Any] | None) -> bool:
        level = str((parsed or {}).get("level", "INFO")).upper()
        level = LEVEL_ALIASES.get(level, level)
        level = level if level in LEVELS else "INFO"
        return LEVELS.index(level) >= LEVELS.index(self.level)


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def emf_metrics(blob: Mapping[str, Any]) -> set[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """The distinct metrics one EMF blob publishes: each name under each dimension set."""
    found = set()
    for directive in blob["_aws"].get("CloudWatchMetrics", []):
        for dimension_set in directive.get("Dimensions", []) or [[]]:
            dimensions = tuple(sorted((d, str(blob.get(d))) for d in dimension_set))
            for metric in directive.get("Metrics", []):
                found.add((directive.get("Namespace", ""), metric["Name"], dimensions))
    return found


def system_line(kind: str, memory_mb: int) -> str:
    """A representative system log line of Lambda (the sizes are what matter)."""
    request = str(uuid.UUID(int=0))
    time = "2026-11-29T12:00:00.000Z"
    if kind == "start":
        record: dict[str, Any] = {"requestId": request, "version": "12"}
    elif kind == "runtime_done":
        record = {
            "requestId": request,
            "status": "success",
            "metrics": {"durationMs": 100.0, "producedBytes": 512},
            "spans": [{"name": "responseLatency", "start": time, "durationMs": 0.2}],
        }
    elif kind == "report":
        record = {
            "requestId": request,
            "metrics": {
                "durationMs": 100.0,
                "billedDurationMs": 100,
                "memorySizeMB": memory_mb,
                "maxMemoryUsedMB": 96,
            },
            "status": "success",
        }
    elif kind == "text_start":
        return f"START RequestId: {request} Version: 12"
    elif kind == "text_end":
        return f"END RequestId: {request}"
    elif kind == "text_report":
        return (
            f"REPORT RequestId: {request}\tDuration: 100.00 ms\tBilled Duration: 100 ms\t"
            f"Memory Size: {memory_mb} MB\tMax Memory Used: 96 MB\t"
        )
    else:
        raise ValueError(kind)
    return json.dumps(
        {"time": time, "type": f"platform.{kind.replace('_d', 'D')}", "record": record},
        separators=(",", ":"),
    )
