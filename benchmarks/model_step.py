"""Seconds per GQN training step (forward, backward, Adam) and the FLOP rate it reaches.

    python benchmarks/model_step.py [--presets tiny,small,paper] [--batch-size 36] [--context 5]

For each preset, at 64 px with 5 context views: the step time in fp32 and under bf16 autocast
(channels_last memory format), scenes/s, and GFLOP/s counted by torch's FLOP counter, next to
this machine's measured fp32 and bf16 matmul throughput (2048x2048 matrices). The paper preset
at batch 36 takes minutes per step on 2 CPU cores; --repeats sets how many steps are timed.
"""

import argparse
import time

import torch

from gqn.counts import count_flops
from gqn.model import GQN, PRESETS
from gqn.runtime import autocast


def matmul_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def step_seconds(name: str, precision: str, batch: int, context: int, repeats: int) -> float:
    torch.manual_seed(0)
    model = GQN(PRESETS[name]).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    x, v = torch.rand(batch, context, 3, 64, 64), torch.rand(batch, context, 7)
    qx, qv = torch.rand(batch, 3, 64, 64), torch.rand(batch, 7)

    def step():
        with autocast(precision):
            out = model(x, v, qx, qv, sigma=0.7)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()

    step()  # warm-up: allocations, oneDNN kernel selection
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", default="tiny,small,paper")
    parser.add_argument("--batch-size", type=int, default=36)
    parser.add_argument("--context", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps (1 for paper)")
    args = parser.parse_args()
    peak = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    print(
        f"{torch.get_num_threads()} threads; matmul: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s"
    )
    print(f"batch {args.batch_size}, 64x64, {args.context} context views, channels_last")
    print(
        f"{'preset':>7} {'params':>8} {'GFLOP/ex':>9} {'prec':>5} {'s/step':>8} {'scenes/s':>9} {'GFLOP/s':>8} {'of matmul':>9}"
    )
    for name in args.presets.split(","):
        model = GQN(PRESETS[name])
        params = sum(p.numel() for p in model.parameters())
        flops = count_flops(model, context=args.context)["train"]
        repeats = 1 if name == "paper" else args.repeats
        times = {}
        for precision in ("fp32", "bf16"):
            t = times[precision] = step_seconds(name, precision, args.batch_size, args.context, repeats)
            rate = flops * args.batch_size / t / 1e9
            print(
                f"{name:>7} {params / 1e6:>7.2f}M {flops / 1e9:>9.2f} {precision:>5} {t:>8.3f} "
                f"{args.batch_size / t:>9.1f} {rate:>8.0f} {rate / peak[precision]:>8.0%}",
                flush=True,
            )
        print(f"{name:>7} bf16 vs fp32 step: {times['fp32'] / times['bf16']:.2f}x faster")


if __name__ == "__main__":
    main()
