"""Where prior samples differ: their spread over what one context view saw, and over what it did not.

The GQN's latent z carries what no context view saw, so its prior samples should agree where the
context is clear and differ where it is not. This measures that on freshly rendered synthetic
scenes, where the renderer says which part of the scene every pixel shows:

  - each scene is rendered from its dataset's cameras with the part (MuJoCo geom) seen at each
    pixel; view 0 is the one context view, every other view a query;
  - a query pixel is *seen* if the part it shows covers at least `SEEN_PIXELS` pixels of the context
    view (a Shepard-Metzler cube has one colour, so a cube in view is known wherever it shows),
    *unseen* if it shows a part the context view does not (a cube hidden behind the others or
    turned away), and neither if it shows the background;
  - S prior samples of each query are drawn, and a pixel's spread is their standard deviation,
    mean over its three colours.

`measure` gives the mean spread over the seen and the unseen pixels of all queries and their
ratio: a GQN whose latent carries the unseen scene has a ratio well above 1; a model that draws
the same image whatever z is has spreads near 0 and a ratio near 1.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from gqn.data import view_inputs
from gqn.errors import GQNError
from gqn.model import GQN
from gqn.synth import make_family
from gqn.synth.gl import choose_gl

SEEN_PIXELS = 4  # a part counts as seen by the context view if it covers this many of its pixels
SEED = 24_601  # the scenes' seed: one no training or held-out data of this project uses


def views_seeing(context_ids: np.ndarray, query_ids: np.ndarray, background: int = -1) -> np.ndarray:
    """context_ids (K, H, W), query_ids (Q, H, W) the part seen at each pixel (`background` for
    none) -> (Q, H, W): at each query pixel, how many context views show its part (on at least
    SEEN_PIXELS pixels), -1 where the query shows the background."""
    counts = np.zeros(query_ids.shape, dtype=np.int64)
    for ids in context_ids:
        parts, pixels = np.unique(ids, return_counts=True)
        counts += np.isin(query_ids, parts[(pixels >= SEEN_PIXELS) & (parts != background)])
    counts[query_ids == background] = -1
    return counts


def visibility(context_ids: np.ndarray, query_ids: np.ndarray, background: int = -1) -> tuple:
    """context_ids (H, W), query_ids (Q, H, W) the part seen at each pixel (`background` for none)
    -> seen, unseen (Q, H, W) bool: the query pixels that show a part the context view shows (on at
    least SEEN_PIXELS pixels), and those that show a part it does not."""
    counts = views_seeing(context_ids[None], query_ids, background)
    return counts == 1, counts == 0


def pixel_spread(samples: torch.Tensor) -> torch.Tensor:
    """samples (S, ..., 3, H, W) -> (..., H, W): the standard deviation over S, mean over colours."""
    if samples.shape[0] < 2:
        raise GQNError(f"a spread needs at least 2 samples, got {samples.shape[0]}")
    return samples.std(0).mean(-3)


def segmented_scenes(dataset: str, scenes: int, seed: int = SEED) -> Iterator[tuple]:
    """`scenes` fresh scenes of `dataset`, each as x (V, 3, H, W) in [0, 1], v (V, 7) and the part
    (MuJoCo geom) seen at each pixel of each view, ids (V, H, W) (-1 for none)."""
    if scenes < 1:
        raise GQNError(f"--scenes must be at least 1, got {scenes}")
    choose_gl()
    family = make_family(dataset)
    rng = np.random.default_rng(seed)
    try:
        for _ in range(scenes):
            scene = family.scene(rng)
            ids = family.renderer.segment(scene.cameras)  # (V, H, W)
            batch = {
                "frames": torch.from_numpy(scene.frames)[None],
                "cameras": torch.from_numpy(scene.cameras)[None],
            }
            x, v = (t[0] for t in view_inputs(batch))  # (V, 3, H, W), (V, 7)
            yield x, v, ids
    finally:
        family.close()


def measure(model: GQN, dataset: str, scenes: int = 20, samples: int = 8, seed: int = SEED) -> dict:
    """The mean spread of `samples` prior samples over the seen and the unseen pixels of the queries
    of `scenes` fresh scenes of `dataset` with one context view, and their ratio (unseen / seen)."""
    generator = torch.Generator().manual_seed(seed)
    totals = {"seen": [0.0, 0], "unseen": [0.0, 0]}
    model.eval()
    for x, v, ids in segmented_scenes(dataset, scenes, seed):
        masks = dict(zip(("seen", "unseen"), visibility(ids[0], ids[1:])))
        queries = len(x) - 1
        context_x, context_v = x[:1].expand(queries, -1, -1, -1)[:, None], v[:1].expand(queries, -1)[:, None]
        draws = torch.stack(
            [
                model.sample(
                    context_x,
                    context_v,
                    v[1:],
                    noise=torch.randn(model.noise_shape(queries, *x.shape[2:]), generator=generator),
                )
                for _ in range(samples)
            ]
        )  # (S, Q, 3, H, W)
        spread = pixel_spread(draws).numpy()  # (Q, H, W)
        for name, mask in masks.items():
            totals[name][0] += float(spread[mask].sum())
            totals[name][1] += int(mask.sum())
    if not totals["seen"][1] or not totals["unseen"][1]:
        raise GQNError(
            f"{scenes} scenes of {dataset} gave no {'seen' if not totals['seen'][1] else 'unseen'} pixels"
        )
    seen, unseen = (totals[k][0] / totals[k][1] for k in ("seen", "unseen"))
    return {
        "dataset": dataset,
        "scenes": scenes,
        "samples": samples,
        "seen_spread": seen,
        "unseen_spread": unseen,
        "ratio": unseen / seen if seen > 0 else float("inf"),
        "seen_pixels": totals["seen"][1],
        "unseen_pixels": totals["unseen"][1],
    }
