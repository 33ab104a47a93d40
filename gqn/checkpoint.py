"""Training checkpoints: one file holds everything needed to continue exactly, written atomically.

A checkpoint is a `torch.save`d dict of tensors and plain values only:

    format, version        checkpoint format number and the gqn version that wrote it
    step                   optimizer steps taken
    model_config           the GQNConfig fields: enough to rebuild the model
    train_config           the TrainConfig fields the run was started with
    model, optimizer       state dicts
    rng                    torch CPU (and CUDA) generator states
    data                   the sampler's position: epoch and batch within it
    init_origin            (runs begun with --init pretrained weights) their name, step and
                           training commands, as they were when the run began

It is written to a temporary file in the same folder, flushed to disk and renamed, so a crash
mid-save leaves the previous checkpoint whole. `checkpoints/last.pt` is a hard link to the
newest one. Loading uses `torch.load(weights_only=True)`: no code from the file ever runs.

    run/checkpoints/step-00001000.pt, step-00002000.pt, ..., last.pt
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from gqn import __version__
from gqn.errors import GQNError
from gqn.files import atomic_write

FORMAT = 1
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(state: dict, run_dir: str | os.PathLike, keep: int = 3) -> Path:
    """Write `state` as step-NNNNNNNN.pt, point last.pt at it, keep the newest `keep` step files."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{state['step']:08d}.pt"
    with atomic_write(path) as f:
        torch.save({"format": FORMAT, "version": __version__, **state}, f)
    link = folder / f"last.pt.{os.getpid()}.tmp"
    if link.exists():
        link.unlink()
    os.link(path, link)
    os.replace(link, folder / "last.pt")  # atomic: last.pt is always a whole checkpoint
    for old in list_steps(run_dir)[:-keep] if keep > 0 else []:
        (folder / f"step-{old:08d}.pt").unlink()
    return path


def list_steps(run_dir: str | os.PathLike) -> list[int]:
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for n in os.listdir(folder) if (m := _STEP_FILE.match(n)))


def resolve(resume: str, run_dir: str | os.PathLike | None) -> Path:
    """The checkpoint `--resume` names: a file, a run folder (its last.pt) or a step number."""
    if resume.isdigit():
        if run_dir is None:
            raise GQNError(f"--resume {resume}: a step number needs --run-dir")
        path = checkpoint_dir(run_dir) / f"step-{int(resume):08d}.pt"
        if not path.exists():
            steps = ", ".join(map(str, list_steps(run_dir))) or "none"
            raise GQNError(f"--resume {resume}: no checkpoint of step {resume} in {run_dir} (steps: {steps})")
        return path
    p = Path(resume)
    if p.is_dir():
        for candidate in (checkpoint_dir(p) / "last.pt", p / "last.pt"):
            if candidate.exists():
                return candidate
        raise GQNError(f"--resume {resume}: no checkpoints/last.pt in this folder")
    if not p.exists():
        raise GQNError(f"--resume {resume}: no such file or folder")
    return p


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint without running any code from it; errors name the file and the problem."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise GQNError(f"{path}: no such checkpoint") from None
    except Exception as e:  # a truncated zip, a pickle with code in it, not a torch file at all
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GQNError(f"{path}: not a readable gqn checkpoint ({first[:200]})") from None
    if not isinstance(state, dict) or "format" not in state or "model_config" not in state:
        raise GQNError(f"{path}: not a gqn checkpoint (no format or model_config)")
    if state["format"] != FORMAT:
        raise GQNError(
            f"{path}: checkpoint format {state['format']}, this gqn {__version__} reads format {FORMAT}"
        )
    if _minor(state.get("version", "")) != _minor(__version__):
        raise GQNError(
            f"{path}: written by gqn {state.get('version')}, this is gqn {__version__}; "
            f"resume with the version that wrote it"
        )
    return state


def check_same_model(path: str | os.PathLike, saved: dict, wanted: dict) -> None:
    """A checkpoint can only continue the model config it was trained with (a field newer than the
    checkpoint counts as its default)."""
    from gqn.model import GQNConfig

    saved = GQNConfig.from_dict(saved, where=f"{path} (model_config)").to_dict()
    if saved != wanted:
        keys = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        diff = ", ".join(f"{k}: {saved.get(k)!r} in checkpoint, {wanted.get(k)!r} asked" for k in keys)
        raise GQNError(f"{path}: trained with another model config ({diff})")


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])
