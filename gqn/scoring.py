"""The scores of a trained GQN on held-out scenes: the report of `gqn eval` (gqn/evaluate.py
describes it) and the view metrics that training logs (gqn.held_out).

    from gqn.checkpoint import load_model
    from gqn.scoring import evaluate, format_table
    model, loaded = load_model("runs/gqn")
    report = evaluate(model, SceneDataset(path, split="test"), contexts=(1, 3, 5), sigma=loaded.sigma)
    print(format_table(report))

`evaluate` reads the scenes batch by batch; `score_batch` gives each scene's figures of a batch,
`summary` their means over all scenes.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from tqdm import tqdm

from gqn.cameras import forward
from gqn.data import SceneDataset, view_inputs
from gqn.errors import GQNError
from gqn.fields import check
from gqn.metrics import bits_per_dim, mse, psnr, ssim, view_scores
from gqn.model import GQN

METHODS = ("posterior", "prior_mean", "prior_sample", "context_mean", "nearest_view")
VIEW_METHODS = ("prior_mean", "nearest_view")  # scored for turning with the camera
MAX_QUERIES = 10  # cameras per scene for the view metrics
SCENES = 100  # held-out scenes evaluated, unless asked otherwise
ELBO = ("loss", "nll", "kl")  # the terms of the ELBO, per image
IMAGE_METRICS = ("mse", "psnr", "ssim")
VIEW_METRICS = ("gain_db", "identification")


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
    model: GQN,
    x: torch.Tensor,
    v: torch.Tensor,
    cameras: torch.Tensor,
    k: int,
    first: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """From the first k views of each scene as context, predict all the others.

    x (B, V, 3, H, W), v (B, V, 7), cameras (B, V, 5) -> {method: (B, V - k, 3, H, W)} for the
    prior mean and the nearest-view baseline. first: the prior mean of view k (B, 3, H, W) if
    already drawn.
    """
    context_x, context_v = x[:, :k], v[:, :k]
    queries = range(k, x.shape[1])
    prior_mean = [first] if first is not None else []
    prior_mean += [
        model.sample(context_x, context_v, v[:, q], use_mean=True) for q in queries[len(prior_mean) :]
    ]
    return {
        "prior_mean": torch.stack(prior_mean, 1),
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
        out[method] = {name: [s[i] for s in scores] for i, name in enumerate(VIEW_METRICS)}
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
def score_batch(
    model: GQN,
    batch: dict[str, torch.Tensor],
    k: int,
    sigma: float,
    noises: list[torch.Tensor],
    names: list[str],
    device: str | torch.device = "cpu",
) -> dict[str, list[float]]:
    """The figures of a batch of B scenes at context size k, each a list of B, one per scene.

    batch: the views that `context_then_query` names, {"frames" (B, V, H, W, 3) uint8, "cameras"
    (B, V, 5)}: k context views, the query, then the other query cameras of the view metrics.
    noises: the noise for z (`scene_noise`) of the posterior, then of each prior sample. names:
    the scenes, for the error that a value that is not finite raises. The figures: "loss", "nll" and
    "kl" (nats per image); "METHOD/mse", "METHOD/psnr" and "METHOD/ssim" of each of METHODS
    (prior_sample's the mean over its samples, absent without samples); and "views/METHOD/gain_db"
    and "views/METHOD/identification" of each of VIEW_METHODS.
    """
    x, v = view_inputs(batch, device)
    context_x, context_v, query_x, query_v = x[:, :k], v[:, :k], x[:, k], v[:, k]
    out = model(context_x, context_v, query_x, query_v, sigma, noise=noises[0], per_image=True)
    prior_mean, *prior_samples = model.samples(context_x, context_v, query_v, ["mean", *noises[1:]])
    views = predict_views(model, x, v, batch["cameras"], k, first=prior_mean)
    predictions = {
        "posterior": [out["mean"].clamp(0, 1)],
        "prior_mean": [prior_mean],
        "prior_sample": prior_samples,
        "context_mean": [context_x.mean(1)],
        "nearest_view": [views["nearest_view"][:, 0]],
    }
    outputs = {f"the {key} at K={k}": out[key] for key in ELBO}
    outputs.update(
        (f"the {m} prediction {j} at K={k}", p) for m, ps in predictions.items() for j, p in enumerate(ps)
    )
    outputs.update((f"the {m} predictions of the view metrics at K={k}", p) for m, p in views.items())
    refuse_non_finite(outputs, names)
    figures = {key: out[key].tolist() for key in ELBO}
    for method, images in predictions.items():
        if images:  # no prior samples with samples=0
            values = [image_metrics(image, query_x) for image in images]
            for name in IMAGE_METRICS:
                figures[f"{method}/{name}"] = torch.stack([m[name] for m in values]).mean(0).tolist()
    for method, scores in view_metrics(views, x[:, k:]).items():
        for name, values in scores.items():
            figures[f"views/{method}/{name}"] = values
    return figures


def summary(figures: dict[str, list[float]], queries: int, dims: int) -> dict:
    """The results of a context size: the mean over its scenes of each of the figures of
    `score_batch`, the ELBO also in bits per dimension of an image of `dims` numbers."""
    mean = {key: float(np.mean(values)) for key, values in figures.items()}
    return {
        "elbo_nats": mean["loss"],
        "nll_nats": mean["nll"],
        "kl_nats": mean["kl"],
        "elbo_bits_per_dim": bits_per_dim(mean["loss"], dims),
        **{m: {name: mean[f"{m}/{name}"] for name in IMAGE_METRICS} for m in METHODS if f"{m}/mse" in mean},
        "views": {
            "queries": queries,
            **{m: {name: mean[f"views/{m}/{name}"] for name in VIEW_METRICS} for m in VIEW_METHODS},
        },
    }


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
    """The report of `gqn eval` (gqn/evaluate.py describes it), as a JSON-ready dict; a progress
    bar on stderr counts the scenes of every context size."""
    check_settings(scenes, samples, sigma, seed)
    if max(contexts) >= dataset.views:
        raise GQNError(
            f"--context {max(contexts)}: scenes have {dataset.views} views, so at most {dataset.views - 1}"
        )
    orders = view_orders(dataset, scenes, seed)
    queries = min(MAX_QUERIES, dataset.views - max(contexts))
    where = f"{dataset.dataset_name}/{dataset.source.split}"
    results = {}
    with tqdm(
        total=scenes * len(contexts), unit="scene", desc="eval", disable=not progress or None, file=sys.stderr
    ) as bar:
        for k in contexts:
            figures: dict[str, list[float]] = {}
            for start in range(0, scenes, batch_size):
                part = orders[start : start + batch_size]
                batch = dataset.get_views(
                    [(i, context_then_query(o, k, max(contexts), queries)) for i, o in part]
                )
                image = tuple(batch["frames"].shape[2:4])  # (H, W)
                noises = [
                    scene_noise(model, [i for i, _ in part], image, (seed, k, draw)).to(device)
                    for draw in range(1 + samples)
                ]
                names = [f"{where} scene {i}" for i, _ in part]
                for key, values in score_batch(model, batch, k, sigma, noises, names, device).items():
                    figures.setdefault(key, []).extend(values)
                bar.update(len(part))
            results[str(k)] = summary(figures, queries, dims=3 * image[0] * image[1])
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


def gain_over_baselines(report: dict, k: int = 3) -> float:
    """How many dB the prior-mean prediction beats the better baseline by at context size k."""
    r = report["results"][str(k)]
    return r["prior_mean"]["psnr"] - max(r["context_mean"]["psnr"], r["nearest_view"]["psnr"])
