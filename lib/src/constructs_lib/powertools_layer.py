"""The official Powertools for AWS Lambda (Python) layer, at one pinned *release*.

Powertools reaches Lambda as AWS's public layer rather than inside each asset: ``cdk synth``
stays offline with no Docker or pip step, each function's asset stays a few kilobytes, and AWS
builds the layer for the exact runtime and architecture.

Which layer holds which release is not guessed: a layer *version number* is a shared counter,
not a release. The layer is resolved **at deploy time** from the public SSM parameter that the
Powertools team publishes for every release
(https://docs.aws.amazon.com/powertools/python/latest/#lambda-layer)::

    /aws/service/powertools/python/<arm64|x86_64>/<python3.N>/<release>   ->   layer version ARN

so the release in the template is the release pinned for the tests, by construction. The
parameter becomes a CloudFormation parameter of type ``AWS::SSM::Parameter::Value<String>``:

* synth stays offline (nothing is looked up until CloudFormation resolves it);
* the ARN that comes back carries the right partition and region;
* ``latest`` is refused: it would change Powertools underneath the code on any deploy;
* a release without a parameter (it happened: powertools-lambda-python issue 7689, 3.23.0) or a
  region without the layer fails the deploy *before* anything changes, naming the parameter;
* a new pin changes the parameter's name, hence the function's properties, so ``live`` moves to
  a newly published version (``@aws-cdk/aws-lambda:recognizeLayerVersion``).
"""

from __future__ import annotations

import re

from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_ssm as ssm
from constructs import Construct

#: The prefix of Powertools' public parameters, one per architecture, Python and release.
PARAMETER_PREFIX = "/aws/service/powertools/python"
_RELEASE = re.compile(r"^\d+\.\d+\.\d+$")


def powertools_parameter_name(
    release: str, runtime: lambda_.Runtime, architecture: lambda_.Architecture
) -> str:
    """``/aws/service/powertools/python/arm64/python3.14/3.37.0`` for those arguments.

    :raises ValueError: for a release that is not ``MAJOR.MINOR.PATCH`` (``latest`` included)
        or a runtime that is not Python 3.
    """
    if not isinstance(release, str) or not _RELEASE.match(release):
        raise ValueError(
            f"release must be a pinned Powertools release such as '3.37.0', got {release!r} "
            "('latest' would change Powertools underneath the code on any deploy)"
        )
    if not runtime.name.startswith("python3."):
        raise ValueError(f"runtime must be a Python 3 runtime, got {runtime.name!r}")
    arch = "arm64" if architecture.name == "arm64" else "x86_64"
    return f"{PARAMETER_PREFIX}/{arch}/{runtime.name}/{release}"


def powertools_layer(
    scope: Construct,
    construct_id: str,
    *,
    release: str,
    runtime: lambda_.Runtime,
    architecture: lambda_.Architecture,
) -> lambda_.ILayerVersion:
    """The Powertools layer of ``release`` for ``runtime`` and ``architecture``.

    Its ARN is resolved from Powertools' public SSM parameter when CloudFormation deploys.
    """
    name = powertools_parameter_name(release, runtime, architecture)
    arn = ssm.StringParameter.value_for_string_parameter(scope, name)
    return lambda_.LayerVersion.from_layer_version_arn(scope, construct_id, arn)
