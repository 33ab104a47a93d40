"""The built-in default data: synthetic shepard_metzler_5_parts, rendered once into the cache.

Every verb without `--data` (`gqn train`, `eval`, `render`, `analyze`, `demo`) uses it, through
`dataset_path` or `open_dataset`; nothing else knows where it lives. It is rendered by `gqn data synth` into a
temporary folder and renamed into `$GQN_CACHE_DIR/data/` (default `~/.cache/gqn/data/`) only when
complete, so an interrupted render is never taken for a finished one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from gqn.data import SceneDataset
from gqn.data.index import cache_dir

DATASET = "shepard_metzler_5_parts"
TRAIN_SCENES = 10_000
TEST_SCENES = 500
SEED = 0


def default_data(
    train_scenes: int = TRAIN_SCENES, test_scenes: int = TEST_SCENES, seed: int = SEED, workers: int = 2
) -> Path:
    """The dataset folder of the built-in data, rendered first if it is not in the cache."""
    from gqn.synth import synthesize  # deferred: MuJoCo and its GL set-up, only when rendering

    root = Path(cache_dir()) / "data" / f"{DATASET}-{train_scenes}-{test_scenes}-seed{seed}"
    if not root.is_dir():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=root.name + ".", suffix=".tmp", dir=root.parent))
        try:
            print(
                f"rendering the built-in data once: {train_scenes} + {test_scenes} synthetic {DATASET} scenes"
            )
            print(synthesize(DATASET, tmp, train_scenes, test_scenes, seed=seed, workers=workers))
            os.replace(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root / DATASET


def dataset_path(data: str | os.PathLike | None) -> Path:
    """`data`, or the built-in data's folder (rendered first if need be) when it is None."""
    return default_data() if data is None else Path(data)


def open_dataset(
    data: str | os.PathLike | None, split: str = "test", image_size: int | None = None
) -> SceneDataset:
    """A split of `data`, or of the built-in data when `data` is None."""
    return SceneDataset(dataset_path(data), split=split, image_size=image_size)


def is_builtin(path: str | os.PathLike) -> bool:
    """Whether `path` is (a copy of) the built-in data's dataset folder."""
    return Path(path).name == DATASET and "-seed" in Path(path).parent.name
