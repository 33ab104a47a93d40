"""What a training run records (rank 0 only): `metrics.jsonl` and TensorBoard events.

    run/metrics.jsonl     one JSON object per logged step: {"step": 10, "split": "train", "loss": ...}
    run/tensorboard/      scalars under train/ and eval/, image grids under images/

On resume, records of steps after the checkpoint (written before the interruption, then lost
with it) are dropped from both, so the record reads as one uninterrupted run. A record is written
whole or, when the disk fills or the run is killed in the middle of it, leaves a torn last line:
readers pass over that line and the next run cuts it off, so a full disk never blocks a resume.
A failed write is a one-line error naming the file (`gqn.files.write_error`).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import torch

from gqn.errors import GQNError
from gqn.files import atomic_write, writing


class RunLog:
    def __init__(self, run_dir: str | os.PathLike, resume_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(run_dir)
        self.metrics_path = self.dir / "metrics.jsonl"
        with writing(self.dir):
            self.dir.mkdir(parents=True, exist_ok=True)
        if self.metrics_path.exists():
            self._rewrite(resume_step)
        with writing(self.metrics_path):
            self.metrics = open(self.metrics_path, "ab", buffering=0)  # each record goes to disk whole
        self.tb_dir = self.dir / "tensorboard"
        self._excepthook, threading.excepthook = threading.excepthook, self._writer_thread_failed
        with writing(self.tb_dir):
            self.tb = SummaryWriter(
                str(self.tb_dir), purge_step=None if resume_step is None else resume_step + 1
            )

    def _rewrite(self, after: int | None) -> None:
        """Drop the records of steps after `after` (if given) and a torn last line."""
        text = "".join(
            line + "\n" for line, r in _parse(self.metrics_path) if after is None or r["step"] <= after
        )
        if text.encode() != self.metrics_path.read_bytes():
            with atomic_write(self.metrics_path, "w") as f:
                f.write(text)

    def scalars(self, step: int, split: str, values: dict[str, float]) -> None:
        line = memoryview((json.dumps({"step": step, "split": split, **values}) + "\n").encode())
        with writing(self.metrics_path):
            while line:  # a raw file may take part of it
                line = line[self.metrics.write(line) :]
        with writing(self.tb_dir):
            for key, value in values.items():
                self.tb.add_scalar(f"{split}/{key}", value, step)

    def image(self, step: int, tag: str, image: torch.Tensor) -> None:
        """image (3, H, W) in [0, 1]."""
        with writing(self.tb_dir):
            self.tb.add_image(f"images/{tag}", image.clamp(0, 1), step)

    def close(self, quietly: bool = False) -> None:
        """Close both; `quietly`: a write that fails now (the disk is still full) is not told,
        where an error that stopped the run is on its way out and is the one to tell."""
        self.metrics.close()
        try:
            with writing(self.tb_dir):
                self.tb.close()
        except GQNError:
            if not quietly:
                raise
        finally:
            threading.excepthook = self._excepthook

    def _writer_thread_failed(self, args) -> None:
        """TensorBoard's writer thread raises a failed write (a full disk) in the thread, where it
        would print a traceback, and again to us at the next write or close, where `writing` tells
        it in one line: the first is left out."""
        if not (
            isinstance(args.exc_value, OSError) and type(args.thread).__module__.startswith("tensorboard")
        ):
            self._excepthook(args)


def _parse(path: Path) -> list[tuple[str, dict]]:
    """(line, record) of each line of a metrics.jsonl, less a torn last line (a write cut short);
    a damaged line before the last is an error naming the file and line."""
    lines = path.read_text(errors="replace").split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            records.append((line, json.loads(line)))
        except ValueError:
            if number == len(lines):  # the last line, with no newline after it: torn
                break
            raise GQNError(f"{path}: line {number} is not a JSON record: {line[:60]!r}") from None
    return records


def read_metrics(run_dir: str | os.PathLike, split: str = "train") -> list[dict]:
    """The records of one split from a run's metrics.jsonl, in order."""
    return [r for _, r in _parse(Path(run_dir) / "metrics.jsonl") if r["split"] == split]
