"""Novel views of a scene from a trained GQN: what `gqn render`, `gqn view` and `gqn demo` draw.

    from gqn.cameras import orbit_cameras
    from gqn.data.table import camera_path
    from gqn.novel_views import render_grid, render_orbit
    render_grid(model, scene.frames, scene.cameras, context=3, samples=4, seed=0)  # a PIL image
    render_orbit(model, scene.frames, scene.cameras, orbit_cameras(camera_path(name)))  # (N, H, W, 3)

Scenes come as frames (V, H, W, 3) uint8 and cameras (V, 5). What draws z (prior samples, the
posterior's reconstruction) draws its noise from a generator of its own seed, never from torch's
global RNG: the same seed gives the same pictures, whatever else has run.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from gqn.cameras import viewpoints
from gqn.data import view_inputs
from gqn.errors import GQNError
from gqn.fields import check
from gqn.images import grid
from gqn.model import GQN


def one_scene(frames: np.ndarray, cameras: np.ndarray) -> dict[str, torch.Tensor]:
    """A scene's frames (V, H, W, 3) uint8 and cameras (V, 5) as a batch of one, for
    `gqn.data.view_inputs`."""
    return {"frames": torch.from_numpy(frames)[None], "cameras": torch.from_numpy(cameras)[None]}


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] -> (N, H, W, 3) uint8."""
    return (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def z_noise(model: GQN, draws: int, image: tuple[int, int], seed: int) -> torch.Tensor:
    """Noise for z of `draws` images (H, W): (L, draws, Cz, h, w), draw i the same whatever the
    number of draws."""
    generator = torch.Generator().manual_seed(seed)
    return torch.cat(
        [torch.randn(model.noise_shape(1, *image), generator=generator) for _ in range(draws)], 1
    )


@torch.no_grad()
def predict(
    model: GQN, frames: np.ndarray, cameras: np.ndarray, context: int = 3, samples: int = 4, seed: int = 0
) -> dict[str, torch.Tensor]:
    """View 0 predicted from views 1..context: each entry (N, 3, H, W) in [0, 1]: "context", "truth",
    "posterior", "prior_mean", "samples" (prior draws) and "std" (their per-pixel spread, grey,
    scaled to its maximum). `seed` seeds the posterior's draw and the prior's."""
    if not 1 <= context < len(frames):
        raise GQNError(f"--context {context}: the scene has {len(frames)} views, so 1..{len(frames) - 1}")
    check("--samples", samples, "int", min=0)
    check("--seed", seed, "int", min=0)
    x, v = view_inputs(one_scene(frames, cameras))
    cx, cv, qx, qv = x[:, 1 : context + 1], v[:, 1 : context + 1], x[:, 0], v[:, 0]
    noise = z_noise(model, 1 + samples, qx.shape[2:], seed)  # the posterior's, then the samples'
    if samples:
        n = (samples, -1)
        draws = model.sample(cx.expand(*n, -1, -1, -1), cv.expand(*n, -1), qv.expand(*n), noise=noise[:, 1:])
    else:
        draws = qx[:0]
    std = draws.std(0, keepdim=True) if samples > 1 else torch.zeros_like(qx)
    std = (std.mean(1, keepdim=True) / max(std.max().item(), 1e-6)).expand(-1, 3, -1, -1)
    return {
        "context": cx[0],
        "truth": qx,
        # through the model's ELBO, which takes the posterior's noise (sigma only scales its NLL)
        "posterior": model(cx, cv, qx, qv, sigma=1.0, noise=noise[:, :1])["mean"].clamp(0, 1),
        "prior_mean": model.sample(cx, cv, qv, use_mean=True),
        "samples": draws,
        "std": std[:0] if samples == 0 else std,
    }


def render_grid(
    model: GQN, frames: np.ndarray, cameras: np.ndarray, context: int = 3, samples: int = 4, seed: int = 0
) -> Image.Image:
    """One row: context views | truth | posterior | prior mean | prior samples | their spread."""
    return grid_image(predict(model, frames, cameras, context, samples, seed))


def grid_image(p: dict[str, torch.Tensor]) -> Image.Image:
    """The tiles of `predict` in one captioned row."""
    captions = [f"context {i + 1}" for i in range(len(p["context"]))] + ["truth", "posterior", "prior mean"]
    captions += [f"sample {i + 1}" for i in range(len(p["samples"]))] + (
        ["sample std"] if len(p["std"]) else []
    )
    order = ("context", "truth", "posterior", "prior_mean", "samples", "std")
    tiles = torch.cat([p[k] for k in order])
    return grid(to_uint8(tiles), len(captions), captions, scale=2)


@torch.no_grad()
def render_orbit(
    model: GQN, frames: np.ndarray, cameras: np.ndarray, orbit: np.ndarray, context: int = 3
) -> np.ndarray:
    """Prior-mean predictions (len(orbit), H, W, 3) uint8 at the cameras `orbit` (N, 5) from the
    first `context` views."""
    x, v = view_inputs(one_scene(frames[:context], cameras[:context]))
    out = []
    for chunk in np.array_split(orbit, max(1, len(orbit) // 16)):
        qv = viewpoints(torch.from_numpy(chunk).float())
        n = len(chunk)
        out.append(model.sample(x.expand(n, -1, -1, -1, -1), v.expand(n, -1, -1), qv, use_mean=True))
    return to_uint8(torch.cat(out))


@torch.no_grad()
def render_view(
    model: GQN, frames: np.ndarray, cameras: np.ndarray, camera: np.ndarray, seed: int | None = None
) -> np.ndarray:
    """The prediction (H, W, 3) uint8 at `camera` (5,) from context `frames` (K, H, W, 3) and
    `cameras` (K, 5): with z at the prior mean, or drawn from the prior under `seed`."""
    x, v = view_inputs(one_scene(frames, cameras))
    query = viewpoints(torch.from_numpy(np.asarray(camera, np.float32)[None]))
    if seed is None:
        return to_uint8(model.sample(x, v, query, use_mean=True))[0]
    noise = z_noise(model, 1, x.shape[3:], seed)
    return to_uint8(model.sample(x, v, query, noise=noise))[0]
