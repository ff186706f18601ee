"""The changes the local emulator makes to moto still match the pinned moto, and do their job."""

from __future__ import annotations

import io
import json
import zipfile

import boto3
import pytest
from moto import mock_aws

from pipeline_tools.local import moto_patches


@pytest.fixture(scope="module", autouse=True)
def patched():
    moto_patches.apply()


def make_function(session: boto3.Session) -> str:
    iam = session.client("iam")
    role = iam.create_role(
        RoleName="r",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(e, c):\n    return e\n")
    lam = session.client("lambda")
    lam.create_function(
        FunctionName="f",
        Runtime="python3.11",
        Role=role,
        Handler="index.handler",
        Code={"ZipFile": buffer.getvalue()},
        Publish=True,
    )
    lam.create_alias(FunctionName="f", Name="live", FunctionVersion="1")
    return "f"


def test_async_invoke_configs_are_kept_per_qualifier():
    """Lambda keeps one async config per version or alias; unpatched moto keeps one per
    function and ignores the qualifier, so reading ``live`` could show ``$LATEST``'s."""
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        name = make_function(session)
        lam = session.client("lambda")
        lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=2)
        lam.put_function_event_invoke_config(
            FunctionName=name, Qualifier="live", MaximumRetryAttempts=0
        )
        live = lam.get_function_event_invoke_config(FunctionName=name, Qualifier="live")
        latest = lam.get_function_event_invoke_config(FunctionName=name)
        assert (live["MaximumRetryAttempts"], latest["MaximumRetryAttempts"]) == (0, 2)
        assert live["FunctionArn"].endswith(":f:live")
        lam.delete_function_event_invoke_config(FunctionName=name, Qualifier="live")
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            lam.get_function_event_invoke_config(FunctionName=name, Qualifier="live")
        assert lam.get_function_event_invoke_config(FunctionName=name)["MaximumRetryAttempts"] == 2


def test_a_defaulted_ssm_parameter_survives_a_stack_update():
    template = {
        "Parameters": {
            "Layer": {
                "Type": "AWS::SSM::Parameter::Value<String>",
                "Default": "/aws/service/powertools/python/arm64/python3.14/3.37.0",
            }
        },
        "Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {}}},
        "Outputs": {"Layer": {"Value": {"Ref": "Layer"}}},
    }
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        cloudformation.create_stack(StackName="s", TemplateBody=json.dumps(template))
        template["Resources"]["Q2"] = {"Type": "AWS::SQS::Queue", "Properties": {}}
        cloudformation.update_stack(
            StackName="s",
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": "Layer", "UsePreviousValue": True}],
        )
        (stack,) = cloudformation.describe_stacks(StackName="s")["Stacks"]
        (output,) = stack["Outputs"]
        assert output["OutputValue"].startswith("arn:aws:lambda:us-east-1:017000801446:layer:")


def test_a_message_sent_to_a_mapped_queue_waits_there_for_the_runners_pollers():
    """Lambda's event source mapping polls the queue in batches
    (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html); unpatched moto
    instead receives each message as it is sent and runs the mapped function in Docker, so the
    message is gone (in flight, or its send fails) before the runner could poll it."""
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        name = make_function(session)
        sqs = session.client("sqs")
        url = sqs.create_queue(QueueName="stage")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        session.client("lambda").create_event_source_mapping(
            EventSourceArn=arn, FunctionName=f"{name}:live", BatchSize=10
        )
        sqs.send_message(QueueUrl=url, MessageBody='{"id": "r1"}')
        (message,) = sqs.receive_message(QueueUrl=url)["Messages"]
        assert message["Body"] == '{"id": "r1"}'


def test_a_changed_moto_function_stops_the_emulator_with_its_name(monkeypatch):
    """If the pinned moto changes or drops a patched function, the patch refuses, loudly."""
    from moto.cloudformation.models import CloudFormationBackend

    monkeypatch.setattr(
        CloudFormationBackend, "_resolve_update_parameters", lambda self, instance, params, x: None
    )
    with pytest.raises(moto_patches.MotoChanged, match="_resolve_update_parameters takes"):
        moto_patches._target(
            CloudFormationBackend, "_resolve_update_parameters", ("instance", "incoming_params")
        )
    monkeypatch.delattr(CloudFormationBackend, "_resolve_update_parameters")
    with pytest.raises(moto_patches.MotoChanged, match="_resolve_update_parameters is gone"):
        moto_patches._target(CloudFormationBackend, "_resolve_update_parameters", ())
