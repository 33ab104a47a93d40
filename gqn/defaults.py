"""The built-in data: synthetic scenes of a dataset, rendered once into the cache.

Every verb without `--data` uses it, through `dataset_path` or `open_dataset`; nothing else
knows where it lives. `gqn train` and `gqn demo` use shepard_metzler_5_parts (`DATASET`); `gqn
eval`, `render` and `analyze` use the dataset the model was trained on, for any dataset that `gqn
data synth` renders (shepard_metzler_*, rooms_*), and for any other say what to pass. It is
rendered by `gqn data synth` into a temporary folder and renamed into `$GQN_CACHE_DIR/data/`
(default `~/.cache/gqn/data/`) only when complete, so an interrupted render is never taken for
a finished one.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path

from gqn import synth
from gqn.data import SceneDataset
from gqn.data.index import cache_dir
from gqn.errors import GQNError

DATASET = "shepard_metzler_5_parts"
TRAIN_SCENES = 10_000
TEST_SCENES = 500
SEED = 0


def default_data(
    train_scenes: int = TRAIN_SCENES,
    test_scenes: int = TEST_SCENES,
    seed: int = SEED,
    workers: int = 2,
    dataset: str = DATASET,
) -> Path:
    """The dataset folder of the built-in data of `dataset`, rendered first if it is not in the cache."""
    if dataset not in synth.FAMILIES:
        raise GQNError(f"{dataset} has no built-in data: gqn data synth renders {', '.join(synth.FAMILIES)}")
    root = Path(cache_dir()) / "data" / f"{dataset}-{train_scenes}-{test_scenes}-seed{seed}"
    if not root.is_dir():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=root.name + ".", suffix=".tmp", dir=root.parent))
        try:
            print(
                f"rendering the built-in data once: {train_scenes} + {test_scenes} synthetic {dataset} scenes"
            )
            summary = synth.synthesize(dataset, tmp, train_scenes, test_scenes, seed=seed, workers=workers)
            os.replace(tmp, root)
            print(dataclasses.replace(summary, root=str(root)))  # where it lies, not where it was made
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root / dataset


def dataset_path(data: str | os.PathLike | None, trained_on: str | None = None) -> Path:
    """`data`, or when it is None the built-in data (rendered first if need be) of `trained_on`,
    the dataset a model learned from (default: shepard_metzler_5_parts)."""
    if data is not None:
        return Path(data)
    if trained_on and trained_on not in synth.FAMILIES:
        raise GQNError(
            f"the model was trained on {trained_on}, which has no built-in data: pass --data ROOT/{trained_on}"
        )
    return default_data(dataset=trained_on or DATASET)


def open_dataset(
    data: str | os.PathLike | None,
    split: str = "test",
    image_size: int | None = None,
    trained_on: str | None = None,
) -> SceneDataset:
    """A split of `data`, or of the built-in data of `trained_on` when `data` is None. A model
    shown scenes of another dataset than the one it learned from draws what it learned, not what
    is there: that is said on stderr."""
    dataset = SceneDataset(dataset_path(data, trained_on), split=split, image_size=image_size)
    if trained_on and dataset.dataset_name != trained_on:
        print(
            f"note: the model was trained on {trained_on}; these scenes are {dataset.dataset_name}",
            file=sys.stderr,
        )
    return dataset


def is_builtin(path: str | os.PathLike) -> bool:
    """Whether `path` is (a copy of) the built-in data's dataset folder."""
    return Path(path).name == DATASET and "-seed" in Path(path).parent.name
