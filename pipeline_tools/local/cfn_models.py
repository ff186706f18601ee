"""CloudFormation handlers that moto 5.2.5 lacks, for two Lambda resources its API supports.

moto's Lambda API supports aliases and event invoke configs, but its CloudFormation does not
create them: a template resource of either type is skipped, and a ``Ref`` to an alias resolves
to nothing (which breaks any IAM policy naming the alias). These handlers create them through
moto's own Lambda backend, exactly as the ``CreateAlias`` and ``PutFunctionEventInvokeConfig``
API calls would. A third answers ``Fn::GetAtt [<version>, Version]``, which moto's own
version handler cannot. moto finds the handlers as subclasses of ``CloudFormationModel`` once
imported; the changes to moto's own code are in ``moto_patches.py``.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

from moto.awslambda.models import lambda_backends
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
        qualifier = str(p.get("Qualifier", "$LATEST"))
        cls.delete(p, backend)
        backend.put_function_event_invoke_config(p["FunctionName"], config, qualifier)
        return cls(p["FunctionName"], qualifier)

    @classmethod
    def delete(cls, p: dict[str, Any], backend: Any) -> None:
        qualifier = str(p.get("Qualifier", "$LATEST"))
        with contextlib.suppress(Exception):  # none yet, or the function is gone
            backend.delete_function_event_invoke_config(p["FunctionName"], qualifier)


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
