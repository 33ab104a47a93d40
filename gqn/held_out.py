"""The held-out evaluation that `gqn train` logs as "eval" every --eval-every steps.

    batch = held_out_batch(cfg.data, cfg)               # fixed for the whole run
    values = evaluate_held_out(model, batch, sigma, step, log, device, cfg, dims, images=True)

One fixed batch of the test split, scored as in training (the ELBO terms through the posterior),
plus the mean per-image PSNR of the posterior reconstruction ("psnr") and of the prior-mean
prediction, and the view metrics of `gqn.scoring` on a few held-out scenes. `gqn eval` is the
full evaluation of a checkpoint; this is the curve to watch while training.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

from gqn.config import TrainConfig
from gqn.data import SceneDataset, find_split, make_loader, model_inputs, view_inputs
from gqn.errors import GQNError
from gqn.metrics import bits_per_dim, psnr
from gqn.model import GQN
from gqn.runlog import RunLog
from gqn.runtime import autocast
from gqn.scoring import MAX_QUERIES, predict_views, view_metrics


def held_out_path(path: str | os.PathLike) -> str | os.PathLike:
    """Where the test split of the data that `path` names is. Where `path` is a split folder or a
    file (what training reads), that is the test/ folder beside it, never the training data."""
    train, test = find_split(path, "train"), find_split(path, "test")
    if test.files != train.files:
        return path
    sibling = Path(train.files[0]).parent.with_name("test")
    if sibling.is_dir() and find_split(sibling).files != train.files:
        return sibling
    raise GQNError(f"{path} is the training data itself, with no test/ folder beside it")


def held_out_batch(path: str | os.PathLike, cfg: TrainConfig) -> dict | None:
    """A fixed held-out batch from the test split, and under "views" a few held-out scenes with 3
    context views and up to 10 query cameras each, for the view metrics. None, with a note, if the
    data has no test split; a test split that cannot be read is an error like any other data."""
    try:
        path = held_out_path(path)
    except GQNError as e:
        print(f"no held-out evaluation: {e}", file=sys.stderr)
        return None
    test = SceneDataset(path, split="test", image_size=cfg.image_size, skip_corrupt=cfg.skip_corrupt)
    size = min(cfg.batch_size, len(test), 16)
    context = min(cfg.max_context, test.views - 1)
    loader = make_loader(test, size, context_size=context, seed=cfg.seed + 1, shuffle=True)
    batch = next(iter(loader))
    k = min(3, test.views - 2)
    rng = np.random.default_rng(cfg.seed + 1)
    specs = [(i, tuple(rng.permutation(test.views)[: k + MAX_QUERIES])) for i in range(min(8, len(test)))]
    batch["views"] = {"context": k, **test.get_views(specs)}
    return batch


@torch.no_grad()
def evaluate_held_out(
    model: GQN,
    batch: dict,
    sigma: float,
    step: int,
    log: RunLog,
    device,
    cfg: TrainConfig,
    dims: int,
    images: bool,
) -> dict:
    """Log the metrics of the held-out batch as "eval": the ELBO terms through the posterior, the
    mean per-image PSNR of the posterior reconstruction ("psnr") and of the prior-mean prediction,
    and the view metrics (view gain and identification, `gqn.scoring`) of the prior mean and of
    the nearest-view baseline.

    Its noise comes from its own generator, so evaluating never changes the training's random stream.
    """
    context_x, context_v, query_x, query_v = model_inputs(batch, device)
    b, _, _, h, w = context_x.shape
    noise = torch.randn(model.noise_shape(b, h, w), generator=torch.Generator().manual_seed(cfg.seed)).to(
        device
    )
    with autocast(cfg.precision, device):
        out = model(context_x, context_v, query_x, query_v, sigma, noise=noise)
        prior_mean = model.sample(context_x, context_v, query_v, use_mean=True)
    values = {k: out[k].float().item() for k in ("loss", "nll", "kl", "mse")}
    values["psnr"] = psnr(out["mean"].clamp(0, 1), query_x).mean().item()
    values["prior_mean_psnr"] = psnr(prior_mean, query_x).mean().item()
    values["bits_per_dim"] = bits_per_dim(values["loss"], dims)
    views = batch["views"]
    x, v = view_inputs(views, device)
    with autocast(cfg.precision, device):
        predictions = predict_views(model, x, v, views["cameras"], views["context"])
    scores = view_metrics(predictions, x[:, views["context"] :])
    for method, name in (("prior_mean", "view"), ("nearest_view", "nearest_view")):
        values[f"{name}_gain_db"] = float(np.mean(scores[method]["gain_db"]))
        values[f"{name}_identification"] = float(np.mean(scores[method]["identification"]))
    log.scalars(step, "eval", values)
    if images:
        sample = model.sample(context_x, context_v, query_v, noise=noise)
        log.image(
            step,
            "context_target_posterior_prior",
            picture(context_x, query_x, out["mean"].clamp(0, 1), sample),
        )
    return values


def picture(context_x, query_x, recon, sample, n: int = 4) -> torch.Tensor:
    """A (3, H', W') grid: rows of [first context view, target, posterior reconstruction, prior sample]."""
    rows = [
        torch.cat([context_x[i, 0], query_x[i], recon[i], sample[i]], 2) for i in range(min(n, len(query_x)))
    ]
    return torch.cat(rows, 1).float().cpu()
