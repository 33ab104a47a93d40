"""Plots of a run, written as PNG files (matplotlib, no display needed).

gqn plot runs/gqn --out curves.png
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt

from gqn.files import atomic_write
from gqn.runlog import read_metrics

PANELS = [
    ("loss", "negative ELBO (nats / image)"),
    ("mse", "MSE (posterior reconstruction)"),
    ("kl", "KL (nats / image)"),
]


def training_curves(run_dir: str | os.PathLike, out: str | os.PathLike) -> str:
    """Loss, MSE and KL against the step, training records and held-out evaluations."""
    train, held_out = read_metrics(run_dir, "train"), read_metrics(run_dir, "eval")
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.4), constrained_layout=True)
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
    fig.suptitle(os.path.basename(os.path.abspath(run_dir)), fontsize=10)
    with atomic_write(out) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return str(out)
