"""Where prior samples differ, with one context view (gqn/spread.py), for checkpoints side by side.

    python benchmarks/sample_spread.py --scenes 20 --samples 8 pretrained:shepard_metzler_5_parts

For each CHECKPOINT: the mean spread of its prior samples over the query pixels that show a part
the one context view saw, over those that show a part it did not, and their ratio. The issue on
sharp views asks for a ratio of at least 2 (the latent carries what the context did not see).
"""

from __future__ import annotations

import argparse

from gqn.checkpoint import load_model
from gqn.spread import SEED, measure


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT")
    p.add_argument("--scenes", type=int, default=20, help="fresh synthetic scenes (default 20)")
    p.add_argument("--samples", type=int, default=8, help="prior samples of each query (default 8)")
    p.add_argument("--dataset", default=None, help="the scenes' dataset (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=SEED, help="the scenes' and draws' seed")
    args = p.parse_args()
    for path in args.checkpoints:
        model, loaded = load_model(path)
        dataset = args.dataset or loaded.dataset
        if dataset is None:
            p.error(f"{path} does not say which dataset it learned from: give --dataset")
        r = measure(model, dataset, scenes=args.scenes, samples=args.samples, seed=args.seed)
        print(
            f"{path}: step {loaded.step}, {dataset} | spread where the context saw {r['seen_spread']:.4f}, "
            f"where it did not {r['unseen_spread']:.4f}, ratio {r['ratio']:.2f} "
            f"({r['seen_pixels']} and {r['unseen_pixels']} pixels, {args.scenes} scenes, {args.samples} samples)",
            flush=True,
        )


if __name__ == "__main__":
    main()
