"""What reading the pixel evidence costs, and what its layout choices buy (gqn/pixels.py).

    python benchmarks/evidence_cost.py [--size 128] [--depths 16] [--repeats 10]

On random context views (K = 3) and cameras, with the search of the shipped models (the colours
alone, 16 depths, 16 channels), times in one run:
  - the search's convolutions along the rays at render size (one frame, every pixel) and at a
    training batch's (8 frames, a quarter of 64 x 64 pixels; forward and backward), in torch's
    default memory format against channels-last, which `PixelEvidence.along_ray` uses;
  - where the rays' points land in the views: `gather` of the formed points (D N points rotated
    one by one) against `gather_along_rays` (each ray rotated once, its points affine in depth),
    each with the cosine between the views' rays and the query's as the evidence needs it;
  - the whole `PixelEvidence` of one frame.
Medians over --repeats, after warm-up, with malloc set as gqn's console script sets it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from gqn.allocator import keep_freed_memory
from gqn.cameras import axes, rays, sphere_cameras, viewpoints
from gqn.epipolar import gather, gather_along_rays
from gqn.pixels import PixelEvidence, ray_facing

FOV, NEAR, FAR = 45.0, 0.1, 10.0


def median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times))


def cameras(n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return viewpoints(
        torch.from_numpy(sphere_cameras(rng.uniform(0, 2 * np.pi, n), rng.uniform(-1, 1, n), 3.3))
    )


def formed_points(features, context_v, origin, direction, depth):
    """The points formed and projected one by one, the facing from normalised vectors."""
    points = (origin[:, None, None] + depth[:, None, None] * direction[:, None]).flatten(1, 2)
    values, seen = gather(features, context_v, points, FOV)
    toward_query = F.normalize(points - origin[:, None], dim=-1)
    toward_view = F.normalize(points[:, None] - axes(context_v)[0][:, :, None], dim=-1)
    return values, seen, (toward_view * toward_query[:, None]).sum(-1)


def along_rays(features, context_v, origin, direction, depth):
    """As PixelEvidence reads them: each ray rotated once, the facing from the distances."""
    values, seen, distance = gather_along_rays(features, context_v, origin, direction, depth, FOV)
    return values, seen, ray_facing(context_v, origin, direction, depth, distance)


def main() -> None:
    keep_freed_memory()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=128, help="the frame's side in pixels (default 128)")
    p.add_argument("--depths", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    torch.manual_seed(0)
    evidence = PixelEvidence(3, FOV, NEAR, FAR, args.depths, hidden=16)
    k, n, d = 3, args.size**2, args.depths
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; K = {k}, {d} depths, {args.size} px"
    )

    score = evidence.score.eval()
    frame = torch.randn(1, 9, d, n)
    batch = torch.randn(8, 9, d, 64 * 64 // 4)
    with torch.no_grad():
        default = median_ms(lambda: score(frame), args.repeats)
        last = median_ms(lambda: score(frame.contiguous(memory_format=torch.channels_last)), args.repeats)
    score.train()

    def step(x):
        score(x.requires_grad_()).sum().backward()

    train_default = median_ms(lambda: step(batch.clone()), args.repeats)
    train_last = median_ms(lambda: step(batch.contiguous(memory_format=torch.channels_last)), args.repeats)
    print(
        f"search convolutions, one frame (forward):      default {default:7.1f} ms, channels-last {last:7.1f} ms, x{default / last:.2f}"
    )
    print(
        f"search convolutions, a training batch (f + b): default {train_default:7.1f} ms, channels-last {train_last:7.1f} ms, x{train_default / train_last:.2f}"
    )

    context_x, context_v, query_v = (
        torch.rand(1, k, 3, args.size, args.size),
        cameras(k, 1)[None],
        cameras(1, 2),
    )
    origin, direction = rays(query_v, args.size, FOV)
    direction = direction.flatten(1, 2)
    depth = torch.linspace(NEAR, FAR, d)
    inputs = (context_x, context_v, origin, direction, depth)
    with torch.no_grad():
        formed = median_ms(lambda: formed_points(*inputs), args.repeats)
        rayed = median_ms(lambda: along_rays(*inputs), args.repeats)
        a, b = formed_points(*inputs), along_rays(*inputs)
        whole = median_ms(lambda: evidence(context_x, context_v, query_v), args.repeats)
    same = a[1] == b[1]  # a point on a frame's very edge may fall either side of it
    facing = float((a[2] - b[2]).abs().max())
    print(
        f"where the points land, and facing:             formed points {formed:7.1f} ms, along rays {rayed:7.1f} ms, "
        f"x{formed / rayed:.2f} (seen alike at {float(same.float().mean()):.5f} of the points, facing within {facing:.1e})"
    )
    print(f"PixelEvidence of one frame, as shipped:        {whole:.1f} ms")


if __name__ == "__main__":
    main()
