"""The built-in default data: synthetic shepard_metzler_5_parts, rendered once into the cache.

`gqn train` without `--data` (and `make demo`) use it. It is rendered by `gqn data synth` into a
temporary folder and renamed into `$GQN_CACHE_DIR/data/` (default `~/.cache/gqn/data/`) only when
complete, so an interrupted render is never taken for a finished one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from gqn.data.index import cache_dir

DATASET = "shepard_metzler_5_parts"
TRAIN_SCENES = 10_000
TEST_SCENES = 500
SEED = 0


def default_data(
    train_scenes: int = TRAIN_SCENES, test_scenes: int = TEST_SCENES, seed: int = SEED, workers: int = 2
) -> Path:
    """The dataset folder of the built-in data, rendered first if it is not in the cache."""
    from gqn.synth import synthesize

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
