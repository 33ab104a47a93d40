"""What a trained GQN scores on held-out scenes, next to two baselines: `gqn eval`.

    gqn eval runs/gqn --data data/shepard_metzler_5_parts --scenes 200 --context 1,3,5
    gqn eval pretrained:rooms_ring_camera      # the built-in data of the model's own dataset

    from gqn.checkpoint import load_model
    from gqn.evaluate import evaluate
    model, loaded = load_model("runs/gqn")
    report = evaluate(model, SceneDataset(path, split="test"), contexts=(1, 3, 5), sigma=loaded.sigma)

Each held-out scene gets one seeded order of its views: the first is the query, the next K the
context, so every context size predicts the same query from nested contexts. For each K:
the ELBO, NLL and KL (nats per image and bits per dimension) at the model's sigma, and MSE, PSNR
and SSIM against the true query of
  posterior      the reconstruction through the posterior (it sees the query: an upper bound)
  prior_mean     the prediction with z at the prior's mean at every step
  prior_sample   prior samples (the mean of the metrics over --samples draws)
  context_mean   baseline: the average of the context images
  nearest_view   baseline: the context image whose viewing direction is closest to the query's
and, for the prior mean and the nearest-view baseline, whether the prediction turns with the
camera: from the same context, each scene is predicted at Q query cameras (the query and the
views after the largest context, at most 10) and scored by `gqn.metrics.view_scores`:
  view gain            mean PSNR against the view at the same camera minus mean PSNR against the
                       views at the other cameras, in dB (0 for a prediction blind to the camera)
  view identification  the fraction of the Q views whose nearest prediction is the one made for
                       their camera (1/Q for a blind prediction, 1 for the truth)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gqn.arguments import MODEL_DATA, HelpFormatter, checkpoint, data
from gqn.cameras import forward
from gqn.checkpoint import is_pretrained, load_model
from gqn.data import SceneDataset, view_inputs
from gqn.defaults import open_dataset
from gqn.errors import GQNError
from gqn.fields import check
from gqn.files import writable_folder, write_json
from gqn.metrics import bits_per_dim, mse, psnr, ssim, view_scores
from gqn.model import GQN

METHODS = ("posterior", "prior_mean", "prior_sample", "context_mean", "nearest_view")
VIEW_METHODS = ("prior_mean", "nearest_view")  # scored for turning with the camera
MAX_QUERIES = 10  # cameras per scene for the view metrics
SCENES = 100  # held-out scenes evaluated, unless asked otherwise


def check_settings(scenes: int | None, samples: int, sigma: float | None, seed: int) -> None:
    """The settings of an evaluation, each a one-line error when out of range (None: not given)."""
    if scenes is not None:
        check("--scenes", scenes, "int", min=1)
    check("--samples", samples, "int", min=0)
    if sigma is not None:
        check("--sigma", sigma, "float", above=0)
    check("--seed", seed, "int", min=0)


def fit_scenes(asked: int | None, default: int, dataset: SceneDataset, flag: str = "--scenes") -> int:
    """The scenes to use: `asked`, which the split must have, or else `default`, shrunk (and
    said so on stderr) to what the split has."""
    where = f"{dataset.dataset_name}/{dataset.source.split}"
    if asked is not None:
        if not 1 <= asked <= len(dataset):
            raise GQNError(f"{flag} {asked}: {where} has {len(dataset)} scenes")
        return asked
    if default > len(dataset):
        print(
            f"note: {where} has {len(dataset)} scenes, fewer than {default}: using them all", file=sys.stderr
        )
        return len(dataset)
    return default


def view_orders(dataset: SceneDataset, scenes: int, seed: int) -> list[tuple[int, np.ndarray]]:
    """(scene index, permutation of its views) for the first `scenes` scenes, seeded."""
    if scenes > len(dataset):
        raise GQNError(
            f"--scenes {scenes}: {dataset.dataset_name}/{dataset.source.split} has {len(dataset)} scenes"
        )
    rng = np.random.default_rng(seed)
    return [(i, rng.permutation(dataset.views)) for i in range(scenes)]


def context_then_query(order: np.ndarray, k: int, largest: int | None = None, queries: int = 1) -> tuple:
    """The views of a scene to read for context size k, from its order (`view_orders`): the
    context order[1..k], the query order[0], then (for the view metrics) `queries` - 1 more query
    cameras from the views after the largest context, which no context size uses."""
    largest = k if largest is None else largest
    return (*order[1 : k + 1], order[0], *order[largest + 1 : largest + queries])


def nearest_view(
    context_x: torch.Tensor, context_cameras: torch.Tensor, query_cameras: torch.Tensor
) -> torch.Tensor:
    """The context image (B, 3, H, W) seen from the direction closest to the query's."""
    cams, query = context_cameras.double().numpy(), query_cameras.double().numpy()
    cosine = np.einsum("bkd,bd->bk", forward(cams[..., 3], cams[..., 4]), forward(query[:, 3], query[:, 4]))
    best = torch.from_numpy(cosine.argmax(1))
    return context_x[torch.arange(len(best)), best]


def predict_views(
    model: GQN, x: torch.Tensor, v: torch.Tensor, cameras: torch.Tensor, k: int
) -> dict[str, torch.Tensor]:
    """From the first k views of each scene as context, predict all the others.

    x (B, V, 3, H, W), v (B, V, 7), cameras (B, V, 5) -> {method: (B, V - k, 3, H, W)} for the
    prior mean and the nearest-view baseline.
    """
    context_x, context_v = x[:, :k], v[:, :k]
    queries = range(k, x.shape[1])
    return {
        "prior_mean": torch.stack(
            [model.sample(context_x, context_v, v[:, q], use_mean=True) for q in queries], 1
        ),
        "nearest_view": torch.stack(
            [nearest_view(context_x.cpu(), cameras[:, :k], cameras[:, q]).to(x.device) for q in queries],
            1,
        ),
    }


def view_metrics(predictions: dict[str, torch.Tensor], truths: torch.Tensor) -> dict[str, dict[str, list]]:
    """Per scene view gain (dB) and identification of each method's predictions (B, Q, 3, H, W)
    against the true views truths (B, Q, 3, H, W)."""
    out = {}
    for method, images in predictions.items():
        scores = [view_scores(p, t) for p, t in zip(images, truths)]
        out[method] = {"gain_db": [s[0] for s in scores], "identification": [s[1] for s in scores]}
    return out


def refuse_non_finite(values: dict[str, torch.Tensor], scenes: list[str]) -> None:
    """Each of `values` (B, ...), one row per scene named in `scenes`, must be finite: a NaN is an
    error naming the scene and the value, never a number averaged into the report."""
    for what, v in values.items():
        finite = torch.isfinite(v.reshape(len(v), -1)).all(1)
        if not finite.all():
            raise GQNError(f"{scenes[int(torch.argmin(finite.int()))]}: {what} is not finite (NaN or inf)")


def image_metrics(prediction: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image MSE, PSNR and SSIM: each (B,)."""
    return {"mse": mse(prediction, truth), "psnr": psnr(prediction, truth), "ssim": ssim(prediction, truth)}


def scene_noise(model: GQN, scenes: list[int], image: tuple[int, int], key: tuple[int, ...]) -> torch.Tensor:
    """Noise for z (L, B, Cz, h, w), each scene's own draw seeded by (key..., scene): a scene gets
    the same noise whatever batch it is evaluated in."""
    shape = model.noise_shape(1, *image)
    draws = []
    for scene in scenes:
        seed = int(np.random.SeedSequence([*key, scene]).generate_state(1)[0])
        draws.append(torch.randn(shape, generator=torch.Generator().manual_seed(seed)))
    return torch.cat(draws, 1)


@torch.no_grad()
def evaluate(
    model: GQN,
    dataset: SceneDataset,
    scenes: int = SCENES,
    contexts: tuple[int, ...] = (1, 3, 5),
    samples: int = 4,
    sigma: float = 0.7,
    seed: int = 0,
    batch_size: int = 20,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict:
    """The report described in the module docstring, as a JSON-ready dict; a progress bar on
    stderr counts the scenes of every context size."""
    check_settings(scenes, samples, sigma, seed)
    if max(contexts) >= dataset.views:
        raise GQNError(
            f"--context {max(contexts)}: scenes have {dataset.views} views, so at most {dataset.views - 1}"
        )
    orders = view_orders(dataset, scenes, seed)
    queries = min(MAX_QUERIES, dataset.views - max(contexts))
    results = {}
    bar = tqdm(
        total=scenes * len(contexts), unit="scene", desc="eval", disable=not progress or None, file=sys.stderr
    )
    for k in contexts:
        per_scene: dict[str, dict[str, list[float]]] = {
            m: {"mse": [], "psnr": [], "ssim": []} for m in METHODS
        }
        per_view = {m: {"gain_db": [], "identification": []} for m in VIEW_METHODS}
        elbo: dict[str, list[float]] = {"loss": [], "nll": [], "kl": []}
        for start in range(0, scenes, batch_size):
            part = orders[start : start + batch_size]
            specs = [(i, context_then_query(order, k, max(contexts), queries)) for i, order in part]
            batch = dataset.get_views(specs)
            x, v = view_inputs(batch, device)
            context_x, context_v, query_x, query_v = x[:, :k], v[:, :k], x[:, k], v[:, k]
            noises = [
                scene_noise(model, [i for i, _ in part], query_x.shape[2:], (seed, k, draw)).to(device)
                for draw in range(1 + samples)
            ]
            out = model(context_x, context_v, query_x, query_v, sigma, noise=noises[0], per_image=True)
            for key in elbo:
                elbo[key] += out[key].tolist()
            views = predict_views(model, x, v, batch["cameras"], k)
            predictions = {
                "posterior": [out["mean"].clamp(0, 1)],
                "prior_mean": [views["prior_mean"][:, 0]],
                "prior_sample": [model.sample(context_x, context_v, query_v, noise=n) for n in noises[1:]],
                "context_mean": [context_x.mean(1)],
                "nearest_view": [views["nearest_view"][:, 0]],
            }
            names = [f"{dataset.dataset_name}/{dataset.source.split} scene {i}" for i, _ in part]
            outputs = {f"the {key} at K={k}": out[key] for key in elbo}
            outputs.update(
                (f"the {m} prediction {j} at K={k}", p)
                for m, ps in predictions.items()
                for j, p in enumerate(ps)
            )
            outputs.update((f"the {m} predictions of the view metrics at K={k}", p) for m, p in views.items())
            refuse_non_finite(outputs, names)
            for method, images in predictions.items():
                if not images:  # samples=0
                    continue
                values = [image_metrics(image, query_x) for image in images]
                for name in ("mse", "psnr", "ssim"):
                    per_scene[method][name] += (
                        torch.stack([values_[name] for values_ in values]).mean(0).tolist()
                    )
            for method, scores in view_metrics(views, x[:, k:]).items():
                for name, values in scores.items():
                    per_view[method][name] += values
            bar.update(len(part))
        dims = query_x[0].numel()
        mean = {key: float(np.mean(v)) for key, v in elbo.items()}
        results[str(k)] = {
            "elbo_nats": mean["loss"],
            "nll_nats": mean["nll"],
            "kl_nats": mean["kl"],
            "elbo_bits_per_dim": bits_per_dim(mean["loss"], dims),
            **{
                m: {name: float(np.mean(v)) for name, v in per_scene[m].items()}
                for m in METHODS
                if per_scene[m]["mse"]
            },
            "views": {
                "queries": queries,
                **{m: {name: float(np.mean(v)) for name, v in per_view[m].items()} for m in VIEW_METHODS},
            },
        }
    bar.close()
    return {
        "dataset": dataset.dataset_name,
        "split": dataset.source.split,
        "scenes": scenes,
        "sigma": sigma,
        "samples": samples,
        "seed": seed,
        "results": results,
    }


def format_table(report: dict) -> str:
    """The report as a plain-text table, one block per context size."""
    lines = [
        f"{report['dataset']}/{report['split']}: {report['scenes']} scenes, sigma {report['sigma']:.3f}, "
        f"{report['samples']} prior samples, seed {report['seed']}"
    ]
    lines.append(f"{'K':>2}  {'prediction':<15} {'MSE':>9} {'PSNR dB':>8} {'SSIM':>6}")
    for k, r in report["results"].items():
        for method in (m for m in METHODS if m in r):
            m = r[method]
            label = method + (" *" if method in ("context_mean", "nearest_view") else "")
            lines.append(f"{k:>2}  {label:<15} {m['mse']:>9.5f} {m['psnr']:>8.2f} {m['ssim']:>6.3f}")
        if "views" in r:
            pm, nv = r["views"]["prior_mean"], r["views"]["nearest_view"]
            lines.append(
                f"    turning with the camera ({r['views']['queries']} cameras): prior mean view gain "
                f"{pm['gain_db']:.2f} dB, identification {pm['identification']:.2f}; nearest view "
                f"{nv['gain_db']:.2f} dB, {nv['identification']:.2f}"
            )
        lines.append(
            f"    ELBO {r['elbo_nats']:.1f} nats/image ({r['elbo_bits_per_dim']:.3f} bits/dim): "
            f"NLL {r['nll_nats']:.1f}, KL {r['kl_nats']:.2f}"
        )
    lines.append(
        "* baselines: the mean of the context images; the context view nearest the query's direction"
    )
    return "\n".join(lines)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="ELBO, MSE, PSNR and SSIM on held-out scenes, with two baselines",
        description=__doc__,
        formatter_class=HelpFormatter,
        parents=[checkpoint(), data(default=MODEL_DATA)],
    )
    p.add_argument(
        "--scenes",
        type=int,
        default=None,
        help=f"held-out scenes to evaluate (default: {SCENES}, or all the split has if fewer)",
    )
    p.add_argument("--context", default="1,3,5", help="context sizes, comma-separated")
    p.add_argument("--samples", type=int, default=4, help="prior samples per query")
    p.add_argument(
        "--sigma", type=float, default=None, help="pixel sigma of the ELBO (default: the model's at its step)"
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the view orders and the prior samples")
    p.add_argument(
        "--out", default=None, help="JSON file (default: eval.json beside the checkpoint's run folder)"
    )
    p.set_defaults(run=run)


def run(args) -> int:
    try:
        contexts = tuple(int(c) for c in args.context.split(","))
    except ValueError:
        raise GQNError(
            f"--context {args.context!r}: expected comma-separated integers such as 1,3,5"
        ) from None
    if min(contexts) < 1:
        raise GQNError(f"--context {args.context}: sizes start at 1")
    check_settings(args.scenes, args.samples, args.sigma, args.seed)  # before any work
    model, loaded = load_model(args.checkpoint)
    out = args.out or default_report_path(args.checkpoint, loaded.path)
    writable_folder(Path(out).parent)  # before the work, not after it
    dataset = open_dataset(args.data, args.split, model.config.image_size, loaded.dataset)
    scenes = fit_scenes(args.scenes, SCENES, dataset)
    sigma = loaded.sigma if args.sigma is None else args.sigma
    report = evaluate(model, dataset, scenes, contexts, args.samples, sigma, args.seed)
    report.update(checkpoint=loaded.path, step=loaded.step)
    print(format_table(report))
    print(f"wrote {write_json(report, out)}")
    return 0


def default_report_path(source: str, path: str) -> Path:
    """eval.json in a checkpoint's run folder; for pretrained weights, eval-NAME.json here."""
    if is_pretrained(source):
        return Path(f"eval-{Path(path).stem}.json")
    return Path(path).parent.parent / "eval.json"


def gain_over_baselines(report: dict, k: int = 3) -> float:
    """How many dB the prior-mean prediction beats the better baseline by at context size k."""
    r = report["results"][str(k)]
    return r["prior_mean"]["psnr"] - max(r["context_mean"]["psnr"], r["nearest_view"]["psnr"])
