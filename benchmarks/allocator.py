"""What glibc's malloc costs the pixel evidence, and what `gqn.allocator.keep_freed_memory` buys.

    python benchmarks/allocator.py            # 3 passes of each job, after one to warm up
    python benchmarks/allocator.py --passes 5

Each job runs in a fresh process twice, once with malloc as it starts and once after
`keep_freed_memory()` (what gqn's console script does first), on random inputs (64 px, K = 3):
  - eval batch: the prior mean of 20 scenes (gqn eval's batch) by a `sharp` model with
    configs/sharp-grown.json (16 depths per pixel, the colours, 16 hidden channels);
  - training step: forward and backward of 8 scenes (gqn train's batch here) of the same model;
  - epipolar eval batch: the same 20 prior means by the shipped weights' model (no pixel evidence).
Printed per pass: wall time, the CPU time spent in the kernel (sys) and in the process (user), the
minor page faults (fresh pages the kernel zeroed), and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCENES = {"eval batch": 20, "training step": 8, "epipolar eval batch": 20}


def job(name: str, passes: int) -> dict:
    from gqn.config import get_config, with_cameras
    from gqn.model import GQN

    config = with_cameras(get_config(str(ROOT / "configs" / "sharp-grown.json")), "shepard_metzler_5_parts")
    if name.startswith("epipolar"):
        config = replace(config, pixel_depths=0)
    torch.manual_seed(0)
    model = GQN(config)
    b = SCENES[name]
    cx, cv = torch.rand(b, 3, 3, 64, 64), torch.randn(b, 3, 7)
    qx, qv = torch.rand(b, 3, 64, 64), torch.randn(b, 7)

    def once():
        if name == "training step":
            model.train()
            model(cx, cv, qx, qv, sigma=2.0)["objective"].backward()
        else:
            model.eval()
            model.sample(cx, cv, qv, use_mean=True)

    once()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(passes):
        once()
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall_ms": 1000 * wall / passes,
        "user_ms": 1000 * (after.ru_utime - before.ru_utime) / passes,
        "sys_ms": 1000 * (after.ru_stime - before.ru_stime) / passes,
        "faults": (after.ru_minflt - before.ru_minflt) / passes,
        "peak_mib": after.ru_maxrss / 1024,
    }


def child(name: str, keep: bool, passes: int) -> None:
    if keep:
        from gqn.allocator import keep_freed_memory

        if not keep_freed_memory():
            raise SystemExit("this C library is not glibc: keep_freed_memory changes nothing here")
    print(json.dumps(job(name, passes)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--child", nargs=2, metavar=("JOB", "KEEP"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child[0], args.child[1] == "keep", args.passes)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.passes} passes each")
    header = (
        f"{'job':<22}{'malloc':<14}{'wall ms':>9}{'sys ms':>8}{'user ms':>9}{'faults':>10}{'peak MiB':>10}"
    )
    print(header)
    for name in SCENES:
        walls = {}
        for mode in ("glibc default", "keep freed"):
            keep = "keep" if mode == "keep freed" else "default"
            command = [sys.executable, __file__, "--passes", str(args.passes), "--child", name, keep]
            out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
            r = json.loads(out.strip().splitlines()[-1])
            walls[mode] = r["wall_ms"]
            print(
                f"{name:<22}{mode:<14}{r['wall_ms']:>9.0f}{r['sys_ms']:>8.0f}{r['user_ms']:>9.0f}"
                f"{r['faults']:>10.0f}{r['peak_mib']:>10.0f}"
            )
        print(f"{'':<22}{'speed-up':<14}{walls['glibc default'] / walls['keep freed']:>9.2f}x")


if __name__ == "__main__":
    main()
