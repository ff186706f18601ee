"""What the operator commands know of a deployed pipeline, and how they invoke its stages.

A ``Pipeline`` is read from a stack's template (the entry stage, each stage's on-success
destination, the DLQ); an ``Invoker`` queues an asynchronous invocation of a stage's ``live``
alias. On AWS that is Lambda's ``Invoke`` (``LambdaInvoker``); against the local emulator, which
cannot run Lambda code without Docker, the in-process runner runs the deployed code
(``RunnerInvoker``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline_tools.template import StackTemplate

#: Keys that every Lambda destination invocation record carries (as the runtime code's
#: ``pipeline_common.invocation`` reads them; the tools do not import runtime code).
INVOCATION_RECORD_KEYS = frozenset({"requestContext", "requestPayload", "responsePayload"})
THROTTLING_CODES = frozenset({"TooManyRequestsException", "ThrottlingException"})


class Invoker(Protocol):
    """Queues an asynchronous invocation of a stage's ``live`` alias; raises if refused."""

    def invoke(self, stage: str, event: Any) -> None: ...


@dataclass(frozen=True)
class Pipeline:
    """What the commands need to know of a deployed stack."""

    entry: str  # the stage records enter by (the validator)
    next_stage: Mapping[str, str | None]  # stage -> its on-success destination
    stage_of_function: Mapping[str, str]  # function name -> stage
    dead_letter_queue_url: str

    @classmethod
    def of(
        cls, template: Mapping[str, Any], function_names: Mapping[str, str], queue_url: str
    ) -> Pipeline:
        """From a stack's template and its functions' physical names (stage -> name)."""
        stages = StackTemplate.of(template).stages
        destinations = {s.on_success for s in stages.values() if s.on_success}
        (entry,) = [name for name in stages if name not in destinations]
        return cls(
            entry=entry,
            next_stage={name: stage.on_success for name, stage in stages.items()},
            stage_of_function={function_names[name]: name for name in stages},
            dead_letter_queue_url=queue_url,
        )

    def failed_stage(self, event: Any) -> str:
        """The stage whose invocation of ``event`` failed."""
        if isinstance(event, dict) and event.get("source") == "aws.codedeploy":
            # The scaling pause could not resume scaling after a deployment: no stage to
            # redrive to. It pages through the DLQ alarm; the README's runbook says what to do.
            raise ValueError("a CodeDeploy deployment event: resume the processor's scaling")
        if isinstance(event, dict) and event.keys() >= INVOCATION_RECORD_KEYS:
            arn = str(event["requestContext"].get("functionArn", ""))
            succeeded = self.stage_of_function.get(_function_name(arn))
            following = self.next_stage.get(succeeded) if succeeded else None
            if following is None:
                raise ValueError(f"cannot tell which stage follows {arn!r}")
            return following
        return self.entry


def _function_name(arn: str) -> str:
    """``arn:aws:lambda:r:a:function:NAME[:qualifier]`` -> ``NAME``."""
    parts = arn.split(":")
    return parts[6] if len(parts) > 6 else arn


class RunnerInvoker:
    """The in-process runner as the invoker: it runs the deployed code as Lambda's async invoke
    would (the local emulator cannot run Lambda code without Docker). Invocations are queued;
    ``finish`` runs them and everything they lead to."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner

    def invoke(self, stage: str, event: Any) -> None:
        self.runner.invoke_async(event, stage)  # as JSON, within Invoke's limits

    def finish(self) -> None:
        self.runner.drain()


def runner_pipeline(runner: Any) -> Pipeline:
    """The pipeline an in-process runner runs (``pipeline_tools.runner.AsyncPipeline``)."""
    specs = runner.specs
    (queue,) = {s.dead_letter_queue_url for s in specs.values() if s.dead_letter_queue_url}
    return Pipeline(
        entry=runner.entry,
        next_stage={name: spec.on_success for name, spec in specs.items()},
        stage_of_function={_function_name(spec.arn): name for name, spec in specs.items()},
        dead_letter_queue_url=queue,
    )


class LambdaInvoker:
    """Lambda's asynchronous ``Invoke`` of each stage's ``live`` alias, retried on throttling."""

    def __init__(self, lambda_client: Any, alias_arns: Mapping[str, str], attempts: int = 6):
        self.client = lambda_client
        self.alias_arns = dict(alias_arns)
        self.attempts = attempts

    def invoke(self, stage: str, event: Any) -> None:
        payload = json.dumps(event, allow_nan=False).encode()
        for attempt in range(self.attempts):
            try:
                self.client.invoke(
                    FunctionName=self.alias_arns[stage], InvocationType="Event", Payload=payload
                )
                return
            except Exception as error:
                code = getattr(error, "response", {}).get("Error", {}).get("Code")
                if code not in THROTTLING_CODES or attempt == self.attempts - 1:
                    raise
                time.sleep(min(8.0, 0.2 * 2**attempt))


def deployed_pipeline(session: Any, stack_name: str) -> tuple[Pipeline, LambdaInvoker]:
    """The pipeline of a deployed stack on the per-record path, and the invoker of its aliases
    (``pipeline_tools.stage_queues.deployed`` takes either path)."""
    from pipeline_tools.local.deployed import DeployedStack

    stack = DeployedStack.read(session, stack_name)
    stages = StackTemplate.of(stack.template).stages
    names = {name: stack.physical[stage.function_id] for name, stage in stages.items()}
    pipeline = Pipeline.of(stack.template, names, stack.outputs["DlqUrl"])
    lam = session.client("lambda")
    aliases = {
        name: f"{lam.get_function(FunctionName=function)['Configuration']['FunctionArn']}:live"
        for name, function in names.items()
    }
    return pipeline, LambdaInvoker(lam, aliases)
