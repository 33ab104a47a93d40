"""Studies of what a trained GQN learned: `gqn analyze`.

    gqn analyze CHECKPOINT --data ROOT/DATASET --out analysis/

Each study writes a PNG, and `analysis.json` holds the numbers behind all of them:

  representations.png  r of --scenes scenes, each computed from --sets different random context
                       sets, projected to 2-D by PCA and by t-SNE and coloured by scene; with the
                       ratio of the mean distance between representations of the same scene to
                       that between different scenes (well below 1: r identifies the scene, not
                       the views it was seen from)
  pruning.png          the ELBO and the prior-mean PSNR at 3 context views when the smallest
                       10%, 20%, ... 90% of the weights (by magnitude, over all weight tensors)
                       are set to zero
  features.png         the first 16 channels of the representation network's output for one view
  canvas.png           what the canvas shows after each generation step, for a few scenes
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm import tqdm

from gqn.arguments import MODEL_DATA, HelpFormatter, checkpoint, data
from gqn.checkpoint import load_model
from gqn.data import SceneDataset, model_inputs, view_inputs
from gqn.defaults import open_dataset
from gqn.errors import GQNError
from gqn.files import atomic_write, writable_folder, write_json
from gqn.images import grid, save_image
from gqn.model import GQN
from gqn.novel_views import to_uint8
from gqn.scoring import context_then_query, evaluate, fit_scenes, view_orders

SCENES = 12  # in the representation study
PRUNE_SCENES = 20  # evaluated per pruning level


def _save_figure(fig, path: Path) -> str:
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return str(path)


@torch.no_grad()
def representations(
    model: GQN, ds: SceneDataset, scenes: int = SCENES, sets: int = 8, context: int = 3, seed: int = 0
) -> dict:
    """r of each scene from `sets` random context sets: vectors (scenes * sets, D) and the distance ratio.
    A representation of the query camera (epipolar) is taken at the scene's view 0, never in the context."""
    rng = np.random.default_rng(seed)
    vectors, labels = [], []
    for i in tqdm(range(scenes), desc="representations", unit="scene", disable=None, file=sys.stderr):
        specs = [(i, (*(1 + rng.permutation(ds.views - 1)[:context]), 0)) for _ in range(sets)]
        context_x, context_v, _, query_v = model_inputs(ds.get_views(specs))
        r = model.represent(context_x, context_v, query_v)
        vectors.append(r.flatten(1))
        labels += [i] * sets
    vectors = torch.cat(vectors).numpy()
    labels = np.array(labels)
    return {"vectors": vectors, "labels": labels, **distance_ratio(vectors, labels)}


def distance_ratio(vectors: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean Euclidean distance between vectors of the same label (within) and of different labels
    (between), and within / between."""
    d = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)
    same = labels[:, None] == labels[None]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    within, between = d[same & off_diagonal].mean(), d[~same].mean()
    return {"within": float(within), "between": float(between), "ratio": float(within / between)}


def plot_representations(study: dict, path: Path) -> str:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x, labels = study["vectors"], study["labels"]
    pca = PCA(2).fit_transform(x)
    tsne = TSNE(2, perplexity=min(30, len(x) - 1) / 2, init="pca", random_state=0).fit_transform(x)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), constrained_layout=True)
    for ax, points, title in ((axes[0], pca, "PCA"), (axes[1], tsne, "t-SNE")):
        ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab20", s=18)
        ax.set_title(f"{title} of r, coloured by scene", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"within-scene / between-scene distance: {study['ratio']:.3f}", fontsize=10)
    return _save_figure(fig, path)


@torch.no_grad()
def prune(model: GQN, fraction: float) -> GQN:
    """A copy with the `fraction` of weights (tensors of 2 or more dimensions; not biases) of
    smallest magnitude, over all of them together, set to zero."""
    pruned = copy.deepcopy(model)
    if fraction <= 0:
        return pruned
    weights = [p for p in pruned.parameters() if p.dim() > 1]
    magnitudes = torch.cat([p.abs().flatten() for p in weights])
    threshold = magnitudes.kthvalue(max(1, int(fraction * len(magnitudes)))).values
    for p in weights:
        p.mul_((p.abs() > threshold).to(p.dtype))
    return pruned


def pruning(
    model: GQN,
    ds: SceneDataset,
    sigma: float,
    scenes: int = PRUNE_SCENES,
    fractions=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
) -> list[dict]:
    """ELBO and prior-mean PSNR (3 context views) with the smallest weights zeroed, per fraction."""
    rows = []
    for fraction in tqdm(fractions, desc="pruning", unit="level", disable=None, file=sys.stderr):
        report = evaluate(
            prune(model, fraction),
            ds,
            scenes=scenes,
            contexts=(min(3, ds.views - 1),),
            samples=0,
            sigma=sigma,
            progress=False,
        )
        r = next(iter(report["results"].values()))
        rows.append(
            {"fraction": fraction, "elbo_nats": r["elbo_nats"], "prior_mean_psnr": r["prior_mean"]["psnr"]}
        )
    return rows


def plot_pruning(rows: list[dict], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
    f = [100 * r["fraction"] for r in rows]
    ax.plot(f, [r["elbo_nats"] for r in rows], "o-", color="tab:blue")
    ax.set_xlabel("weights set to zero (%)")
    ax.set_ylabel("negative ELBO (nats / image)", color="tab:blue")
    twin = ax.twinx()
    twin.plot(f, [r["prior_mean_psnr"] for r in rows], "s-", color="tab:red")
    twin.set_ylabel("prior-mean PSNR (dB)", color="tab:red")
    ax.grid(alpha=0.3)
    return _save_figure(fig, path)


@torch.no_grad()
def feature_maps(model: GQN, ds: SceneDataset, scene: int = 0) -> np.ndarray:
    """(16, h, w, 3) uint8: the first 16 channels of r for view 0 of a scene, each scaled to its range."""
    x, v = view_inputs(ds.get_views([(scene, (0,))]))  # the view is its own context (and query camera)
    r = model.represent(x, v, v[:, 0])[0, :16]
    lo, hi = r.flatten(1).min(1).values[:, None, None], r.flatten(1).max(1).values[:, None, None]
    maps = ((r - lo) / (hi - lo).clamp_min(1e-6) * 255).byte()
    return maps[..., None].expand(-1, -1, -1, 3).numpy()


@torch.no_grad()
def canvas(model: GQN, ds: SceneDataset, scenes: int = 3, context: int = 3, seed: int = 0) -> np.ndarray:
    """(scenes * (L + 1), H, W, 3) uint8: for each scene the canvas after steps 1..L, then the truth."""
    orders = view_orders(ds, scenes, seed)
    batch = ds.get_views([(i, context_then_query(order, context)) for i, order in orders])
    context_x, context_v, query_x, query_v = model_inputs(batch)
    steps = model.canvas_steps(context_x, context_v, query_v)  # (L, B, 3, H, W)
    rows = [torch.cat([steps[:, b], query_x[b : b + 1]]) for b in range(scenes)]
    return to_uint8(torch.cat(rows))


def analyze(
    model: GQN,
    ds: SceneDataset,
    out: str | os.PathLike,
    sigma: float,
    scenes: int = SCENES,
    sets: int = 8,
    prune_scenes: int = PRUNE_SCENES,
) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study = representations(model, ds, scenes, sets)
    rows = pruning(model, ds, sigma, prune_scenes)
    files = {
        "representations": plot_representations(study, out / "representations.png"),
        "pruning": plot_pruning(rows, out / "pruning.png"),
        "features": save_image(grid(feature_maps(model, ds), 8, scale=4), out / "features.png"),
        "canvas": save_image(
            grid(canvas(model, ds, min(3, len(ds))), model.config.L + 1, scale=2), out / "canvas.png"
        ),
    }
    numbers = {
        "representations": {k: study[k] for k in ("within", "between", "ratio")}
        | {"scenes": scenes, "sets": sets},
        "pruning": rows,
        "files": files,
    }
    write_json(numbers, out / "analysis.json")
    return numbers


def add_parser(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="representation, pruning, feature-map and canvas studies",
        description=__doc__,
        formatter_class=HelpFormatter,
        parents=[checkpoint(), data(default=MODEL_DATA)],
    )
    p.add_argument(
        "--scenes",
        type=int,
        default=None,
        help=f"scenes in the representation study (default: {SCENES}, or all the split has if fewer)",
    )
    p.add_argument("--sets", type=int, default=8, help="context sets per scene in the representation study")
    p.add_argument(
        "--prune-scenes",
        type=int,
        default=None,
        help=f"scenes evaluated per pruning level (default: {PRUNE_SCENES}, or all the split has if fewer)",
    )
    p.add_argument("--out", required=True, help="folder for the PNGs and analysis.json")
    p.set_defaults(run=run)


def run(args) -> int:
    writable_folder(args.out)
    model, loaded = load_model(args.checkpoint)
    ds = open_dataset(args.data, args.split, model.config.image_size, loaded.dataset)
    scenes = fit_scenes(args.scenes, SCENES, ds)
    if scenes < 2:
        raise GQNError(f"--scenes {scenes}: the representation study compares scenes, so at least 2")
    prune_scenes = fit_scenes(args.prune_scenes, PRUNE_SCENES, ds, "--prune-scenes")
    numbers = analyze(model, ds, args.out, loaded.sigma, scenes, args.sets, prune_scenes)
    print(f"representations: within/between distance ratio {numbers['representations']['ratio']:.3f}")
    for row in numbers["pruning"]:
        print(
            f"pruned {row['fraction']:.0%}: ELBO {row['elbo_nats']:.1f}, prior-mean PSNR {row['prior_mean_psnr']:.2f} dB"
        )
    print(f"wrote {', '.join(numbers['files'].values())} and {Path(args.out) / 'analysis.json'}")
    return 0
