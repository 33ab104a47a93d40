"""Where the copy fails, by how many context views saw what the query pixel shows.

    python benchmarks/copy_by_views.py pretrained:shepard_metzler_5_parts
    python benchmarks/copy_by_views.py --scenes 20 runs/x/checkpoints/last.pt

Fresh synthetic scenes of the model's dataset (`gqn.spread.segmented_scenes`: a seed no data of
the project uses, and the part, a MuJoCo geom, seen at every pixel). Views 0-2 are the context,
every other view a query, drawn as the prior mean. Each query pixel is put in a group: the
background, or the number of context views (0 to 3) that show its part (a Shepard-Metzler cube
has one colour, so a view that shows the cube holds the pixel's colour even where it shows another
face). For each group, the PSNR over its pixels of:

  model          the blended mean image
  g alone        the generator's image before the blend
  copy blindly   the copied colour wherever some view sees the ray, g elsewhere
  search's top   the pooled colour at the search's most likely depth, g where no view sees
  nearest g      the candidate colour nearest the generator's own (g as the search's guide: what
                 the generator's blurred colour alone can rank), g where no view sees
  best depth     the pooled colour at the depth nearest the truth (a perfect search; optimistic)
  best view      the colour one view saw, at the depth and view nearest the truth (a perfect
                 search over the views too: what pooling the views first gives away), at the
                 model's depths along the ray or --view-depths (what finer depths would give),
                 placed as the model places them or as --view-sampling says (`coarse`: where
                 the model's coarse attention puts its weight, with --floor of them even)

and the blend's mean alpha, the search's largest weight there, the weight it puts on dark
candidates that a view saw (brightest channel under DARK: what the views see of Shepard-Metzler's
black void) and, with `search_weighting` "transmittance", on the learned background, the last
candidate (which "search's top", "nearest g" and "best depth" may then pick too). A search that fails where
only one view saw the part, and works where two or three did, is held back by what one view alone
cannot tell (no agreement to find); one that fails everywhere, by its ranking itself.

--without-prior takes the coarse attention's logits out of the search (uniform over depth): what
its own reading of the views prefers. --hull also says how many background pixels' rays miss the
visual hull of the context views' silhouettes (at each of HULL_DEPTHS depths along the ray some
view that frames the point shows the background there, by the renderer's part ids), and how much
of the model's squared error lies on them: what carving empty space could fix.
"""

from __future__ import annotations

import argparse

import torch
from copy_bounds import at_depth, blend_alpha, watched

from gqn.cameras import rays
from gqn.epipolar import gather
from gqn.model import GQN
from gqn.pixels import COARSE_FLOOR, coarse_depths, coarse_per_pixel
from gqn.spread import segmented_scenes, views_seeing

CONTEXT = 3
DARK = 0.05  # a candidate whose brightest channel is under this is dark
HULL_DEPTHS = 64  # depths along each ray at which --hull asks whether some view sees the background
GROUPS = ["background", "0 views", "1 view", "2 views", "3 views"]
IMAGES = ["model", "g alone", "copy blindly", "search's top", "nearest g", "best depth", "best view"]
WEIGHTS = ["alpha", "largest weight", "dark", "background"]


def candidate_distance(colours: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """colours (B, 3, D', N) of D' candidates at each of the N pixels of image (B, 3, H, W) ->
    (B, D', N) each candidate's squared distance from the image's colour there."""
    return (colours - image.flatten(2)[:, :, None]).square().sum(1)


def best_view(
    model: GQN,
    cx: torch.Tensor,
    cv: torch.Tensor,
    qv: torch.Tensor,
    truth: torch.Tensor,
    depths: int,
    coarse: torch.Tensor | None = None,
    floor: float = COARSE_FLOOR,
):
    """The colour nearest the truth (B, 3, H, W) that any one context view saw at any of `depths`
    depths along each query pixel's ray (evenly from near to far, or with `coarse`, the coarse
    attention's weights (B, D', h, w), where they put their mass), and where some view saw one
    (B, 1, H, W)."""
    evidence = model.evidence
    origin, direction = rays(qv, truth.shape[-1], evidence.fov)  # (B, 3), (B, H, W, 3)
    if coarse is None:
        depth = torch.linspace(evidence.near, evidence.far, depths)[None, :, None]  # (1, D, 1)
    else:
        depth = coarse_depths(
            coarse_per_pixel(coarse, truth.shape[-1], None), depths, evidence.near, evidence.far, floor
        )
    points = origin[:, None, None] + depth[..., None] * direction.flatten(1, 2)[:, None]  # (B, D, N, 3)
    values, seen = gather(cx, cv, points.flatten(1, 2), evidence.fov)  # (B, K, 3, P), (B, K, P)
    error = (values - truth.flatten(2).repeat(1, 1, depths)[:, None]).square().sum(2)
    error = error.masked_fill(seen == 0, float("inf"))  # (B, K, P)
    b, k, _, _ = values.shape
    n = truth.shape[-1] * truth.shape[-2]
    error, values = error.view(b, k * depths, n), values.view(b, k, 3, depths, n)
    values = values.permute(0, 2, 1, 3, 4).reshape(b, 3, k * depths, n)
    best = at_depth(values, error.argmin(1))  # (B, 3, N): the best of the K D candidates
    return best.view_as(truth), torch.isfinite(error).any(1).view(b, 1, *truth.shape[-2:])


def misses_hull(model: GQN, background: torch.Tensor, cv: torch.Tensor, qv: torch.Tensor) -> torch.Tensor:
    """background (K, H, W) True where each context view shows the background, the context's
    cameras cv (Q, K, 7) and the queries' qv (Q, 7) -> (Q, H, W) True where the query pixel's ray
    misses the context views' visual hull: at each of HULL_DEPTHS depths from near to far some view
    that frames the point shows the background there (the views' background masks read bilinearly,
    over half; a point no view frames carves nothing, so the hull is a generous one)."""
    evidence, (q, k), size = model.evidence, cv.shape[:2], background.shape[-1]
    origin, direction = rays(qv, size, evidence.fov)  # (Q, 3), (Q, H, W, 3)
    depth = torch.linspace(evidence.near, evidence.far, HULL_DEPTHS)
    points = origin[:, None, None] + depth[None, :, None, None] * direction.flatten(1, 2)[:, None]
    masks = background[None, :, None].float().expand(q, k, 1, size, size)
    values, seen = gather(masks, cv, points.flatten(1, 2), evidence.fov)  # (Q, K, 1, P), (Q, K, P)
    carved = ((values[:, :, 0] > 0.5) & (seen > 0)).any(1)  # (Q, P): some view sees through the point
    return carved.view(q, HULL_DEPTHS, size, size).all(1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--scenes", type=int, default=20, help="fresh scenes (default 20)")
    p.add_argument(
        "--view-depths", type=int, default=None, help="depths of the best view's bound (default: the model's)"
    )
    p.add_argument(
        "--view-sampling",
        choices=["model", "uniform", "coarse"],
        default="model",
        help="where the best view's depths lie (default: as the model places its own)",
    )
    p.add_argument("--floor", type=float, default=COARSE_FLOOR, help="the share of even depths with coarse")
    p.add_argument(
        "--without-prior", action="store_true", help="the search without the coarse prior's logits"
    )
    p.add_argument("--hull", action="store_true", help="also the background rays that miss the visual hull")
    args = p.parse_args()
    model, loaded, seen_by = watched(args.checkpoint, p)
    if args.without_prior and model.config.pixel_sampling == "coarse":
        p.error("--without-prior: the coarse sampling places the depths by the prior and adds no logits")
    if args.without_prior:
        prior = model.evidence._prior
        model.evidence._prior = lambda *a: torch.zeros_like(prior(*a))  # log 1: uniform over depth
    background_weight = model.config.search_weighting == "transmittance"
    hull = {"pixels": 0, "error": 0.0, "total error": 0.0}
    sampling = model.config.pixel_sampling if args.view_sampling == "model" else args.view_sampling
    model.representation.register_forward_hook(lambda m, inputs, out: seen_by.update(coarse=out[1]))
    sums = {g: {name: 0.0 for name in [*IMAGES, *WEIGHTS]} for g in GROUPS}
    counts = dict.fromkeys(GROUPS, 0)
    dataset = loaded.dataset or "shepard_metzler_5_parts"
    with torch.no_grad():
        for x, v, ids in segmented_scenes(dataset, args.scenes):
            # (Q, H, W): 0 for the background, else 1 + the number of context views that show the part
            group = torch.from_numpy(views_seeing(ids[:CONTEXT], ids[CONTEXT:])) + 1
            queries = len(x) - CONTEXT
            truth = x[CONTEXT:]
            cx = x[:CONTEXT].expand(queries, -1, -1, -1, -1)
            cv = v[:CONTEXT].expand(queries, -1, -1)
            model.sample(cx, cv, v[CONTEXT:], use_mean=True)
            g, out, reading = seen_by["g"].clamp(0, 1), seen_by["out"].clamp(0, 1), seen_by["reading"]
            b, _, h, w = g.shape
            seen = reading.seen.view(b, 1, h, w) > 0
            # (B, D', N): each candidate's squared distance from the truth, and from g
            error, from_g = (candidate_distance(reading.colours, image) for image in (truth, g))
            images = {
                "model": out,
                "g alone": g,
                "copy blindly": torch.where(seen, reading.evidence[:, :3].view(b, 3, h, w), g),
                "search's top": torch.where(
                    seen, at_depth(reading.colours, reading.weights.argmax(1)).view(b, 3, h, w), g
                ),
                "nearest g": torch.where(
                    seen, at_depth(reading.colours, from_g.argmin(1)).view(b, 3, h, w), g
                ),
                "best depth": torch.where(
                    seen, at_depth(reading.colours, error.argmin(1)).view(b, 3, h, w), g
                ),
            }
            best, seen_any = best_view(
                model,
                cx,
                cv,
                v[CONTEXT:],
                truth,
                args.view_depths or model.config.pixel_depths,
                seen_by["coarse"] if sampling == "coarse" else None,
                args.floor,
            )
            images["best view"] = torch.where(seen_any, best, g)
            per_pixel = {name: (image - truth).square().mean(1) for name, image in images.items()}
            per_pixel["alpha"] = blend_alpha(seen_by)
            per_pixel["largest weight"] = reading.weights.amax(1).view(b, h, w)
            dark = reading.colours.amax(1) < DARK  # (B, D', N)
            if background_weight:
                dark[:, -1] = False  # the learned background is no view's
            per_pixel["dark"] = (reading.weights * dark).sum(1).view(b, h, w)
            per_pixel["background"] = reading.weights[:, -1].view(b, h, w) * background_weight
            if args.hull:
                missed = misses_hull(model, torch.from_numpy(ids[:CONTEXT] == -1), cv, v[CONTEXT:])
                hull["pixels"] += int((missed & (group == 0)).sum())
                hull["error"] += float(per_pixel["model"][missed & (group == 0)].sum())
                hull["total error"] += float(per_pixel["model"].sum())
            for i, name in enumerate(GROUPS):
                mask = group == i
                counts[name] += int(mask.sum())
                for key, values in per_pixel.items():
                    sums[name][key] += float(values[mask].sum())
    total = sum(counts.values())
    without = ", the search without the coarse prior" if args.without_prior else ""
    print(f"{args.checkpoint}: {args.scenes} fresh {dataset} scenes, K = {CONTEXT}, prior mean{without}")
    print(
        f"{'pixels':<12}{'share':>7}"
        + "".join(f"{name:>14}" for name in IMAGES)
        + f"{'alpha':>8}{'top w':>8}{'dark w':>8}"
        + (f"{'bg w':>8}" if background_weight else "")
    )
    for name in GROUPS:
        n = counts[name]
        if not n:
            continue
        psnr = [-10 * torch.log10(torch.tensor(max(sums[name][k] / n, 1e-10))).item() for k in IMAGES]
        print(
            f"{name:<12}{n / total:>7.3f}"
            + "".join(f"{value:>14.2f}" for value in psnr)
            + "".join(f"{sums[name][key] / n:>8.3f}" for key in WEIGHTS[: 3 + background_weight])
        )
    if args.hull:
        print(
            f"background pixels whose ray misses the context views' visual hull: "
            f"{hull['pixels'] / counts['background']:.3f} of them, "
            f"{hull['error'] / hull['total error']:.3f} of the model's squared error"
        )


if __name__ == "__main__":
    main()
