"""The `gqn` command: one console script, a subcommand per job.

    gqn data info PATH            what a dataset folder holds
    gqn data verify PATH          check every CRC and decode every JPEG
    gqn data show PATH --scene N --out views.png

`python -m gqn` is the same command. Errors in the user's input print one line and exit 1.
"""

from __future__ import annotations

import argparse
import sys

from gqn import __version__
from gqn.errors import GQNError


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the examples in each description as written and shows defaults."""


def build_parser() -> argparse.ArgumentParser:
    from gqn.data import commands as data_commands

    parser = argparse.ArgumentParser(
        prog="gqn",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gqn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    data_commands.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except GQNError as e:
        print(f"gqn: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gqn: interrupted", file=sys.stderr)
        return 130
