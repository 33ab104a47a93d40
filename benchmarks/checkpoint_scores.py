"""The held-out figures of checkpoints, side by side: what a stage of training did to them.

    python benchmarks/checkpoint_scores.py --scenes 60 pretrained:shepard_metzler_5_parts \
        runs/x/checkpoints/step-00000250.pt runs/x/checkpoints/step-00000500.pt

Each CHECKPOINT (a .pt, a run folder, pretrained:NAME or a .safetensors file) is scored on the
same held-out scenes of its dataset's built-in data at K = 3 and at sigma 0.7 for all of them (so
the bits per dimension compare): the PSNR of the prior mean, of prior samples (two) and of the
posterior's reconstruction, the view gain and identification of the prior mean, its gain over the
better baseline, the KL and the ELBO in bits per dimension. It is how the README's figures on the
ELBO stage (*Pixel-level evidence*) were measured.
"""

from __future__ import annotations

import argparse

from gqn.checkpoint import load_model
from gqn.defaults import open_dataset
from gqn.scoring import evaluate, gain_over_baselines


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT")
    p.add_argument("--scenes", type=int, default=100, help="held-out scenes scored")
    p.add_argument("--data", default=None, help="ROOT/DATASET (default: the built-in data)")
    args = p.parse_args()
    for path in args.checkpoints:
        model, loaded = load_model(path)
        dataset = open_dataset(args.data, "test", model.config.image_size)
        report = evaluate(
            model, dataset, scenes=args.scenes, contexts=(3,), samples=2, sigma=0.7, progress=False
        )
        r = report["results"]["3"]
        print(
            f"{path}: step {loaded.step} | PSNR prior mean {r['prior_mean']['psnr']:.2f}, "
            f"prior sample {r['prior_sample']['psnr']:.2f}, posterior {r['posterior']['psnr']:.2f} dB | "
            f"view gain {r['views']['prior_mean']['gain_db']:.2f} dB, "
            f"identification {r['views']['prior_mean']['identification']:.3f} | "
            f"over the baselines {gain_over_baselines(report, 3):+.2f} dB | KL {r['kl_nats']:.2f} nats, "
            f"ELBO {r['elbo_bits_per_dim']:.4f} bits/dim at sigma 0.7",
            flush=True,
        )


if __name__ == "__main__":
    main()
