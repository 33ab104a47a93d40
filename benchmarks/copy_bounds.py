"""Where a sharp model's copy of the context falls short: the search, the pooling or the blend.

    python benchmarks/copy_bounds.py --scenes 20 runs/x/checkpoints/last.pt

For held-out scenes of the built-in data (context views 0-2, queries 3-6, the prior mean), the
PSNR of the model's prediction beside what its parts alone give, and two bounds that use the truth
(no model can reach them; they say how much each part leaves on the table):

  generator alone          g, the GQN's image before the blend
  model                    the blended mean image
  copy blindly             the copied colour wherever some view sees the ray, g elsewhere
  truth picks copy or g    per pixel the better of the copied colour and g (a perfect blend)
  best depth               the pooled colour at the depth along the ray nearest the truth (a
                           perfect search; optimistic: some depth may match by chance)
  truth picks best or g    per pixel the better of that and g
  nearest g                the pooled colour at the depth whose colour is nearest g (no truth:
                           the generator's blurred guess picks among what the views saw)
  truth picks nearest g or g  per pixel the better of that and g

and, on the object's pixels, the mean alpha of the blend and the search's largest weight.
"""

from __future__ import annotations

import argparse

import torch

from gqn.checkpoint import load_model
from gqn.data import view_inputs
from gqn.defaults import open_dataset

CONTEXT, QUERIES = 3, range(3, 7)


def better(a: torch.Tensor, b: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per pixel, whichever of a and b (B, 3, H, W) is nearer the truth."""
    a_err, b_err = ((a - truth) ** 2).sum(1, keepdim=True), ((b - truth) ** 2).sum(1, keepdim=True)
    return torch.where(a_err < b_err, a, b)


def at_depth(colours: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """colours (B, 3, D, N), index (B, N) a depth (or candidate) per pixel -> (B, 3, N) the colour there."""
    return torch.gather(colours, 2, index[:, None, None].expand(-1, 3, 1, -1))[:, :, 0]


def blend_alpha(seen_by: dict) -> torch.Tensor:
    """How much of the copied colour the blend took at each pixel (B, H, W): out = g + alpha (copied - g)."""
    g, reading = seen_by["g"], seen_by["reading"]
    gap = reading.evidence[:, :3].view_as(g) - g
    return ((seen_by["out"] - g) * gap).sum(1) / gap.square().sum(1).clamp_min(1e-6)


def watched(checkpoint: str, parser: argparse.ArgumentParser) -> tuple:
    """The sharp model at `checkpoint` in eval mode, what load_model says of it, and the dict its
    passes fill: g and out (the blend's input image and its output) and reading (the evidence's)."""
    model, loaded = load_model(checkpoint)
    if not model.config.pixel_depths:
        parser.error(f"{checkpoint} has no pixel evidence to look into")
    model.eval()
    seen_by = {}
    model.blend.register_forward_hook(lambda m, inputs, out: seen_by.update(g=inputs[0], out=out))
    model.evidence.register_forward_hook(lambda m, inputs, out: seen_by.update(reading=out))
    return model, loaded, seen_by


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--scenes", type=int, default=20, help="held-out scenes (default 20)")
    args = p.parse_args()
    model, _, seen_by = watched(args.checkpoint, p)
    dataset = open_dataset(None, "test", model.config.image_size)
    errors, object_stats = {}, {"alpha": [], "largest weight": []}
    with torch.no_grad():
        for start in range(0, args.scenes, 5):
            batch = dataset.get_views([(i, None) for i in range(start, min(start + 5, args.scenes))])
            x, v = view_inputs(batch)
            for q in QUERIES:
                truth = x[:, q]
                model.sample(x[:, :CONTEXT], v[:, :CONTEXT], v[:, q], use_mean=True)
                g, reading = seen_by["g"].clamp(0, 1), seen_by["reading"]
                b, _, h, w = g.shape
                seen = reading.seen.view(b, 1, h, w) > 0
                copied = reading.evidence[:, :3].view(b, 3, h, w)
                error = (reading.colours - truth.flatten(2)[:, :, None]).square().sum(1)  # (B, D, N)
                best = at_depth(reading.colours, error.argmin(1)).view(b, 3, h, w)
                near_g = (reading.colours - g.flatten(2)[:, :, None]).square().sum(1)  # (B, D, N)
                snapped = at_depth(reading.colours, near_g.argmin(1)).view(b, 3, h, w)
                images = {
                    "generator alone": g,
                    "model": seen_by["out"].clamp(0, 1),
                    "copy blindly": torch.where(seen, copied, g),
                    "truth picks copy or g": better(torch.where(seen, copied, g), g, truth),
                    "best depth": torch.where(seen, best, g),
                    "truth picks best or g": better(torch.where(seen, best, g), g, truth),
                    "nearest g": torch.where(seen, snapped, g),
                    "truth picks nearest g or g": better(torch.where(seen, snapped, g), g, truth),
                }
                for name, image in images.items():
                    errors.setdefault(name, []).append(((image - truth) ** 2).mean((1, 2, 3)))
                on_object = truth.amax(1) > 0.1  # (B, H, W): the background is black
                object_stats["alpha"].append(blend_alpha(seen_by)[on_object])
                object_stats["largest weight"].append(reading.weights.amax(1).view(b, h, w)[on_object])
    print(f"{args.checkpoint}: {args.scenes} held-out scenes, K = {CONTEXT}, {len(QUERIES)} queries each")
    for name, values in errors.items():
        psnr = -10 * torch.log10(torch.cat(values).clamp_min(1e-10))
        print(f"  {name:24s} PSNR {psnr.mean():6.2f} dB")
    for name, values in object_stats.items():
        print(f"  {name} on the object: {torch.cat(values).mean():.3f}")


if __name__ == "__main__":
    main()
