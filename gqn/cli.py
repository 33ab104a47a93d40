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
    (CHECKPOINT may also be pretrained:NAME: weights that ship with gqn)

`python -m gqn` is the same command. Errors in the user's input print one line and exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys

from gqn import __version__
from gqn.errors import GQNError


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the examples in each description as written and shows defaults."""


def build_parser() -> argparse.ArgumentParser:
    from gqn import analyze, demo, evaluate, pretrained, render, train
    from gqn.data import commands as data_commands

    parser = argparse.ArgumentParser(
        prog="gqn",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gqn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo.add_parser(sub)
    data_commands.add_parser(sub)
    train.add_parser(sub)
    evaluate.add_parser(sub)
    render.add_parser(sub)
    analyze.add_parser(sub)
    pretrained.add_parser(sub)

    p = sub.add_parser(
        "plot",
        help="training curves of a run (loss, MSE, KL) as a PNG",
        description="Plot the loss, MSE, KL and held-out PSNR of a run's metrics.jsonl against the\n"
        "step. Several runs, each resumed from the one before, are drawn as one.\n\n"
        "examples:\n  gqn plot runs/gqn --out curves.png\n  gqn plot runs/stage-1 runs/stage-2 --out curves.png",
        formatter_class=HelpFormatter,
    )
    p.add_argument("run_dirs", metavar="RUN_DIR", nargs="+")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.set_defaults(run=run_plot)

    p = sub.add_parser(
        "model",
        help="a model config's fields, parameter and FLOP counts",
        description="Print a model config (a preset or a JSON file), its parameters per network and\n"
        "the FLOPs of one training example (a multiply-add counts 2).\n\n"
        "examples:\n  gqn model --config paper\n  gqn model --config small --context 3",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--config", default="small", help="preset (paper, small, tiny) or a .json file")
    p.add_argument("--context", type=int, default=5, help="context views for the FLOP count")
    p.add_argument("--image-size", type=int, default=None, help="frame size (default: the config's)")
    p.set_defaults(run=run_model)
    return parser


def run_plot(args) -> int:
    from gqn.plots import training_curves

    for run_dir in args.run_dirs:
        if not os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
            raise GQNError(f"{run_dir}: no metrics.jsonl (is it a run folder of gqn train?)")
    print(f"wrote {training_curves(args.run_dirs, args.out)}")
    return 0


def run_model(args) -> int:
    from gqn.model import GQN, count_flops, count_parameters, get_config

    config = get_config(args.config)
    model = GQN(config)
    print(f"config {args.config}:")
    for key, value in config.to_dict().items():
        print(f"  {key:<15} {value}")
    print("parameters:")
    for name, n in count_parameters(model).items():
        print(f"  {name:<15} {n:>12,}")
    size = args.image_size or config.image_size
    flops = count_flops(model, context=args.context, image_size=size)
    print(f"FLOPs per example ({size}x{size}, {args.context} context views):")
    print(f"  {'forward':<15} {flops['forward'] / 1e9:>10.2f} G")
    print(f"  {'train step':<15} {flops['train'] / 1e9:>10.2f} G  (forward + backward)")
    return 0


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
