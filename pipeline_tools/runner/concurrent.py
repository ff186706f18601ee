"""Concurrent processors with Lambda's asynchronous retries, for a storage function.

Lambda runs one invocation per execution environment and as many environments as the load
needs, so at scale several processors write to the table at once. :func:`run_concurrently`
emulates that for the part that touches DynamoDB: ``workers`` threads, each with its own client
(a processor's own process in Lambda), call ``store(client, record)`` for records arriving at
``rate`` a second. Lambda retries a failed asynchronous invocation twice, about a minute and
then two minutes later (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html),
after the burst that failed it: so each attempt is a round of its own, at the same rate, and a
record still failing after the last goes to the dead-letter list, with its error.

The handler around ``store`` (Powertools' logger and metrics) keeps process-wide state that
one process shares between threads, so it is not run here; the fault-run and regression tests
run it, one invocation at a time, on the same storage code.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ConcurrentRun:
    """What became of the records: stored (once each), and dead-lettered with their errors."""

    results: dict[str, Any] = field(default_factory=dict)
    dead_letters: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    attempts: int = 0
    failed_attempts: int = 0
    seconds: float = 0.0


def run_concurrently(
    store: Callable[[Any, dict[str, Any]], Any],
    clients: Sequence[Any],
    records: Sequence[dict[str, Any]],
    *,
    rate: float,
    attempts: int = 3,
) -> ConcurrentRun:
    """Every record through ``store`` by ``len(clients)`` processors at once, ``attempts``
    rounds at most (Lambda's first try and its two retries).

    A record appears in ``records`` as many times as it is delivered (a redelivery is the same
    record again); ``results`` is keyed by ``record["id"]`` and keeps the last result.
    """
    run = ConcurrentRun()
    started = time.monotonic()
    pending: list[dict[str, Any]] = list(records)
    errors: dict[int, str] = {}
    for _ in range(attempts):
        if not pending:
            break
        failed = _round(store, clients, pending, rate, run, errors)
        pending = failed
    run.dead_letters = [(record, errors[id(record)]) for record in pending]
    run.seconds = time.monotonic() - started
    return run


def _round(
    store: Callable[[Any, dict[str, Any]], Any],
    clients: Sequence[Any],
    records: list[dict[str, Any]],
    rate: float,
    run: ConcurrentRun,
    errors: dict[int, str],
) -> list[dict[str, Any]]:
    work: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
    begin = time.monotonic()
    for index, record in enumerate(records):
        work.put((begin + index / rate, record))  # arrivals at `rate`, across the processors
    failed: list[dict[str, Any]] = []
    lock = threading.Lock()

    def processor(client: Any) -> None:
        while True:
            try:
                due, record = work.get_nowait()
            except queue.Empty:
                return
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                result = store(client, record)
            except Exception as error:
                with lock:
                    run.attempts += 1
                    run.failed_attempts += 1
                    errors[id(record)] = f"{type(error).__name__}: {error}"
                    failed.append(record)
            else:
                with lock:
                    run.attempts += 1
                    run.results[record["id"]] = result

    threads = [threading.Thread(target=processor, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failed
