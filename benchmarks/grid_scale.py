"""What the generation grid costs at 128 px: grid_scale 4 (a 32 x 32 grid) against 8 (16 x 16).

    python benchmarks/grid_scale.py              # 4 training steps and 4 views of each, after 1 to warm up
    python benchmarks/grid_scale.py --steps 8

The rooms_free_camera_with_object_rotations frames are 128 px. The paper's grid is 1/4 of the
frame, so at 128 px the cores and z run on 32 x 32, four times the cells of 64 px. grid_scale 8
keeps them on 16 x 16, and the pixel evidence (configs/rooms-128.json) reads the context views at
the full 128 px. Each model here is the `epipolar` preset at 128 px with the dataset's cameras,
untrained; a training step is forward, backward and Adam on a batch of 8 scenes with 3 context
views (random inputs), a view one prior-mean prediction from 3 context views; malloc set as gqn's
console script sets it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from gqn.allocator import keep_freed_memory
from gqn.config import get_config, with_cameras
from gqn.counts import count_parameters
from gqn.model import GQN

ROOT = Path(__file__).resolve().parents[1]
DATASET, SIZE, BATCH, K = "rooms_free_camera_with_object_rotations", 128, 8, 3


def models():
    """(label, config) of each model timed."""
    coarse = get_config(str(ROOT / "configs" / "rooms-128-coarse.json"))
    return [
        ("epipolar, grid_scale 4", with_cameras(replace(get_config("epipolar"), image_size=SIZE), DATASET)),
        ("rooms-128-coarse.json (8)", coarse),
        ("rooms-128.json (8, pixels)", get_config(str(ROOT / "configs" / "rooms-128.json"))),
    ]


def train_step(model: GQN, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, ...]) -> None:
    """Forward, backward and Adam on one batch (context x, v, query x, v)."""
    optimizer.zero_grad(set_to_none=True)
    model(*batch, sigma=0.7)["objective"].backward()
    optimizer.step()


def timed(fn, repeats: int) -> float:
    """Milliseconds per call of fn, after one call to warm up."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1000 * (time.perf_counter() - start) / repeats


def main():
    keep_freed_memory()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4, help="training steps and views timed per model")
    args = p.parse_args()
    torch.manual_seed(0)
    cx, cv = torch.rand(BATCH, K, 3, SIZE, SIZE), torch.randn(BATCH, K, 7)
    qx, qv = torch.rand(BATCH, 3, SIZE, SIZE), torch.randn(BATCH, 7)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {SIZE} px, batch {BATCH}, K = {K}")
    print(f"{'model':<28}{'grid':>7}{'params':>9}{'ms a step':>11}{'ms a view':>11}{'step x':>8}")
    first = None
    for label, cfg in models():
        model = GQN(cfg)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        model.train()
        ms_step = timed(partial(train_step, model, optimizer, (cx, cv, qx, qv)), args.steps)
        model.eval()
        ms_view = timed(partial(model.sample, cx[:1], cv[:1], qv[:1], use_mean=True), args.steps)
        first = first or ms_step
        grid = f"{SIZE // cfg.grid_scale}x{SIZE // cfg.grid_scale}"
        print(
            f"{label:<28}{grid:>7}{count_parameters(model)['total'] / 1e6:>8.2f}M{ms_step:>11.0f}{ms_view:>11.1f}"
            f"{ms_step / first:>8.2f}"
        )


if __name__ == "__main__":
    main()
