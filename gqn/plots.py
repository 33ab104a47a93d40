"""Plots of a run, written as PNG files (matplotlib, no display needed).

gqn plot runs/gqn --out curves.png
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt
from matplotlib.backend_bases import FigureCanvasBase

from gqn.arguments import HelpFormatter
from gqn.errors import GQNError
from gqn.files import atomic_write, writable_folder
from gqn.images import file_format
from gqn.runlog import read_metrics

PANELS = [
    ("loss", "negative ELBO (nats / image)"),
    ("mse", "MSE (posterior reconstruction)"),
    ("kl", "KL (nats / image)"),
]


def figure_format(path: str | os.PathLike) -> str:
    """The matplotlib format `path`'s extension names (png, pdf, svg, jpg, ...), or an error."""
    known = {f".{kind}": kind for kind in FigureCanvasBase.get_supported_filetypes()}
    return file_format(path, known, "a plot")


def stitched(run_dirs: list[str | os.PathLike], split: str) -> list[dict]:
    """The metrics of runs that continue one another (each resumed from the one before): a later
    run's records replace the earlier ones from its first step on."""
    records: list[dict] = []
    for run_dir in run_dirs:
        later = read_metrics(run_dir, split)
        if later:
            records = [r for r in records if r["step"] < later[0]["step"]]
        records += later
    return records


def training_curves(run_dirs: str | os.PathLike | list, out: str | os.PathLike) -> str:
    """Loss, MSE and KL against the step (training records and held-out evaluations), and the
    held-out PSNR of the posterior and the prior mean; several runs are stitched in order."""
    runs = list(run_dirs) if isinstance(run_dirs, (list, tuple)) else [run_dirs]
    train, held_out = stitched(runs, "train"), stitched(runs, "eval")
    panels = len(PANELS) + 1
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), constrained_layout=True)
    for ax, (key, title) in zip(axes, PANELS):
        ax.plot([r["step"] for r in train], [r[key] for r in train], lw=1, label="train")
        if held_out:
            ax.plot(
                [r["step"] for r in held_out], [r[key] for r in held_out], "o-", ms=3, label="held-out batch"
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if key == "mse":
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    ax = axes[-1]
    for key, label in (("psnr", "posterior"), ("prior_mean_psnr", "prior mean")):
        points = [(r["step"], r[key]) for r in held_out if key in r]
        if points:
            ax.plot(*zip(*points), "o-", ms=3, label=label)
    ax.set_title("held-out PSNR (dB)", fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if held_out:
        ax.legend(fontsize=8)
    fig.suptitle(" + ".join(os.path.basename(os.path.abspath(r)) for r in runs), fontsize=10)
    with atomic_write(out) as f:
        fig.savefig(f, format=figure_format(out), dpi=100)
    plt.close(fig)
    return str(out)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="training curves of a run (loss, MSE, KL) as a PNG",
        description="Plot the loss, MSE, KL and held-out PSNR of a run's metrics.jsonl against the\n"
        "step. Several runs, each resumed from the one before, are drawn as one.\n\n"
        "examples:\n  gqn plot runs/gqn --out curves.png\n  gqn plot runs/stage-1 runs/stage-2 --out curves.png",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "run_dirs", metavar="RUN_DIR", nargs="+", help="a run folder of gqn train (several: in order)"
    )
    p.add_argument(
        "--out", required=True, help="the plot to write, in the format of its extension (.png, .pdf, .svg...)"
    )
    p.set_defaults(run=run)


def run(args) -> int:
    figure_format(args.out)  # refused before any work
    for run_dir in args.run_dirs:
        if not os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
            raise GQNError(f"{run_dir}: no metrics.jsonl (is it a run folder of gqn train?)")
    writable_folder(Path(args.out).parent)
    print(f"wrote {training_curves(args.run_dirs, args.out)}")
    return 0
