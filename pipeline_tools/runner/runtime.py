"""Loading and calling one function's handler in-process, as its own isolated deployment.

Each function's package is imported from its own code directory, with its own environment
variables, and its modules are kept apart from every other function's: two functions can ship
packages of the same name (here each ships ``pipeline_common``) without seeing each other's.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline_tools.runner.spec import FunctionSpec

#: Set for every function, as Lambda would (no X-Ray daemon runs in-process).
RUNTIME_ENVIRONMENT = {"POWERTOOLS_TRACE_DISABLED": "true"}

# Powertools warns when an invocation published no custom metric, which is most of them here
# (metrics are emitted only when something happens); in the tools' output it says nothing.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


@dataclass
class LambdaContext:
    """The parts of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: The version that runs: through an alias, the alias's version number.
    function_version: str = "1"
    log_group_name: str = ""
    log_stream_name: str = "in-process"
    timeout_seconds: int = 3
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self._started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))


class LoadedFunction:
    """A function's handler, imported from its code directory under its environment."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self._packages = {
            p.stem
            for p in Path(spec.code_dir).iterdir()
            if p.suffix == ".py" or (p / "__init__.py").is_file()
        }
        self._modules: dict[str, ModuleType] = {}
        self._invoked = False
        module_name, _, function_name = spec.handler.rpartition(".")
        # The code directory is the deployed asset (cdk.out, or what the emulator served): it is
        # read, never written, so no __pycache__ lands in it.
        writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
        _fresh_service_logger(spec.environment.get("POWERTOOLS_SERVICE_NAME"))
        try:
            with self.activated():
                self.module = importlib.import_module(module_name)
                self._modules = self._own_modules()
        finally:
            sys.dont_write_bytecode = writes_bytecode
        if spec.policy is not None:
            # Handlers create their clients once, at import: each is held to the role's policy.
            for client in clients_of(self.module):
                spec.policy.enforce_on(client)
        self.handler: Callable[[Any, Any], Any] = getattr(self.module, function_name)

    def invoke(self, event: Any, request_id: str) -> Any:
        """Call the handler as Lambda would, under the function's environment and modules."""
        context = LambdaContext(
            function_name=self.spec.name,
            memory_limit_in_mb=self.spec.memory_mb,
            invoked_function_arn=self.spec.arn,
            aws_request_id=request_id,
            function_version=self.spec.version,
            timeout_seconds=self.spec.timeout_seconds,
        )
        with self.activated():
            _cold_start(not self._invoked)
            self._invoked = True
            return self.handler(event, context)

    @contextmanager
    def activated(self) -> Iterator[None]:
        """Put this function's modules, path and environment in place, then restore them."""
        others = {n: m for n, m in sys.modules.items() if n.split(".")[0] in self._packages}
        for name in others:
            del sys.modules[name]
        sys.modules.update(self._modules)
        sys.path.insert(0, str(self.spec.code_dir))
        try:
            with environment_variables(
                {
                    **RUNTIME_ENVIRONMENT,
                    # Lambda sets the region of the function; its ARN names it.
                    "AWS_REGION": self.spec.arn.split(":")[3],
                    "AWS_DEFAULT_REGION": self.spec.arn.split(":")[3],
                    "AWS_LAMBDA_FUNCTION_NAME": self.spec.name,
                    # "The version of the function being executed": through the alias, its
                    # version's number (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html).
                    "AWS_LAMBDA_FUNCTION_VERSION": self.spec.version,
                    **self.spec.environment,
                }
            ):
                yield
        finally:
            sys.path.remove(str(self.spec.code_dir))
            self._modules.update(self._own_modules())
            for name in self._own_modules():
                del sys.modules[name]
            sys.modules.update(others)

    def _own_modules(self) -> dict[str, ModuleType]:
        return {n: m for n, m in sys.modules.items() if n.split(".")[0] in self._packages}


def _fresh_service_logger(service: str | None) -> None:
    """Forget a Powertools logger configured by an earlier function of the same service name.

    Python's loggers are process-wide, and Powertools configures a service's logger once (it
    marks it preconfigured and skips the set-up after that), so without this a function loaded
    second would inherit the first one's level and handlers. In Lambda each function has its
    own process; here each gets its own logger set-up.
    """
    if not service:
        return
    existing = logging.getLogger(service)
    for handler in list(existing.handlers):
        existing.removeHandler(handler)
    for attribute in [a for a in vars(existing) if a.startswith("powertools") or a == "init"]:
        delattr(existing, attribute)
    existing.setLevel(logging.NOTSET)


def _cold_start(first: bool) -> None:
    """Powertools keeps "is this a cold start" in process-wide flags (its logger's, metrics' and
    tracer's); in Lambda each function runs in environments of its own, whose first invocation
    is the cold one. So here each function's first invocation is its cold start, whatever ran
    before it in this process (and a log line's ``cold_start`` does not depend on test order)."""
    import aws_lambda_powertools.logging.logger as logger_flags
    from aws_lambda_powertools.metrics.provider import cold_start as metrics_flags

    logger_flags.is_cold_start = first
    metrics_flags.is_cold_start = first
    tracer_flags = sys.modules.get("aws_lambda_powertools.tracing.tracer")
    if tracer_flags is not None:
        tracer_flags.is_cold_start = first  # type: ignore[attr-defined]


def clients_of(module: ModuleType, service: str | None = None) -> list[Any]:
    """The boto3 clients a handler module made at import (of ``service``, if given)."""
    found = []
    for value in vars(module).values():
        model = getattr(getattr(value, "meta", None), "service_model", None)
        if model is None or not hasattr(value.meta, "events"):
            continue
        if service is None or model.service_name == service:
            found.append(value)
    return found


@contextmanager
def environment_variables(variables: Mapping[str, str | None]) -> Iterator[None]:
    """Set ``variables`` in ``os.environ`` for the block (``None`` unsets), then restore."""
    saved = {k: os.environ.get(k) for k in variables}
    for key, value in variables.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
