"""What a training run records (rank 0 only): `metrics.jsonl` and TensorBoard events.

    run/metrics.jsonl     one JSON object per logged step: {"step": 10, "split": "train", "loss": ...}
    run/tensorboard/      scalars under train/ and eval/, image grids under images/

On resume, records of steps after the checkpoint (written before the interruption, then lost
with it) are dropped from both, so the record reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from gqn.files import atomic_write


class RunLog:
    def __init__(self, run_dir: str | os.PathLike, resume_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.dir / "metrics.jsonl"
        if resume_step is not None and self.metrics_path.exists():
            self._truncate_after(resume_step)
        self.metrics = open(self.metrics_path, "a")
        self.tb = SummaryWriter(
            str(self.dir / "tensorboard"), purge_step=None if resume_step is None else resume_step + 1
        )

    def _truncate_after(self, step: int) -> None:
        keep = [
            line
            for line in self.metrics_path.read_text().splitlines()
            if line and json.loads(line)["step"] <= step
        ]
        with atomic_write(self.metrics_path, "w") as f:
            f.write("".join(line + "\n" for line in keep))

    def scalars(self, step: int, split: str, values: dict[str, float]) -> None:
        self.metrics.write(json.dumps({"step": step, "split": split, **values}) + "\n")
        self.metrics.flush()
        for key, value in values.items():
            self.tb.add_scalar(f"{split}/{key}", value, step)

    def image(self, step: int, tag: str, image: torch.Tensor) -> None:
        """image (3, H, W) in [0, 1]."""
        self.tb.add_image(f"images/{tag}", image.clamp(0, 1), step)

    def close(self) -> None:
        self.metrics.close()
        self.tb.close()


def read_metrics(run_dir: str | os.PathLike, split: str = "train") -> list[dict]:
    """The records of one split from a run's metrics.jsonl, in order."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [r for r in rows if r["split"] == split]
