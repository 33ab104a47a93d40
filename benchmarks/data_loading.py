"""Scenes per second through a DataLoader, reading GQN TFRecords in place.

    python benchmarks/data_loading.py [--scenes 7200] [--batch-size 36]

Writes realistic records (the real reference scene's 15 JPEGs, 64 px, shuffled per scene, with
random cameras) into a temporary folder in the official layout, then times full epochs through
`gqn.data.make_loader` with 0 and 2 workers, decoding all 15 views of each scene or only the
6 (5 context + 1 query) that a batch uses. Worker start-up is excluded (workers are persistent;
one warm-up epoch runs first).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gqn.data import Scene, SceneDataset, make_loader, read_scenes, write_scenes

REFERENCE = (
    Path(__file__).resolve().parents[1] / "examples/reference/shepard_metzler_5_parts/test/1-of-1.tfrecord"
)


def write_dataset(root: Path, scenes: int, files: int = 10) -> Path:
    (ref,) = list(read_scenes(REFERENCE, decode=False))
    jpegs = [bytes(j) for j in ref.jpegs]
    rng = np.random.default_rng(0)
    split = root / "shepard_metzler_5_parts" / "train"
    split.mkdir(parents=True)
    per_file = scenes // files
    for i in range(files):
        batch = [
            Scene([jpegs[j] for j in rng.permutation(15)], rng.uniform(-3, 3, (15, 5)).astype(np.float32))
            for _ in range(per_file)
        ]
        write_scenes(split / f"{i + 1:02d}-of-{files:02d}.tfrecord", batch)
    return root / "shepard_metzler_5_parts"


def scenes_per_second(ds, batch_size: int, workers: int, context: int | None, epochs: int) -> float:
    loader = make_loader(ds, batch_size, context_size=context, workers=workers, seed=0)
    for _ in loader:  # warm-up epoch: starts the workers and fills the page cache
        pass
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += batch["frames"].shape[0]
    return n / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenes", type=int, default=7200)
    parser.add_argument("--batch-size", type=int, default=36)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("GQN_CACHE_DIR", os.path.join(tmp, "cache"))
        path = write_dataset(Path(tmp), args.scenes)
        ds = SceneDataset(path)
        size = sum(f.stat().st_size for f in (path / "train").iterdir())
        print(
            f"{len(ds)} scenes of 15 views at 64x64 in 10 files ({size / 1e6:.1f} MB), batch {args.batch_size}"
        )
        print(f"{'workers':>8} {'views decoded':>14} {'scenes/s':>10}")
        results = {}
        for workers in (0, 2):
            for label, context in (("all 15", 14), ("sampled 6", 5)):
                rate = scenes_per_second(ds, args.batch_size, workers, context, args.epochs)
                results[workers, label] = rate
                print(f"{workers:>8} {label:>14} {rate:>10,.0f}")
                sys.stdout.flush()
        print(
            f"sampled vs all views, 2 workers: {results[2, 'sampled 6'] / results[2, 'all 15']:.2f}x; "
            f"2 workers vs 0, sampled: {results[2, 'sampled 6'] / results[0, 'sampled 6']:.2f}x"
        )


if __name__ == "__main__":
    main()
