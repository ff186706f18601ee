"""The one model of a synthesized template that every tool reads."""

from __future__ import annotations

import copy

import pytest

from pipeline_tools.template import StackTemplate, TemplateError
from serverless_stack.stages import STAGE_METADATA_KEY, STAGES
from tests.helpers import of_type, props, ref_id


def test_every_stage_is_found_by_its_label_with_its_wiring(per_record_json, env_name):
    template = per_record_json[env_name]  # the batched wiring: tests/test_batched_stack.py
    model = StackTemplate.of(template)
    assert sorted(model.stages) == sorted(STAGES)
    chain = {name: stage.on_success for name, stage in model.stages.items()}
    assert chain == {"validator": "enricher", "enricher": "processor", "processor": None}
    (queue_id,) = of_type(template, "AWS::SQS::Queue")
    for stage in model.stages.values():
        assert stage.dead_letter_queue_id == queue_id
        alias = props(template["Resources"][stage.alias_id])
        assert alias["Name"] == "live" and ref_id(alias["FunctionName"]) == stage.function_id
        assert stage.role_id == ref_id(stage.properties["Role"])
        expected_retries = 0 if stage.name == "validator" else 2
        assert stage.async_config["MaximumRetryAttempts"] == expected_retries


def test_stage_identity_is_the_label_not_the_handler(template_json):
    template = copy.deepcopy(template_json["dev"])
    for fn in of_type(template, "AWS::Lambda::Function").values():
        fn["Properties"]["Handler"] = "app.main"  # any handler: the label decides
    assert sorted(StackTemplate.of(template).stages) == sorted(STAGES)
    fn = next(
        f
        for f in of_type(template, "AWS::Lambda::Function").values()
        if STAGE_METADATA_KEY in f.get("Metadata", {})
    )
    del fn["Metadata"][STAGE_METADATA_KEY]
    with pytest.raises(TemplateError, match="no 'pipeline:stage' in its Metadata"):
        StackTemplate.of(template)
