"""CloudFormation handlers that moto 5.2.5 lacks, for two Lambda resources its API supports.

moto's Lambda API supports aliases and event invoke configs, but its CloudFormation does not
create them: a template resource of either type is skipped, and a ``Ref`` to an alias resolves
to nothing (which breaks any IAM policy naming the alias). These handlers create them through
moto's own Lambda backend, exactly as the ``CreateAlias`` and ``PutFunctionEventInvokeConfig``
API calls would. A third answers ``Fn::GetAtt [<version>, Version]``, which moto's own
version handler cannot; a function update skips public layers as a create does; and a stack
update keeps a defaulted parameter at its default. moto finds the handlers as subclasses of
``CloudFormationModel`` once imported.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

from moto.awslambda.models import LambdaFunction, lambda_backends
from moto.core.common_models import CloudFormationModel


def _backend(account_id: str, region_name: str) -> Any:
    return lambda_backends[account_id][region_name]


class _Handler:
    """What the three handlers share: no name property, created at once, ``Fn::GetAtt`` from
    ``ATTRIBUTES`` (CloudFormation attribute -> instance attribute), and an update that removes
    the old resource (``remove``, a no-op unless overridden) and creates the new one. A handler
    implements ``create`` and ``delete`` on the resource's ``Properties`` and moto's Lambda
    backend."""

    ATTRIBUTES: ClassVar[dict[str, str]] = {}

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    def is_created(self) -> bool:
        return True

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in cls.ATTRIBUTES

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name not in self.ATTRIBUTES:
            raise NotImplementedError(attribute_name)
        return str(getattr(self, self.ATTRIBUTES[attribute_name]))

    def remove(self, backend: Any) -> None:
        return None

    @classmethod
    def create(cls, p: dict[str, Any], backend: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def delete(cls, p: dict[str, Any], backend: Any) -> None:
        return None

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        return cls.create(cloudformation_json["Properties"], _backend(account_id, region_name))

    @classmethod
    def delete_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        cls.delete(cloudformation_json["Properties"], _backend(account_id, region_name))

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> Any:
        backend = _backend(account_id, region_name)
        original_resource.remove(backend)
        return cls.create(cloudformation_json["Properties"], backend)


class CloudFormationLambdaAlias(_Handler, CloudFormationModel):
    """``AWS::Lambda::Alias`` -> ``CreateAlias`` on moto's Lambda backend."""

    ATTRIBUTES: ClassVar[dict[str, str]] = {"AliasArn": "arn"}

    def __init__(self, arn: str, name: str, function_name: str) -> None:
        self.arn = arn
        self.name = name
        self.function_name = function_name

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::Alias"

    @property
    def physical_resource_id(self) -> str:
        return self.arn  # Ref of an alias is its ARN

    def remove(self, backend: Any) -> None:
        with contextlib.suppress(Exception):  # the function (and its aliases) may be gone
            backend.delete_alias(self.name, self.function_name)

    @classmethod
    def create(cls, p: dict[str, Any], backend: Any) -> CloudFormationLambdaAlias:
        function = backend.get_function(p["FunctionName"])
        version = p.get("FunctionVersion")
        if not version:  # moto's AWS::Lambda::Version has no Version attribute: take the latest
            published = [
                v.version for v in backend.list_versions_by_function(function.function_name)
            ]
            version = published[-1]
        alias = backend.create_alias(
            name=p["Name"],
            function_name=function.function_name,
            function_version=str(version),
            description=p.get("Description", ""),
            routing_config=None,
        )
        return cls(alias.arn, p["Name"], function.function_name)

    @classmethod
    def delete(cls, p: dict[str, Any], backend: Any) -> None:
        with contextlib.suppress(Exception):  # the function (and its aliases) may be gone
            backend.delete_alias(p["Name"], p["FunctionName"])


class CloudFormationEventInvokeConfig(_Handler, CloudFormationModel):
    """``AWS::Lambda::EventInvokeConfig`` -> ``PutFunctionEventInvokeConfig`` on moto."""

    def __init__(self, function_name: str, qualifier: str) -> None:
        self.function_name = function_name
        self.qualifier = qualifier

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::EventInvokeConfig"

    @property
    def physical_resource_id(self) -> str:
        return f"{self.function_name}:{self.qualifier}"

    @classmethod
    def create(cls, p: dict[str, Any], backend: Any) -> CloudFormationEventInvokeConfig:
        config = {
            k: p[k]
            for k in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")
            if k in p
        }
        cls.delete(p, backend)
        backend.put_function_event_invoke_config(p["FunctionName"], config)
        return cls(p["FunctionName"], str(p.get("Qualifier", "$LATEST")))

    @classmethod
    def delete(cls, p: dict[str, Any], backend: Any) -> None:
        if _has_config(backend, p["FunctionName"]):
            backend.delete_function_event_invoke_config(p["FunctionName"])


def _has_config(backend: Any, function_name: str) -> bool:
    try:
        backend.get_function_event_invoke_config(function_name)
    except Exception:
        return False
    return True


class CloudFormationLambdaVersion(_Handler, CloudFormationModel):
    """``AWS::Lambda::Version`` -> ``PublishVersion``, with the ``Version`` attribute.

    moto's own handler publishes the version but cannot answer ``Fn::GetAtt [.., Version]``,
    which CDK uses for an alias's ``FunctionVersion``. Versions go with their function, so
    deleting one does nothing.
    """

    ATTRIBUTES: ClassVar[dict[str, str]] = {"Version": "version", "FunctionArn": "arn"}

    def __init__(self, arn: str, version: str) -> None:
        self.arn = arn
        self.version = version

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::Version"

    @property
    def physical_resource_id(self) -> str:
        return self.arn  # Ref of a version is its ARN

    @classmethod
    def create(cls, p: dict[str, Any], backend: Any) -> CloudFormationLambdaVersion:
        published = backend.publish_version(p["FunctionName"], p.get("Description", ""))
        return cls(published.function_arn, str(published.version))


def _skip_layers_of_other_accounts() -> None:
    """Make a function update treat public layers as a function create does.

    moto drops the ``Layers`` of a function created from a template, but a template *update*
    passes them to ``UpdateFunctionConfiguration``, which rejects a layer the emulator does not
    hold (the public Powertools layer lives in AWS's account 017000801446). Layers of other
    accounts are left out on update too; the gap report lists ``Layers`` as not kept.
    """
    original = LambdaFunction._get_layers_data

    def layers_of_this_account(self: LambdaFunction, arns: list[str]) -> Any:
        return original(self, [arn for arn in arns if arn.split(":")[4] == self.account_id])

    LambdaFunction._get_layers_data = layers_of_this_account  # type: ignore[method-assign,assignment]


def _defaulted_parameters_keep_their_default_on_update() -> None:
    """On a stack update, a parameter left at its default stays at its default.

    The CDK CLI sends ``UsePreviousValue`` for every parameter the deployed stack already has.
    moto stores only the parameters that were passed in, not the defaulted ones, so the update
    fails with a ``KeyError`` on the template's ``AWS::SSM::Parameter::Value<String>`` parameter
    (the Powertools layer's). CloudFormation stores an SSM parameter's *name* and resolves its
    value again on every create and update
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/parameters-section-structure.html#aws-ssm-parameter-types);
    leaving such a key out makes moto do the same from the template's default.
    """
    from moto.cloudformation.models import CloudFormationBackend

    original = getattr(CloudFormationBackend, "_resolve_update_parameters", None)
    if original is None:
        raise RuntimeError(
            "moto.cloudformation.models.CloudFormationBackend._resolve_update_parameters is "
            "gone: the moto pin changed; update pipeline_tools/local/cfn_models.py"
        )

    def resolve(self: Any, instance: Any, incoming_params: list[dict[str, str]]) -> Any:
        kept = [
            p
            for p in incoming_params
            if not (p.get("UsePreviousValue") and p["ParameterKey"] not in instance.parameters)
        ]
        return original(self, instance, kept)

    CloudFormationBackend._resolve_update_parameters = resolve  # type: ignore[method-assign]


_skip_layers_of_other_accounts()
_defaulted_parameters_keep_their_default_on_update()
