"""The local AWS emulator: moto's server with the CloudFormation handlers of ``cfn_models``.

With them, the deployed stack really has its ``live`` aliases and their retry and destination
settings, and the drive reads them back from the emulator. ``moto_patches.apply()`` makes the
changes to moto's own code this project needs, each checked against the pinned moto.

Run: ``python -m pipeline_tools.local.emulator --port 5005`` (it listens on 127.0.0.1 only).
"""

from __future__ import annotations

import argparse

import pipeline_tools.local.cfn_models  # noqa: F401  (registers the handlers with moto)
from pipeline_tools.local import moto_patches


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=5005)
    args = parser.parse_args(argv)
    moto_patches.apply()
    from moto.server import main as moto_main

    moto_main(["--host", "127.0.0.1", "--port", str(args.port)])


if __name__ == "__main__":
    main()
