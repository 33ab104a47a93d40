"""What the pixel evidence's search costs a view, by depths per pixel and hidden channels.

    python benchmarks/search_cost.py              # 8 views of each, after 2 to warm up
    python benchmarks/search_cost.py --views 20
    python benchmarks/search_cost.py --config configs/rooms-128.json   # the 128 px rooms model

The shipped Shepard-Metzler weights' architecture (configs/sharp-grown.json, or --config's) with
each (pixel_depths, search_hidden), untrained, draws one prior-mean view (64 px, or the config's
image_size) from 3 context views
(random inputs), malloc set as gqn's console script sets it; "none" is the same model without
pixel evidence. The search's convolutions along the rays cost the hidden channels squared times
the depths, for every pixel: that is what `gqn view`'s 100 ms a view must hold.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from gqn.allocator import keep_freed_memory
from gqn.config import get_config, with_cameras
from gqn.model import GQN

ROOT = Path(__file__).resolve().parents[1]
SIZES = [
    (0, 32),
    (32, 32),
    (16, 32),
    (32, 16),
    (24, 16),
    (16, 16),
    (16, 8),
    (8, 16),
    (8, 8),
]  # (depths, hidden)


def main():
    keep_freed_memory()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--views", type=int, default=8, help="views timed per size")
    p.add_argument("--config", default=str(ROOT / "configs" / "sharp-grown.json"), help="the model")
    p.add_argument(
        "--dataset", default="shepard_metzler_5_parts", help="whose cameras, where the config sets none"
    )
    args = p.parse_args()
    base = get_config(args.config)
    size = base.image_size
    base = with_cameras(base, args.dataset)
    torch.manual_seed(0)
    cx, cv, qv = torch.rand(1, 3, 3, size, size), torch.randn(1, 3, 7), torch.randn(1, 7)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {size} px, {args.views} views each")
    print(f"{'depths':>7}{'hidden':>8}{'ms a view':>11}{'x none':>8}")
    none = None
    for depths, hidden in SIZES:
        model = GQN(replace(base, pixel_depths=depths, search_hidden=hidden)).eval()
        for _ in range(2):
            model.sample(cx, cv, qv, use_mean=True)
        start = time.perf_counter()
        for _ in range(args.views):
            model.sample(cx, cv, qv, use_mean=True)
        ms = 1000 * (time.perf_counter() - start) / args.views
        none = none or ms
        label = "none" if depths == 0 else str(depths)
        print(f"{label:>7}{'' if depths == 0 else hidden:>8}{ms:>11.1f}{ms / none:>8.2f}")


if __name__ == "__main__":
    main()
