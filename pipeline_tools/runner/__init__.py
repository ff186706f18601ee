"""Run the pipeline's real handler code in-process, the way Lambda's asynchronous invocation
would: retries, on-success destinations between aliases and dead-letter queues, all read from
a synthesized template (or from a deployed stack), never hard-coded.

It is a tool, not a test helper: the fault-run tests use it on moto, and the local deploy uses
it to drive the code that was deployed into the emulator.
"""

from pipeline_tools.runner.runner import AsyncPipeline, Outcome
from pipeline_tools.runner.spec import FunctionSpec, specs_from_assembly

__all__ = ["AsyncPipeline", "FunctionSpec", "Outcome", "specs_from_assembly"]
