"""What the `gqn` subcommands share on the command line, defined once, below all of them.

    p = sub.add_parser("eval", parents=[checkpoint(), data()], formatter_class=HelpFormatter, ...)

The help formatter, and the arguments that mean the same in every verb (CHECKPOINT, `--data`,
`--split`, `--scene`) as argparse parent parsers. The subcommand modules take them from here and
`gqn.cli` only wires the subcommands together, so imports run one way: cli -> verbs -> this.
Flags are spelled with dashes; `hidden_alias` keeps another spelling working without showing it.
"""

from __future__ import annotations

import argparse

MODEL_HELP = "a checkpoint file, a run folder, pretrained:NAME or a .safetensors file"
MODEL_DATA = "the built-in data of the dataset the model was trained on"  # what --data defaults to


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the examples in each description as written and states each default once: a help
    that already says its default, and a default of None (nothing given), False (a switch left
    off) or [] (a flag to repeat), get no "(default: ...)" appended."""

    def _get_help_string(self, action):
        unsaid = action.default is None or action.default is False or action.default == []
        if unsaid or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def checkpoint(help: str = MODEL_HELP) -> argparse.ArgumentParser:
    """CHECKPOINT: the trained model a verb reads (`gqn.checkpoint.load_model` takes any of these)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("checkpoint", metavar="CHECKPOINT", help=help)
    return p


def data(split: bool = True, default: str = "the built-in data") -> argparse.ArgumentParser:
    """--data ROOT/DATASET (`default` says what a verb reads without it) and, unless split=False,
    --split."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data", default=None, help=f"ROOT/DATASET (default: {default})")
    if split:
        p.add_argument("--split", default="test", help="split of the dataset")
    return p


def scene(help: str = "scene index within the split", type=int, default=0) -> argparse.ArgumentParser:
    """--scene: which scene of the split a verb shows."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--scene", type=type, default=default, help=help)
    return p


def hidden_alias(parser: argparse.ArgumentParser, name: str, dest: str, **kwargs) -> None:
    """Another spelling of a flag (e.g. `--batch_size` beside `--batch-size`) that parses like it
    and is left out of the help."""
    parser.add_argument(name, dest=dest, help=argparse.SUPPRESS, **kwargs)


def boolean(text: str) -> bool:
    """`--flag=True` / `--flag=false` / `--flag=1`: the spellings people arrive with."""
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
