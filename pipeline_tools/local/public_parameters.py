"""Stand-ins for AWS's public Powertools parameters, which the emulator does not hold.

The stack resolves the Powertools layer at deploy time from the public SSM parameter
``/aws/service/powertools/python/<arch>/<python3.N>/<release>`` (see
``constructs_lib.powertools_layer``). moto ships some of AWS's public parameters (AMIs,
regions) but not these, so a deploy into the emulator would fail to resolve the template's
parameter. ``install`` makes the emulator answer each such name the way AWS does, with a layer
version ARN of AWS's Powertools publisher account, in the requested region and partition
``aws``.

The layer *version number* in that stand-in is not the real one (only AWS knows which version
holds a release); the emulator drops other accounts' layers anyway, and the drive runs the
Powertools installed from the same pin. This is listed under ``stand_ins`` in
``known_gaps.json`` and printed by the local deploy.
"""

from __future__ import annotations

import re
from typing import Any

#: Only names of this exact shape are answered, as AWS publishes them; anything else stays
#: ``ParameterNotFound``.
POWERTOOLS_PARAMETER = re.compile(
    r"^/aws/service/powertools/python/(?P<arch>arm64|x86_64)/"
    r"(?P<python>python3\.\d+)/(?P<release>\d+\.\d+\.\d+)$"
)
PUBLISHER_ACCOUNT = "017000801446"
STAND_IN_LAYER_VERSION = 1


def stand_in_value(name: str, region: str) -> str | None:
    """The stand-in layer ARN for a Powertools parameter ``name``, or ``None`` for other names."""
    match = POWERTOOLS_PARAMETER.match(name)
    if match is None:
        return None
    python = match["python"].replace(".", "")
    return (
        f"arn:aws:lambda:{region}:{PUBLISHER_ACCOUNT}:layer:"
        f"AWSLambdaPowertoolsPythonV3-{python}-{match['arch']}:{STAND_IN_LAYER_VERSION}"
    )


def install() -> None:
    """Answer Powertools' public parameters in this process's moto SSM backends.

    It wraps ``ParameterDict._check_loading_status``, the hook moto itself uses to load its
    public parameters on first access. It fails loudly if the pinned moto no longer has it.
    """
    from moto.core.utils import utcnow
    from moto.ssm.models import Parameter, ParameterDict

    original = getattr(ParameterDict, "_check_loading_status", None)
    if original is None:
        raise RuntimeError(
            "moto.ssm.models.ParameterDict._check_loading_status is gone: the moto pin changed; "
            "update pipeline_tools/local/public_parameters.py"
        )
    if getattr(original, "answers_powertools", False):
        return

    def check_loading_status(self: Any, key: str) -> None:
        original(self, key)
        value = stand_in_value(str(key or ""), self.region_name)
        if value is not None and not dict.__contains__(self, key):
            self.setdefault(key, []).append(
                Parameter(  # type: ignore[abstract]
                    account_id=self.account_id,
                    name=key,
                    value=value,
                    parameter_type="String",
                    description="Stand-in for AWS's public Powertools parameter (emulator only)",
                    allowed_pattern=None,
                    keyid=None,
                    last_modified_date=utcnow(),
                    version=1,
                    data_type="text",
                )
            )

    check_loading_status.answers_powertools = True  # type: ignore[attr-defined]
    ParameterDict._check_loading_status = check_loading_status  # type: ignore[method-assign]
