"""Scenes per second rendered by `gqn data synth` (MuJoCo, headless), end to end.

    python benchmarks/synth.py [--workers 2] [--sm-scenes 2000] [--rooms-scenes 300]

Renders shepard_metzler_5_parts and rooms_ring_camera into a temporary folder with 1 and with
`--workers` processes and prints scenes/s as `gqn data synth` reports it: everything from start
to the last file written (worker start-up, rendering, JPEG encoding, writing).
"""

import argparse
import tempfile

from gqn.synth import synthesize
from gqn.synth.gl import choose_gl


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sm-scenes", type=int, default=2000)
    parser.add_argument("--rooms-scenes", type=int, default=300)
    args = parser.parse_args()
    print(f"OpenGL backend: {choose_gl()}")
    print(f"{'dataset':<26} {'workers':>7} {'scenes':>7} {'seconds':>8} {'scenes/s':>9}")
    for dataset, n in (("shepard_metzler_5_parts", args.sm_scenes), ("rooms_ring_camera", args.rooms_scenes)):
        rates = {}
        for workers in sorted({1, args.workers}):
            with tempfile.TemporaryDirectory() as tmp:
                s = synthesize(dataset, tmp, train_scenes=n, test_scenes=0, workers=workers, progress=False)
            rates[workers] = s.scenes / s.seconds
            print(
                f"{dataset:<26} {workers:>7} {s.scenes:>7} {s.seconds:>8.1f} {rates[workers]:>9.0f}",
                flush=True,
            )
        if len(rates) > 1:
            print(f"{dataset:<26} {args.workers} workers vs 1: {rates[args.workers] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
