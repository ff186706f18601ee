"""The Makefile's ``cdk synth``: its standard error shown as it comes, and a one-line settings
error handed back to make alone.

GNU make follows any recipe line that fails with its own ``make: *** [Makefile:N: synth]
Error 1`` line, and nothing in make turns that off for a failure that still ends make with a
non-zero status. So the Makefile runs this while it expands the recipe (``$(shell ...)``) and
stops through ``$(error ...)`` with what this prints on standard output: the app's
``Configuration error in cdk.json: ...`` line, or, after any other failure, a line naming the
command that failed. On success standard output is empty.

Standard error gets the command line first (as make would echo it), then the synth's own
standard error, without the blank lines a quiet synth ends with and without the CLI's
``python3 app.py: Subprocess exited with error 1``, which follows every settings error.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

# What app.py prints for a ConfigError (app.py's __main__).
SETTINGS_ERROR = "Configuration error in cdk.json: "
_CLI_EPILOGUE = ": Subprocess exited with error "


def shown_and_held(lines: Iterable[str], shown: TextIO) -> str | None:
    """Write ``lines`` to ``shown``, holding back the settings error (returned) and dropping the
    blank lines and the CLI's epilogue."""
    held = None
    for line in lines:
        text = line.rstrip("\n")
        if not text.strip() or _CLI_EPILOGUE in text:
            continue
        if text.startswith(SETTINGS_ERROR):
            held = text
            continue
        print(text, file=shown, flush=True)
    return held


def synth(arguments: Sequence[str], cwd: str = ".") -> str:
    """Run ``cdk synth --quiet arguments`` in ``cwd``; the line make stops with, or ``""``."""
    command = ["cdk", "synth", "--quiet", *arguments]
    print(shlex.join(command), file=sys.stderr, flush=True)
    try:
        process = subprocess.Popen(
            command, cwd=cwd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True
        )
    except FileNotFoundError:
        return "cdk is not on PATH: run `make install`, which installs the pinned CDK CLI"
    assert process.stderr is not None
    held = shown_and_held(process.stderr, sys.stderr)
    status = process.wait()
    if status == 0:
        return ""
    return held or f"{shlex.join(command)} failed (exit status {status}); its output is above"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline_tools.cdk_synth [-C DIR] ARGS...``: always exits 0 (make reads the
    outcome from standard output)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    cwd = "."
    if arguments[:1] == ["-C"]:
        cwd, arguments = arguments[1], arguments[2:]
    outcome = synth(arguments, cwd)
    if outcome:
        print(outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
