"""``classavg`` command-line entry point.

Each subcommand lives in its own module of :mod:`classavg.cli` and exposes two functions:
``add_parser(subparsers)`` (declares the arguments) and ``run(args)`` (a thin call into a
documented library function; returns the process exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .._errors import UserInputError
from .._version import __version__
from .._progress import set_progress

__all__ = ["main", "build_parser"]

#: Subcommand modules, in the order ``classavg --help`` lists them.
SUBCOMMANDS = ("demo", "run", "select", "simulate", "info", "presets")

logger = logging.getLogger("classavg")


class UserError(UserInputError):
    """An error caused by the user's input: printed as one line, no traceback."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="classavg", description="cryo-EM 2D class averaging with RELION-ready outputs")
    parser.add_argument("--version", action="version", version=f"classavg {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"{__package__}.{name}")
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The CLI (not the library) owns the handler: the library only logs to module loggers.
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose + 1, 2),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    if args.no_progress:
        set_progress(False)
    try:
        return int(args._run(args) or 0)
    except (UserInputError, OSError) as exc:
        # Bad input, options, output folders, missing extras and operating-system errors
        # (permissions, a full disk: the message names the path) are the user's to fix: one
        # line.  Anything else is a bug in classavg and keeps its traceback.
        if args.verbose > 1:
            raise
        print(f"classavg {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"classavg {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(exc):
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in text:
        text = f"{text}: {exc.filename!r}"
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
