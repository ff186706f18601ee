"""The official Powertools for AWS Lambda (Python) layer, pinned, for a runtime and architecture.

Powertools reaches Lambda as AWS's public layer rather than inside each asset:

* ``cdk synth`` stays offline and needs no Docker or pip download to bundle dependencies;
* each function's own asset stays a few kilobytes, so a code change uploads and publishes fast;
* the layer is built by AWS for the exact runtime and architecture, compiled extras included.

The version is pinned (a setting) so that a deploy never changes Powertools underneath the
code. Check which Powertools release a layer version holds with
``aws lambda get-layer-version-by-arn --arn <arn>`` before bumping it, and keep the tests'
``aws-lambda-powertools`` pin in ``requirements-dev.txt`` on the same release.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

#: The AWS account that publishes the Powertools layers in every commercial region.
PUBLISHER_ACCOUNT = "017000801446"


def powertools_layer_arn(
    region: str, version: int, runtime: lambda_.Runtime, architecture: lambda_.Architecture
) -> str:
    """``arn:aws:lambda:<region>:017000801446:layer:AWSLambdaPowertoolsPythonV3-python314-arm64:<v>``."""
    python = runtime.name.replace(".", "")  # python3.14 -> python314
    arch = "arm64" if architecture.name == "arm64" else "x86_64"
    return (
        f"arn:aws:lambda:{region}:{PUBLISHER_ACCOUNT}:layer:"
        f"AWSLambdaPowertoolsPythonV3-{python}-{arch}:{version}"
    )


def powertools_layer(
    scope: Construct,
    construct_id: str,
    *,
    version: int,
    runtime: lambda_.Runtime,
    architecture: lambda_.Architecture,
) -> lambda_.ILayerVersion:
    """Reference the Powertools layer in the stack's own region (resolved at deploy)."""
    if not runtime.name.startswith("python3."):
        raise ValueError(f"runtime must be a Python 3 runtime, got {runtime.name!r}")
    region = Stack.of(scope).region
    arn = powertools_layer_arn(region, version, runtime, architecture)
    return lambda_.LayerVersion.from_layer_version_arn(scope, construct_id, arn)
