"""``pipeline``: the project's one command line (installed by ``make install`` as
``.venv/bin/pipeline``; it needs no activated venv).

    pipeline [--stack NAME] send FILE | dead-letters | redrive [...] | counts --day DAY | smoke
                                      on a deployed stack, with your AWS credentials
    pipeline local up [--keep] | down | drive | send | dead-letters | redrive | counts | smoke
                                      the same on the local emulator
    pipeline cost [...]               the monthly bill against the naive stack
    pipeline rightsize [LOG ...]      memory recommendations from REPORT lines

Each command is the module's own (``pipeline_tools.operate``, ``.local``, ``.cost``,
``.rightsize``), with its options; ``pipeline COMMAND --help`` lists them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

OPERATOR_COMMANDS = ("send", "dead-letters", "redrive", "counts", "smoke")
USAGE = "usage: pipeline [--stack NAME] [--role-arn ARN] COMMAND [ARGS ...]  (pipeline --help)"
#: Each command, in a few words (``pipeline`` alone lists them).
COMMANDS = {
    "send": "send records (a JSON array, an object or NDJSON) to validator:live",
    "dead-letters": "list the dead-letter queue without consuming it",
    "redrive": "re-invoke each dead letter's failed stage",
    "counts": "the records stored per type on a UTC day (--day YYYY-MM-DD)",
    "smoke": "send known records and check where each one ended",
    "local": "the same on the local emulator, and up, down, drive",
    "cost": "the monthly bill against the naive stack",
    "rightsize": "memory recommendations from REPORT log lines",
}
#: The operator commands' own options, which come before the command.
OPERATOR_OPTIONS = ("--stack", "--role-arn")


def _tools() -> dict[str, Callable[[list[str]], int]]:
    def local(argv: list[str]) -> int:
        from pipeline_tools.local.__main__ import main

        return main(argv)

    def cost(argv: list[str]) -> int:
        from pipeline_tools.cost import main

        return main(argv)

    def rightsize(argv: list[str]) -> int:
        from pipeline_tools.rightsize import main

        return main(argv)

    return {"local": local, "cost": cost, "rightsize": rightsize}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(USAGE, file=sys.stderr)
        print("commands:", file=sys.stderr)
        for command, what in COMMANDS.items():
            print(f"  {command:<13} {what}", file=sys.stderr)
        return 2
    if args[0] in ("-h", "--help"):
        print(__doc__.strip().replace("``", "`"))
        return 0
    tools = _tools()
    if args[0] in tools:
        return tools[args[0]](args[1:])
    if args[0] in OPERATOR_COMMANDS or args[0].split("=")[0] in OPERATOR_OPTIONS:
        from pipeline_tools.operate import main as operate

        return operate(args)
    known = ", ".join([*OPERATOR_COMMANDS, *tools])
    print(f"error: pipeline: unknown command {args[0]!r}; the commands: {known}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
