"""Every change this project makes to moto's own code, in one place, applied by ``apply()``.

The emulator (``pipeline_tools/local/emulator.py``) calls ``apply()`` once, before it serves;
nothing is patched at import. Each patch names the moto function it replaces and the parameters
it expects that function to have: if the pinned moto changes (``requirements-dev.txt``), ``apply``
raises :class:`MotoChanged` naming the patch, instead of silently doing something else.
``tests/test_moto_patches.py`` applies them to the pinned moto and checks each one works.

1. Public layers on a function update: moto drops other accounts' layers on create, but passes
   them to ``UpdateFunctionConfiguration`` on a template update, which then fails.
2. Defaulted parameters on a stack update: the CDK CLI sends ``UsePreviousValue`` for every
   parameter; moto keeps only passed-in ones and raises ``KeyError`` on defaulted ones.
3. Async invoke configs per qualifier: moto keeps one config per function whatever the
   ``Qualifier``; Lambda keeps one per version or alias, and this stack configures ``live``.
4. AWS's public Powertools parameters (``public_parameters.py``).
5. SQS event source mappings left to the runner: moto's ``Queue.add_message`` receives each new
   message for every mapping on its queue and runs the mapped function in Docker, at once.
   There is no Docker here, and Lambda polls in batches with a window; the in-process runner
   plays the mapping (``pipeline_tools/runner/event_source.py``), so the queue only keeps the
   message, as SQS does.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pipeline_tools.local import public_parameters


class MotoChanged(RuntimeError):
    """A patched moto function is gone or has other parameters: the moto pin changed."""


def _target(owner: Any, name: str, parameters: tuple[str, ...]) -> Callable[..., Any]:
    """``owner.name``, checked to take ``parameters`` (after ``self``)."""
    original = getattr(owner, name, None)
    if original is None:
        raise MotoChanged(f"{owner.__module__}.{owner.__name__}.{name} is gone")
    found = tuple(p for p in inspect.signature(original).parameters if p != "self")
    if found != parameters:
        raise MotoChanged(
            f"{owner.__module__}.{owner.__name__}.{name} takes {found}, the patch expects "
            f"{parameters}: update pipeline_tools/local/moto_patches.py"
        )
    return original


def apply() -> None:
    """Apply every patch (once; applying again changes nothing)."""
    import moto.awslambda.models as lambda_models
    import moto.sqs.models as sqs_models
    from moto.awslambda.responses import LambdaResponse
    from moto.cloudformation.models import CloudFormationBackend

    if getattr(CloudFormationBackend, "_pipeline_patched", False):
        return
    _skip_layers_of_other_accounts(lambda_models.LambdaFunction)
    _defaulted_parameters_keep_their_default(CloudFormationBackend)
    _event_invoke_configs_per_qualifier(lambda_models, LambdaResponse)
    _sqs_mappings_left_to_the_runner(sqs_models.Queue)
    public_parameters.install()
    CloudFormationBackend._pipeline_patched = True  # type: ignore[attr-defined]


def _sqs_mappings_left_to_the_runner(queue_class: Any) -> None:
    """A message sent to a mapped queue stays in it, for the runner's pollers (patch 5)."""
    original = _target(queue_class, "add_message", ("message",))

    def add_message(self: Any, message: Any) -> None:
        mappings, self.lambda_event_source_mappings = self.lambda_event_source_mappings, {}
        try:
            original(self, message)
        finally:
            self.lambda_event_source_mappings = mappings

    queue_class.add_message = add_message


def _skip_layers_of_other_accounts(function_class: Any) -> None:
    """A function update treats public layers as a function create does (leaves them out; the
    gap report lists ``Layers`` as not kept)."""
    original = _target(function_class, "_get_layers_data", ("layers_versions_arns",))

    def layers_of_this_account(self: Any, arns: list[str]) -> Any:
        return original(self, [arn for arn in arns if arn.split(":")[4] == self.account_id])

    function_class._get_layers_data = layers_of_this_account


def _defaulted_parameters_keep_their_default(backend_class: Any) -> None:
    """On a stack update, a parameter left at its default stays at its default.

    CloudFormation stores an SSM parameter's *name* and resolves its value again on every
    create and update
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/parameters-section-structure.html#aws-ssm-parameter-types);
    leaving such a key out makes moto do the same from the template's default.
    """
    original = _target(backend_class, "_resolve_update_parameters", ("instance", "incoming_params"))

    def resolve(self: Any, instance: Any, incoming_params: list[dict[str, str]]) -> Any:
        kept = [
            p
            for p in incoming_params
            if not (p.get("UsePreviousValue") and p["ParameterKey"] not in instance.parameters)
        ]
        return original(self, instance, kept)

    backend_class._resolve_update_parameters = resolve


def _event_invoke_configs_per_qualifier(models: Any, responses: Any) -> None:
    """``Put/Get/DeleteFunctionEventInvokeConfig`` keep one config per qualifier, as Lambda does
    (https://docs.aws.amazon.com/lambda/latest/api/API_PutFunctionEventInvokeConfig.html)."""
    backend = models.LambdaBackend
    _target(backend, "put_function_event_invoke_config", ("function_name", "config"))
    _target(backend, "get_function_event_invoke_config", ("function_name",))
    _target(backend, "delete_function_event_invoke_config", ("function_name",))
    for name in (
        "put_function_event_invoke_config",
        "get_function_event_invoke_config",
        "delete_function_event_invoke_config",
    ):
        _target(responses, name, ())
    _invoke_configs_in_the_backend(models)
    _invoke_configs_in_the_responses(responses)


def _invoke_configs_in_the_backend(models: Any) -> None:
    backend = models.LambdaBackend

    def put(self: Any, function_name: str, config: dict[str, Any], qualifier: Any = None) -> Any:
        fn = self.get_function(function_name)
        wanted = qualifier or "$LATEST"
        kept = [c for c in fn.event_invoke_config if getattr(c, "qualifier", "$LATEST") != wanted]
        arn = fn.function_arn if wanted == "$LATEST" else f"{fn.function_arn}:{wanted}"
        created = models.EventInvokeConfig(arn, fn.last_modified, config)
        created.qualifier = wanted
        fn.event_invoke_config = [*kept, created]
        return created.response()

    def find(self: Any, function_name: str, qualifier: Any = None) -> Any:
        fn = self.get_function(function_name)
        wanted = qualifier or "$LATEST"
        for config in fn.event_invoke_config:
            if getattr(config, "qualifier", "$LATEST") == wanted:
                return fn, config
        raise models.UnknownEventConfig(
            fn.function_arn if wanted == "$LATEST" else f"{fn.function_arn}:{wanted}"
        )

    def get(self: Any, function_name: str, qualifier: Any = None) -> Any:
        return find(self, function_name, qualifier)[1].response()

    def delete(self: Any, function_name: str, qualifier: Any = None) -> None:
        fn, config = find(self, function_name, qualifier)
        fn.event_invoke_config = [c for c in fn.event_invoke_config if c is not config]

    backend.put_function_event_invoke_config = put
    backend.get_function_event_invoke_config = get
    backend.delete_function_event_invoke_config = delete


def _invoke_configs_in_the_responses(responses: Any) -> None:
    from urllib.parse import unquote

    from moto.core.responses import ActionResult

    def name_and_qualifier(self: Any) -> tuple[str, Any]:
        return unquote(self.path.rsplit("/", 2)[1]), self.querystring.get("Qualifier", [None])[0]

    def put_response(self: Any) -> Any:
        name, qualifier = name_and_qualifier(self)
        return ActionResult(
            self.backend.put_function_event_invoke_config(name, self.json_body, qualifier)
        )

    def get_response(self: Any) -> Any:
        name, qualifier = name_and_qualifier(self)
        return ActionResult(self.backend.get_function_event_invoke_config(name, qualifier))

    def delete_response(self: Any) -> Any:
        name, qualifier = name_and_qualifier(self)
        self.backend.delete_function_event_invoke_config(name, qualifier)
        return 204, {"status": 204}, "{}"

    responses.put_function_event_invoke_config = put_response
    responses.get_function_event_invoke_config = get_response
    responses.delete_function_event_invoke_config = delete_response
