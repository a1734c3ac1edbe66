"""The attnbench command (also `python -m harness` from the repository root): the
parser in parser.py, what each command does in commands.py, and `main`, the
console script `harness.cli:main`, which turns a user's mistake into one line."""
from __future__ import annotations

import sys
import warnings

from rich.console import Console

from harness.cli import commands
from harness.cli.parser import parser
from harness.spec.catalog import PLUGIN_ERRORS
from harness.spec.errors import UserError


def main(argv: list[str] | None = None) -> int:
    if PLUGIN_ERRORS:
        print(f"attnbench: error: {PLUGIN_ERRORS[0]}", file=sys.stderr)
        return 2
    args = parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)   # run --versions passes it on
    # A warning (a row cut off by a crash) is one line, not Python's source echo.
    warnings.formatwarning = lambda message, *_, **__: f"attnbench: warning: {message}\n"
    try:
        return _dispatch(args)
    except UserError as exc:
        print(f"attnbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnbench: interrupted", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    """The command's exit status; run and check draw their progress on stderr."""
    console = Console()
    if args.command == "run":
        return commands.run(args, Console(stderr=True))
    if args.command == "check":
        return commands.check_command(args, Console(stderr=True))
    if args.command == "env":
        from harness.cli.env import calibrate_env, show_env
        if args.calibrate:
            return calibrate_env(console, args.threads, args.size)
        return show_env(console)
    if args.command == "compare":
        return commands.compare(args)
    if args.command == "history":
        return commands.history(args, console)
    if args.command == "export":
        return commands.export(args, console)
    if args.command == "publish":
        return commands.publish(args, console)
    return commands.report(args, console)


if __name__ == "__main__":
    sys.exit(main())
