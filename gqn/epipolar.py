"""A geometry-aware scene representation: features gathered along each query ray's epipolar lines.

After Tobin, Zaremba and Abbeel, "Geometry-Aware Neural Rendering" (E-GQN, NeurIPS 2019): instead
of one representation summed over the context views, each cell of the query's generation grid
gets its own, built from what the context views saw along that cell's ray. The cameras are known
exactly, so where a point of the ray lands in a context view (its epipolar line) is computed by
`gqn.cameras`, not learned:

  1. every context view is encoded once to a feature map F_k (at half resolution, its colours
     kept beside the learned features);
  2. the ray through each cell's centre is sampled at D depths between the scene's near and far
     bounds; each point is projected into every context view and F_k read there (bilinear);
  3. at each depth the views are pooled: the mean and the spread of their features (a surface
     point looks alike from every view that sees it; a point in empty space does not), and the
     fraction of views that see the point at all;
  4. a small network scores each depth from those, and a softmax over the D depths weighs them
     (attention along the ray, as E-GQN's epipolar attention), or with `ray_weighting=
     "transmittance"` each depth is opaque with a learned probability and composited front to
     back, as volume rendering does;
  5. the weighted mean and spread, the expected depth and the ray's direction become r for the
     cell through a 1x1 convolution.

The generation network, the inference network and the ELBO take r as they take the tower's.

Shapes: B batch, K context views, C feature channels, D depths along each ray, h x w the query's
generation grid (H/4 x W/4 at the paper's grid_scale), H' x W' the feature maps (H/2 x W/2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gqn.cameras import project, project_rays, rays
from gqn.errors import GQNError

X_CHANNELS = 3  # colour channels of a frame
RAY_WEIGHTINGS = ("softmax", "transmittance")
MIN_DEPTH = 1e-2  # a point closer to a context camera than this (or behind it) is not seen by it


def gather(
    features: torch.Tensor, context_v: torch.Tensor, points: torch.Tensor, fov: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read each context view's feature map where each point lands in that view.

    features (B, K, C, H', W'), context_v (B, K, 7), points (B, P, 3) ->
    values (B, K, C, P) (bilinear, zero outside the frame) and seen (B, K, P), 1 where the point
    is in front of view k and inside its frame, else 0.
    """
    b, k = features.shape[:2]
    grid, depth = project(points[:, None].expand(b, k, -1, 3), context_v, fov)  # (B, K, P, 2), (B, K, P)
    return read(features, grid, depth)


def gather_along_rays(
    features: torch.Tensor,
    context_v: torch.Tensor,
    origin: torch.Tensor,
    direction: torch.Tensor,
    depth: torch.Tensor,
    fov: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`gather` at the points origin + d direction, d in `depth`, of rays (`project_rays`: the
    points are never formed) -> values (B, K, C, P), seen (B, K, P), and the points' distance from
    each context camera (B, K, P); origin (B, 3), direction (B, N, 3), depth (D,) or each ray's
    own (B, D, N), P = D N depth-major."""
    grid, along, distance = project_rays(origin, direction, depth, context_v, fov)
    return (*read(features, grid, along), distance)


def read(
    features: torch.Tensor, grid: torch.Tensor, depth: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """features (B, K, C, H', W'), grid (B, K, P, 2) where P points land in each view (`project`),
    depth (B, K, P) their depth in it -> values (B, K, C, P) (bilinear; zero where the view does
    not see the point) and seen (B, K, P) in {0, 1}."""
    b, k = features.shape[:2]
    values = F.grid_sample(
        features.flatten(0, 1),
        grid.flatten(0, 1)[:, :, None].to(features.dtype),  # (BK, P, 1, 2)
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )  # (BK, C, P, 1)
    x, y = grid.unbind(-1)
    inside = (x.abs() <= 1) & (y.abs() <= 1) & (depth > MIN_DEPTH)
    seen = inside.to(values.dtype)
    return values[..., 0].unflatten(0, (b, k)) * seen[:, :, None], seen


def along_ray_weights(logits: torch.Tensor, weighting: str) -> torch.Tensor:
    """logits (..., D, .) of the depths along rays, nearest first -> weights (..., D, .).

    softmax: attention over depth, weights sum to 1. transmittance: each depth is opaque with
    probability sigmoid(logit) and seen if nothing before it was, w_d = a_d prod_{e<d} (1 - a_e)
    (volume rendering's compositing), so a ray through empty space can weigh nothing at all.
    """
    if weighting == "softmax":
        return logits.softmax(-2)
    alpha = torch.sigmoid(logits)
    through = torch.cumprod(1 - alpha, -2)
    before = torch.cat([torch.ones_like(through[..., :1, :]), through[..., :-1, :]], -2)
    return alpha * before


class Epipolar(nn.Module):
    """context views and cameras, query camera -> r (B, Cr, h, w), one representation per cell."""

    def __init__(self, r: int, fov: float, near: float, far: float, depths: int, weighting: str = "softmax"):
        super().__init__()
        self.fov, self.near, self.far, self.depths, self.weighting = fov, near, far, depths, weighting
        c = r // 2  # features per view; the pooled mean and spread make r channels again
        self.encoder = nn.Sequential(
            nn.Conv2d(X_CHANNELS, c, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c, c, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c, c - X_CHANNELS, 3, padding=1),
        )
        pooled = 2 * c + 2  # mean, spread, fraction of views that see the point, depth
        self.score = nn.Sequential(nn.Linear(pooled, c), nn.ReLU(), nn.Linear(c, 1))
        self.out = nn.Conv2d(2 * c + 1 + 3, r, 1)  # weighted mean, spread, depth; ray direction

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, H, W) -> F (N, C, H/2, W/2): learned features and the colours, side by side."""
        return torch.cat([self.encoder(x), F.avg_pool2d(x, 2).to(self.encoder[0].weight.dtype)], 1)

    def forward(
        self,
        context_x: torch.Tensor,
        context_v: torch.Tensor,
        query_v: torch.Tensor,
        grid: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """context_x (B, K, 3, H, W), context_v (B, K, 7), query_v (B, 7) -> r (B, Cr, h, w) and
        the weights over depth of each cell's ray (B, D, h, w), nearest first."""
        b, k = context_x.shape[:2]
        h, w = grid
        if h != w:
            raise GQNError(f"the epipolar representation needs a square grid, got {h}x{w}")
        features = self.encode(context_x.flatten(0, 1)).unflatten(0, (b, k))  # (B, K, C, H', W')
        origin, direction = rays(query_v.float(), h, self.fov)  # (B, 3), (B, h, w, 3)
        depth = torch.linspace(self.near, self.far, self.depths, device=query_v.device)  # (D,)
        values, seen, _ = gather_along_rays(
            features, context_v.float(), origin, direction.flatten(1, 2), depth, self.fov
        )
        values = values.float()  # (B, K, C, P), P = D h w; zero where view k does not see the point
        count = seen.float().sum(1, keepdim=True)  # (B, 1, P)
        mean = values.sum(1) / count.clamp_min(1)  # (B, C, P): over the views that see the point
        spread = ((values**2).sum(1) / count.clamp_min(1) - mean**2).clamp_min(0).add(1e-6).sqrt()
        rel_depth = ((depth - self.near) / (self.far - self.near)).repeat_interleave(h * w)  # (P,)
        rel_depth = rel_depth.expand(b, 1, -1)  # (B, 1, P)
        pooled = torch.cat([mean, spread, count / k, rel_depth], 1)  # (B, 2C + 2, P)
        logits = self.score(pooled.transpose(1, 2))  # (B, P, 1)
        weights = along_ray_weights(logits.float().view(b, 1, self.depths, h * w), self.weighting)
        features = torch.cat([mean, spread, rel_depth], 1).view(b, -1, self.depths, h * w)
        along_ray = (weights * features).sum(2).view(b, -1, h, w)  # (B, 2C + 1, h, w)
        ray = F.normalize(direction, dim=-1).permute(0, 3, 1, 2)  # (B, 3, h, w)
        return self.out(torch.cat([along_ray, ray], 1)), weights.view(b, self.depths, h, w)
