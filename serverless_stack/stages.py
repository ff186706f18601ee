"""The pipeline's stages: the one table of what each stage is and does.

Plain data, no CDK. The stack wires each stage from its row, the settings take each stage's
default memory from it, and the tools (cost, right-sizing, the bench, the template reader) read
the stage list from it. Outside this file, stage names appear only in the handlers and tests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline.

    :param name: the stage, its handler package under ``lambda_src/`` and its service name.
    :param retries: Lambda's async retries of a failed invocation (0 to 2).
    :param next_stage: the stage its successful invocations go to (a Lambda destination).
    :param table_actions: the DynamoDB actions its code calls, and nothing more.
    :param critical: held warm in production and watched for provisioned-concurrency spillover
        in every environment.
    :param stores_records: writes the records, so it is told their encoding and retention.
    :param default_memory_mb: memory where the settings give none (see ``DEFAULT_MEMORY_RULE``).
    """

    name: str
    retries: int
    next_stage: str | None
    table_actions: tuple[str, ...]
    critical: bool
    stores_records: bool
    default_memory_mb: int

    @property
    def construct_id(self) -> str:
        return self.name.capitalize()

    @property
    def queue_id(self) -> str:
        """The construct ID of the stage's queue on the batched path (CloudFormation names the
        queue ``<stack>-<this><hash>-<suffix>``)."""
        return f"{self.construct_id}Queue"


#: The right-sizing rule (p99 of Max Memory Used plus 20 % headroom, rounded up to 64 MB)
#: applied to the illustrative sample logs in tests/data gives the default memories: 512 MB,
#: 768 MB for the enricher, which holds reference data. Re-derive them with `make rightsize`.
DEFAULT_MEMORY_RULE = "p99 of Max Memory Used plus 20 % headroom, rounded up to 64 MB"

#: The stages, in pipeline order. Validation is deterministic, so the validator is not
#: retried: a retry would fail the same way. The processor puts a record and its count marker
#: (``processor/storage.py``).
STAGE_TABLE: tuple[Stage, ...] = (
    Stage("validator", 0, "enricher", (), False, False, 512),
    Stage("enricher", 2, "processor", ("dynamodb:GetItem",), False, False, 768),
    Stage("processor", 2, None, ("dynamodb:PutItem",), True, True, 512),
)

#: Stage names, in pipeline order.
STAGES: tuple[str, ...] = tuple(stage.name for stage in STAGE_TABLE)
#: Stage name -> its row.
BY_NAME: dict[str, Stage] = {stage.name: stage for stage in STAGE_TABLE}
#: The stage every record enters by (and where invalid records are rejected).
ENTRY_STAGE: Stage = STAGE_TABLE[0]
#: The stage that writes the records and their count markers.
STORING_STAGE: Stage = next(stage for stage in STAGE_TABLE if stage.stores_records)
#: The stage production keeps warm.
CRITICAL_STAGE: Stage = next(stage for stage in STAGE_TABLE if stage.critical)

#: CloudFormation ``Metadata`` key on each stage's ``AWS::Lambda::Function``: the stage name.
#: The tools that read a synthesized template (``pipeline_tools/template.py``) find the stages
#: by this label rather than by parsing handler strings.
STAGE_METADATA_KEY = "pipeline:stage"

#: ``Metadata`` key on a function that serves the pipeline without being a stage (the scaling
#: pause of a deployment): the tools that read a template leave it out of the stages.
SUPPORT_METADATA_KEY = "pipeline:support"
