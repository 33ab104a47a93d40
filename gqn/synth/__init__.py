"""Synthetic GQN datasets rendered locally with MuJoCo, in DeepMind's exact TFRecord format.

    gqn data synth shepard_metzler_5_parts --out data --train-scenes 2000 --test-scenes 200

    from gqn.synth import synthesize
    summary = synthesize("shepard_metzler_5_parts", "data", train_scenes=2000, test_scenes=200)

Scene i of a split is drawn from its own random stream, seeded by (seed, split, i), and worker
processes render contiguous runs of scenes that the parent writes in order: the same seed and
counts give byte-identical files whatever the number of workers.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gqn.data.scenes import EncodedScene, encode_jpeg, write_scenes
from gqn.data.table import file_name, get_dataset
from gqn.errors import GQNError

# Which family renders which dataset, and how: (module, class, keyword arguments).
FAMILIES = {
    "shepard_metzler_5_parts": ("shepard_metzler", "ShepardMetzler", {"parts": 5}),
    "shepard_metzler_7_parts": ("shepard_metzler", "ShepardMetzler", {"parts": 7}),
    "rooms_ring_camera": ("rooms", "Rooms", {"camera": "ring", "rotate_objects": False}),
    "rooms_free_camera_no_object_rotations": ("rooms", "Rooms", {"camera": "free", "rotate_objects": False}),
    "rooms_free_camera_with_object_rotations": ("rooms", "Rooms", {"camera": "free", "rotate_objects": True}),
}
SPLIT_IDS = {"train": 0, "test": 1}
CHUNK = 25  # scenes a worker renders per task


@dataclass
class Summary:
    dataset: str
    root: str
    scenes: int
    files: int
    bytes: int
    seconds: float

    def __str__(self) -> str:
        rate = self.scenes / self.seconds if self.seconds else float("inf")
        return (
            f"{self.dataset}: {self.scenes} scenes in {self.files} files, {self.bytes / 1e6:.1f} MB "
            f"under {self.root}, {self.seconds:.1f} s ({rate:.0f} scenes/s)"
        )


def make_family(dataset: str):
    """The renderer of a dataset (in this process; OpenGL must be chosen first)."""
    info = get_dataset(dataset)
    if dataset not in FAMILIES:
        raise GQNError(
            f"{dataset} cannot be synthesized: jaco and mazes are out of scope; "
            f"synthesizable: {', '.join(FAMILIES)}"
        )
    module, name, kwargs = FAMILIES[dataset]
    import importlib

    cls = getattr(importlib.import_module(f"gqn.synth.{module}"), name)
    return cls(views=info.views, size=info.image_size, **kwargs)


_family = None  # the renderer of this worker process


def _init_worker(dataset: str, gl: str) -> None:
    global _family
    os.environ["MUJOCO_GL"] = os.environ["PYOPENGL_PLATFORM"] = gl
    _family = make_family(dataset)


def _render(task: tuple[int, str, int, int]) -> list[EncodedScene]:
    """Render scenes [start, stop) of a split, JPEG-encoded."""
    seed, split, start, stop = task
    scenes = []
    for i in range(start, stop):
        scene = _family.scene(np.random.default_rng([seed, SPLIT_IDS[split], i]))
        scenes.append(EncodedScene([encode_jpeg(f) for f in scene.frames], scene.cameras))
    return scenes


def synthesize(
    dataset: str,
    root: str | os.PathLike,
    train_scenes: int = 2000,
    test_scenes: int = 200,
    seed: int = 0,
    workers: int = 2,
    scenes_per_file: int = 1000,
    progress: bool = True,
) -> Summary:
    """Render `dataset` into `root/dataset/{train,test}/i-of-n.tfrecord`; returns a summary.

    Each file is written atomically; files already complete are rewritten (the output depends
    only on the arguments, so a re-run reproduces them).
    """
    from gqn.synth.gl import choose_gl

    info = get_dataset(dataset)
    if dataset not in FAMILIES:
        make_family(dataset)  # raises the out-of-scope error
    if min(train_scenes, test_scenes) < 0 or scenes_per_file < 1 or workers < 1:
        raise GQNError("scene counts must be >= 0, --scenes-per-file and --workers >= 1")
    gl = choose_gl()
    start_time = time.perf_counter()
    total_bytes = files = 0
    counts = {"train": train_scenes, "test": test_scenes}
    ctx = multiprocessing.get_context("spawn")
    with (
        ctx.Pool(workers, _init_worker, (dataset, gl)) as pool,
        tqdm(
            total=train_scenes + test_scenes,
            unit="scene",
            desc=f"synth {dataset}",
            disable=not progress or None,
            file=sys.stderr,
        ) as bar,
    ):
        for split, n in counts.items():
            if n == 0:
                continue
            folder = Path(root) / info.name / split
            folder.mkdir(parents=True, exist_ok=True)
            n_files = math.ceil(n / scenes_per_file)
            tasks = [(seed, split, s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)]
            rendered = pool.imap(_render, tasks)  # in order, CHUNK scenes at a time
            pending: list[EncodedScene] = []
            for f in range(n_files):
                want = min(scenes_per_file, n - f * scenes_per_file)
                while len(pending) < want:
                    chunk = next(rendered)
                    pending += chunk
                    bar.update(len(chunk))
                path = folder / file_name(f + 1, n_files)
                write_scenes(path, pending[:want])
                pending = pending[want:]
                total_bytes += path.stat().st_size
                files += 1
    return Summary(
        info.name, str(root), train_scenes + test_scenes, files, total_bytes, time.perf_counter() - start_time
    )
