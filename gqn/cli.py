"""The `gqn` command: one console script, a subcommand per job.

    gqn demo                      the main job: built-in data, train, eval, grid, orbit GIF
    gqn data info PATH            what a dataset folder holds
    gqn data verify PATH          check every CRC and decode every JPEG
    gqn data show PATH --scene N --out views.png
    gqn data synth DATASET --out ROOT    render a dataset locally (MuJoCo)
    gqn data download DATASET --dest ROOT    fetch an official dataset
    gqn model --config paper      parameter and FLOP counts of a model config
    gqn train [--data ROOT/DATASET] [--config small] [--resume RUN]
    gqn plot RUN_DIR --out curves.png
    gqn eval CHECKPOINT --data ROOT/DATASET --context 1,3,5
    gqn render CHECKPOINT --data ROOT/DATASET --scene 3 [--orbit] --out FILE
    gqn analyze CHECKPOINT --data ROOT/DATASET --out analysis/
    gqn export CHECKPOINT --name NAME --out DIR    weights as safetensors + config JSON
    gqn view CHECKPOINT [--port 8000]   a web page: drag the camera, the model draws the view
    (CHECKPOINT may also be pretrained:NAME: weights that ship with gqn)

`python -m gqn` is the same command. Errors in the user's input print one line and exit 1.
"""

from __future__ import annotations

import argparse
import sys

from gqn import (
    __version__,
    analyze,
    counts,
    data_commands,
    demo,
    evaluate,
    export,
    plots,
    render,
    train,
    view,
)
from gqn.allocator import keep_freed_memory
from gqn.arguments import HelpFormatter
from gqn.errors import GQNError

# In the order `gqn --help` lists them.
SUBCOMMANDS = (demo, data_commands, train, evaluate, render, view, analyze, export, plots, counts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gqn", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"gqn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()  # before any tensor: pages are faulted in once, not at every pass
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
