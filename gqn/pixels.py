"""Pixel-level evidence: what the context views saw where each output pixel's ray meets the scene.

The representation and the generator work on the H/4 x W/4 grid (H/grid_scale), so alone they
must invent every edge. The context views hold the sharp colours at full resolution, and the
cameras say exactly where each query pixel's ray lands in them. For every output pixel this module:

  1. samples the pixel's ray at D depths between the scene's near and far bounds (evenly, or with
     `sampling` "coarse" where the coarse epipolar attention of the pixel's cell puts its weight,
     as NeRF's fine pass does: `coarse_depths`) and projects each point into every context view
     (`gqn.epipolar.gather`, at full resolution: colours and a few learned features, read
     bilinearly);
  2. at each depth, pools the views robustly: each view is weighed by how well it agrees with the
     others there (an occluded view reads the occluder and disagrees) and by how nearly its ray
     runs along the query's (IBRNet, Wang et al. 2021, weighs observed colours likewise), and with
     `visibility` by whether the point lies behind the surface that view itself sees (its depth
     from the coarse epipolar attention with the other views as context: a depth test, as shadow
     maps do); the pooled features, their spread over the views and the fraction of views that see
     the point are scored;
  3. a softmax over the D depths (attention along the ray, as the coarse epipolar representation
     does per cell, whose own weights over depth enter as a prior) picks where the ray meets the
     surface, and gives the pixel its evidence: the colour the views saw there, how much they
     agree, how many saw it, the depth and how sure the choice is. The scores are convolutions
     along the ray, so each depth is judged with what lies before and behind it (the first depth
     where the views agree, not any: free space behind the object agrees on black too). The search
     learns from `search_nll`, the expected error of the colour it copies (its minimum puts all
     the weight on the depth whose colour is the query's, where the error of the expected colour
     would be as happy with a blur of several), or with `search_width` the NLL of the mixture of
     its candidates' colours, whose gradient also reaches a good candidate it gives little weight.
     With `views` and the weighting "transmittance" the depths are composited front to back as
     volume rendering does, and what passes them all sees a learned background (`PixelEvidence`).

`Blend` mixes that evidence into the generator's image: a per-pixel weight alpha (learned from the
canvas u and the evidence) takes the copied colour where the views saw the point and agree, and
the generator's where none did. The generator, inference network and ELBO stay the GQN's, so the
latent z still carries what no context view saw: samples differ there and agree where the views
are clear.

Shapes: B batch, K context views, C pixel features (3 colours first), D depths along each ray,
H x W the query's frame (the context views' too), P = D H W points.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from gqn.cameras import axes, project, rays
from gqn.epipolar import RAY_WEIGHTINGS, X_CHANNELS, along_ray_weights, gather_along_rays
from gqn.errors import GQNError

BLEND_HIDDEN = 32  # channels of the blend's hidden layer
SEEN = -3  # the channel of the evidence that holds the fraction of views that saw the point
SCORE_KERNEL, SCORE_DILATIONS = 5, (1, 2, 4)  # the score's convolutions along the ray: 29 depths seen
SPATIAL_HIDDEN = 32  # channels of the search's pass across neighbouring pixels (`spatial`)
# How the D depths along each pixel's ray are placed: evenly from near to far, or where the coarse
# epipolar attention of the pixel's cell puts its weight (`coarse_depths`)
SAMPLINGS = ("uniform", "coarse")
# With "coarse", this share of each ray's depths still spreads evenly over [near, far], so that a
# surface the coarse attention missed can be found. On the shipped SM weights (20 fresh scenes,
# K = 3, the best of the K D colours as a bound: benchmarks/copy_by_views.py), 0.2 kept the bound
# on cube pixels seen by three views (25.37 against 25.51 dB with 0) and the background's (58.0
# against 48.2 dB).
COARSE_FLOOR = 0.2
# The logit at which the search's probability that a depth stops the ray starts, with weighting
# "transmittance": sigmoid(-2) = 0.12 at each of 16 depths lets 13% of a ray through to
# the background, so that neither the depths nor the background starts with all of the weight.
OCCUPANCY_START = -2.0


class Reading(NamedTuple):
    """What `PixelEvidence` read for N pixels along their rays' D depths. Its D' candidates are
    the D depths (the views' pooled colour at each), or with `views` the K D pairs of a view and a
    depth (that view's own colour there), view-major; with the weighting "transmittance" the
    background last."""

    evidence: torch.Tensor  # (B, C + 4, N), given to the blend
    weights: torch.Tensor  # (B, D', N), the search's weights over its candidates
    colours: torch.Tensor  # (B, 3, D', N), the candidates' colours
    seen: torch.Tensor  # (B, N), 1 where some view sees some point of the ray
    grid: tuple[int, int] | None = None  # (h', w') with h' w' = N if the N pixels are a patch, row-major


class PixelEvidence(nn.Module):
    """context views and cameras, query camera -> `Reading` of N of its pixels."""

    def __init__(
        self,
        channels: int,
        fov: float,
        near: float,
        far: float,
        depths: int,
        spatial: int = 0,
        hidden: int = 32,
        visibility: bool = False,
        views: bool = False,
        sampling: str = "uniform",
        weighting: str = "softmax",
    ):
        super().__init__()
        if weighting not in RAY_WEIGHTINGS:
            raise GQNError(
                f"the search's weighting must be one of {', '.join(RAY_WEIGHTINGS)}, got {weighting!r}"
            )
        if sampling not in SAMPLINGS:
            raise GQNError(
                f"the pixels' depth sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}"
            )
        if views and spatial:
            raise GQNError("the search over views has no spatial pass: set search_spatial 0")
        if weighting == "transmittance" and not views:
            raise GQNError("the search's transmittance needs the search over views: set search_views true")
        self.fov, self.near, self.far, self.depths, self.feature_channels = fov, near, far, depths, channels
        self.views, self.sampling, self.weighting = views, sampling, weighting
        # channels = 3: the colours alone, so nothing read from the views needs a gradient
        self.encoder = (
            nn.Sequential(
                nn.Conv2d(X_CHANNELS, channels, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(channels, channels - X_CHANNELS, 3, padding=1),
            )
            if channels > X_CHANNELS
            else None
        )
        # the pooled features, their spread, fraction seen, depth, prior; with `views` (the search
        # picks a view as well as a depth, each view's candidates scored by the same convolutions)
        # also the views' lowest and highest features there, and the view's own features, their
        # difference from the pooled ones, its facing and whether it sees the point
        width = 2 * channels + 3 + (4 * channels + 2 if views else 0)
        layers = []
        for dilation in SCORE_DILATIONS:  # over (depth, pixel): along each ray, never across pixels
            pad = dilation * (SCORE_KERNEL // 2)
            layers += [nn.Conv2d(width, hidden, (SCORE_KERNEL, 1), padding=(pad, 0), dilation=(dilation, 1))]
            layers += [nn.ReLU(inplace=True)]
            width = hidden
        self.score = nn.Sequential(*layers, nn.Conv2d(width, 1, 1))
        # weighting "transmittance" (with `views`): each depth along the ray stops it with a
        # learned probability and is seen if nothing before it stopped it (volume rendering's
        # compositing, front to back), and what passes every depth sees the background, a candidate of its own whose
        # colour and features are learned (a black void on Shepard-Metzler). The softmax has no such
        # way out: every ray must weigh some depth, and on a background ray the depths whose views
        # agree on black are the right ones, which teaches the search that black agreement is a
        # surface, on the object's rays too. The probability at a depth is the mean over the views
        # that see it of a head on the score's last hidden layer, and the softmax over those views
        # of their scores shares it among them. The prior is an input then, not added to the scores.
        self.background = self.occupancy = None
        if weighting == "transmittance":
            self.background = nn.Parameter(torch.zeros(channels))
            self.occupancy = nn.Conv2d(width, 1, 1)
            nn.init.zeros_(self.occupancy.weight)
            nn.init.constant_(self.occupancy.bias, OCCUPANCY_START)
        # Each view's weight at a point: exp(-agreement * its squared distance from the mean of the
        # views + facing * cos(the angle between its ray and the query's)), over the views that see it.
        self.agreement = nn.Parameter(torch.tensor(1.0))
        self.facing = nn.Parameter(torch.tensor(0.0))
        # spatial = k: the scores over depth of each pixel are corrected from those of its k x k
        # neighbours (two k x k convolutions, the D depths as channels), as stereo matching
        # aggregates its cost volume: a surface's depth varies smoothly from pixel to pixel, where
        # one ray alone is often ambiguous. The last layer starts at zero, so the pass starts as
        # none (and may be grown onto a model without it).
        # visibility: a view whose own surface (`surfaces`) lies nearer to it than the point is
        # taken to be occluded there: its pooling logit loses exp(occlusion) x how far behind the
        # surface the point lies, as a fraction of the depth range, less `margin` (the coarse
        # surface is blurred); both learned, the strength in log space, from 10 and 0.05, so that
        # a point a third of the range behind loses a factor of about e^3.
        self.occlusion = self.margin = None
        if visibility:
            self.occlusion = nn.Parameter(torch.tensor(math.log(10.0)))
            self.margin = nn.Parameter(torch.tensor(0.05))
        self.spatial = None
        if spatial:
            pad = spatial // 2
            self.spatial = nn.Sequential(
                nn.Conv2d(depths, SPATIAL_HIDDEN, spatial, padding=pad),
                nn.ReLU(),
                nn.Conv2d(SPATIAL_HIDDEN, depths, spatial, padding=pad),
            )
            nn.init.zeros_(self.spatial[-1].weight)
            nn.init.zeros_(self.spatial[-1].bias)

    @property
    def channels(self) -> int:
        """C + 4: the evidence's channels (`forward`)."""
        return self.feature_channels + 4

    def along_ray(self, inputs: torch.Tensor) -> torch.Tensor:
        """The score's convolutions along each ray: inputs (B', F, D, N) -> scores (B', D, N), and
        with the `occupancy` head the logits of each depth stopping the ray: (B', 2, D, N). In
        channels-last memory, where oneDNN convolves this shape about twice as fast (forward)."""
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        if self.occupancy is None:
            return self.score(inputs)[:, 0]
        hidden = self.score[:-1](inputs)
        return torch.cat([self.score[-1](hidden), self.occupancy(hidden)], 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, H, W) -> (N, C, H, W): the colours, then learned features."""
        if self.encoder is None:
            return x
        return torch.cat([x.to(self.encoder[0].weight.dtype), self.encoder(x)], 1)

    def forward(
        self,
        context_x: torch.Tensor,
        context_v: torch.Tensor,
        query_v: torch.Tensor,
        prior: torch.Tensor | None = None,
        pixels: torch.Tensor | None = None,
        grid: tuple[int, int] | None = None,
        surfaces: torch.Tensor | None = None,
    ) -> Reading:
        """context_x (B, K, 3, H, W), context_v (B, K, 7), query_v (B, 7), prior (B, D', h, w) the
        coarse weights over D' depths of each cell of the generation grid, or None; pixels (N,)
        indices into the query's H W pixels (row-major), None for all of them; grid (h', w') with
        h' w' = N: the pixels are a patch of the frame, row-major (needed by the spatial pass of
        a subset of the pixels); surfaces (B, K, h, w) the depth each context view sees in each
        cell of its own grid (`gqn.model.GQN`), or None: every view that frames a point sees it
        -> `Reading`, whose
        evidence (B, C + 4, N) is the colour and features the views saw where the ray meets the
        scene (C), their colours' spread over the views (1), the fraction of views that saw it (1),
        its depth from near (0) to far (1) (1), and the largest weight over the candidates (1)."""
        b, k, _, height, width = context_x.shape
        if height != width:
            raise GQNError(f"pixel evidence needs square frames, got {width}x{height}")
        d = self.depths
        features = self.encode(context_x.flatten(0, 1)).unflatten(0, (b, k)).float()  # (B, K, C, H, W)
        origin, direction = rays(query_v.float(), height, self.fov)  # (B, 3), (B, H, W, 3)
        direction = direction.flatten(1, 2)  # (B, HW, 3)
        if pixels is not None:
            direction = direction[:, pixels]  # (B, N, 3)
        n = direction.shape[1]
        if pixels is None:
            grid = (height, width)
        elif grid is not None and grid[0] * grid[1] != n:
            raise GQNError(f"a grid of {grid[0]}x{grid[1]} pixels given for {n} pixels")
        elif self.spatial is not None and grid is None:
            raise GQNError(f"the search's spatial pass needs the {n} pixels' grid, got {grid}")
        if self.sampling == "coarse":
            if prior is None:
                raise GQNError("the coarse sampling of the pixels' rays needs the coarse weights over depth")
            # each of the D depths holds 1/D of the coarse weights' mass: to the search, a uniform prior
            depth = coarse_depths(
                coarse_per_pixel(prior, height, pixels), d, self.near, self.far
            )  # (B, D, N)
        else:
            depth = torch.linspace(self.near, self.far, d, device=query_v.device)
            depth = depth[None, :, None].expand(b, d, n)  # (B, D, N): the same along every ray
        cv = context_v.float()
        values, seen, distance = gather_along_rays(features, cv, origin, direction, depth, self.fov)
        count = seen.sum(1)  # (B, P): values (B, K, C, P), seen and distance (B, K, P), P = D N
        facing = ray_facing(cv, origin, direction, depth, distance)  # (B, K, P)
        occluded = None
        if self.occlusion is not None and surfaces is not None:
            points = (origin[:, None, None] + depth[..., None] * direction[:, None]).flatten(1, 2)
            behind = depth_behind(points, cv, surfaces.float(), self.fov) / (self.far - self.near)
            occluded = self.occlusion.exp() * (behind - self.margin).clamp_min(0)  # (B, K, P)
        pooled, spread = pool_views(values, seen, facing, F.softplus(self.agreement), self.facing, occluded)

        # Attention along each pixel's ray (step 3).
        rel_depth = ((depth - self.near) / (self.far - self.near)).flatten(1)  # (B, P), depth-major
        uniform = prior is None or self.sampling == "coarse"
        prior_logits = 0 * rel_depth if uniform else self._prior(prior, height, pixels).flatten(1)
        shared = torch.cat([pooled, spread, torch.stack([count / k, rel_depth, prior_logits], 1)], 1)
        per_depth = torch.cat(  # what each depth gives the evidence
            [spread[:, :X_CHANNELS].mean(1, keepdim=True), (count / k)[:, None], rel_depth[:, None]], 1
        )  # (B, 3, P)
        if self.views:
            weights, candidates, colours = self._search_views(values, seen, facing, shared, per_depth, (d, n))
        else:
            scores = self.along_ray(shared.view(b, -1, d, n)) + prior_logits.view(b, d, n)
            if self.spatial is not None:
                scores = scores + self.spatial(scores.view(b, d, *grid)).flatten(2)
            weights = scores.softmax(1)  # (B, D, N)
            candidates = torch.cat([pooled, per_depth], 1).view(b, -1, d, n)  # (B, C + 3, D, N)
            colours = pooled[:, :X_CHANNELS].view(b, X_CHANNELS, d, n)
        if self.background is not None:  # what passes every depth: the background, the last candidate
            weights, candidates, colours = self._with_background(weights, candidates, colours)
        evidence = (weights[:, None] * candidates).sum(2)  # (B, C + 3, N); as an einsum, 16,384 tiny matmuls
        evidence = torch.cat([evidence, weights.amax(1, keepdim=True)], 1)
        seen = (count.view(b, d, n) > 0).any(1).to(evidence.dtype)
        return Reading(evidence, weights, colours, seen, grid)

    def _search_views(
        self,
        values: torch.Tensor,
        seen: torch.Tensor,
        facing: torch.Tensor,
        shared: torch.Tensor,
        per_depth: torch.Tensor,
        shape: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The search over (view, depth) pairs: values (B, K, C, P), seen and facing (B, K, P),
        shared (B, 2C + 3, P) the pooled inputs of the search (the prior's logits last), per_depth
        (B, 3, P), shape (D, N) with P = D N -> weights (B, K D, N) over the pairs (0 where the
        view does not frame the point), their evidence (B, C + 3, K D, N) and colours
        (B, 3, K D, N). Each view's own features and how they stand against the others' (their
        lowest and highest, the pooled ones) are scored along its ray by the same convolutions,
        so it serves any K: IBRNet (Wang et al. 2021) likewise picks among the views' own
        colours, not their mean."""
        (b, k, c, _), (d, n) = values.shape, shape
        mask = seen[:, :, None] > 0  # (B, K, 1, P)
        lowest = values.masked_fill(~mask, math.inf).amin(1).nan_to_num(0, posinf=0, neginf=0)
        highest = values.masked_fill(~mask, -math.inf).amax(1).nan_to_num(0, posinf=0, neginf=0)
        shared = torch.cat([shared, lowest, highest], 1)  # (B, 4C + 3, P)
        own = torch.cat(
            [values, (values - shared[:, None, :c]) * mask, facing[:, :, None], seen[:, :, None]], 2
        )
        inputs = torch.cat([own, shared[:, None].expand(-1, k, -1, -1)], 2)  # (B, K, 6C + 5, P)
        out = self.along_ray(inputs.flatten(0, 1).view(b * k, -1, d, n))
        seen = seen.view(b, k, d, n)
        if self.occupancy is None:
            scores = out.view(b, k, d, n) + shared[:, None, 2 * c + 2].view(b, 1, d, n)  # the prior's logits
            weights = scores.masked_fill(seen == 0, -1e4).flatten(1, 2).softmax(1)  # (B, K D, N)
        else:
            scores, stops = out.view(b, k, 2, d, n).unbind(2)
            count = seen.sum(1)  # (B, D, N)
            # each depth's stopping logit: the mean over the views that see it
            stops = (stops.float() * seen).sum(1) / count.clamp_min(1)
            # a depth that no view sees stops nothing
            along = along_ray_weights(stops.masked_fill(count == 0, -1e4), self.weighting)  # (B, D, N)
            among = scores.masked_fill(seen == 0, -1e4).softmax(1)  # (B, K, D, N): which view, at each depth
            weights = (along[:, None] * among * seen).flatten(1, 2)  # (B, K D, N)
        candidates = torch.cat([values, per_depth[:, None].expand(-1, k, -1, -1)], 2)  # (B, K, C + 3, P)
        candidates = candidates.view(b, k, c + 3, d, n).transpose(1, 2).flatten(2, 3)  # (B, C + 3, K D, N)
        return weights, candidates, candidates[:, :X_CHANNELS]

    def _with_background(
        self, weights: torch.Tensor, candidates: torch.Tensor, colours: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The search's weights (B, D', N), its candidates' evidence (B, C + 3, D', N) and colours
        (B, 3, D', N) -> the same with the background as candidate D' + 1: the weight that passed
        every depth, the learned colour and features, no spread, no view that sees it, the far end."""
        b, _, _, n = candidates.shape
        rest = (1 - weights.sum(1, keepdim=True)).clamp_min(0)  # (B, 1, N)
        far = self.background.new_tensor([0.0, 0.0, 1.0])  # spread, fraction seen, depth
        background = torch.cat([self.background, far]).to(candidates.dtype)[None, :, None, None]
        candidates = torch.cat([candidates, background.expand(b, -1, 1, n)], 2)
        colours = torch.cat([colours, background[:, :X_CHANNELS].expand(b, -1, 1, n)], 2)
        return torch.cat([weights, rest], 1), candidates, colours

    def _prior(self, prior: torch.Tensor, size: int, pixels: torch.Tensor | None) -> torch.Tensor:
        """The coarse weights over depth (B, D', h, w) -> their log at this module's D depths for
        each pixel (B, D, N): bilinear over the grid (cell centres), linear along the ray."""
        b, coarse = prior.shape[:2]
        fine = coarse_per_pixel(prior, size, pixels)
        n = fine.shape[2]
        fine = F.interpolate(
            fine.transpose(1, 2).reshape(b * n, 1, coarse),
            size=self.depths,
            mode="linear",
            align_corners=True,  # both depth grids run from near to far inclusive
        )
        return (fine.view(b, n, self.depths).transpose(1, 2) * coarse).clamp_min(1e-4).log()  # 0: uniform


def coarse_per_pixel(prior: torch.Tensor, size: int, pixels: torch.Tensor | None) -> torch.Tensor:
    """The coarse weights over depth (B, D', h, w) -> those of each of the pixels (N,) of the
    size x size frame (None: all) (B, D', N): bilinear over the grid (cell centres)."""
    fine = F.interpolate(prior.float(), size=(size, size), mode="bilinear", align_corners=False)
    fine = fine.flatten(2)  # (B, D', HW)
    return fine if pixels is None else fine[:, :, pixels]


def coarse_depths(
    weights: torch.Tensor, depths: int, near: float, far: float, floor: float = COARSE_FLOOR
) -> torch.Tensor:
    """Depths along each pixel's ray where its coarse weights put their mass (NeRF's hierarchical
    sampling, Mildenhall et al. 2020, made deterministic: the same depths every pass, in order).

    weights (B, D', N) over D' depths evenly from near to far, of N pixels -> (B, D, N) the depths
    at the quantiles (i + 1/2) / D, i < D, of (1 - floor) x the weights + floor x uniform
    (COARSE_FLOOR in the model), each weight spread evenly over its depth's bin (half-way to its
    neighbours, and as wide at the ends, so that even weights give even depths), within
    [near, far]. Not differentiated: they say where to look."""
    weights = weights.detach().float()
    b, coarse, n = weights.shape
    density = weights / weights.sum(1, keepdim=True).clamp_min(1e-12)  # transmittance may sum to < 1
    width = (far - near) / max(coarse - 1, 1)
    bounds = torch.linspace(near - width / 2, far + width / 2, coarse + 1, device=weights.device)  # (D' + 1,)
    mass = (1 - floor) * density + floor / coarse
    cdf = torch.cat([mass.new_zeros(b, 1, n), mass.cumsum(1)], 1).transpose(1, 2)  # (B, N, D' + 1)
    cdf = cdf / cdf[..., -1:]
    quantiles = (torch.arange(depths, device=weights.device, dtype=cdf.dtype) + 0.5) / depths
    quantiles = quantiles.expand(b, n, depths).contiguous()
    bin_ = (torch.searchsorted(cdf.contiguous(), quantiles, right=True) - 1).clamp(0, coarse - 1)  # (B, N, D)
    start, end = cdf.gather(2, bin_), cdf.gather(2, bin_ + 1)
    within = ((quantiles - start) / (end - start).clamp_min(1e-12)).clamp(0, 1)
    return (bounds[bin_] + within * width).clamp(near, far).transpose(1, 2).contiguous()  # (B, D, N)


def training_pixels(
    height: int, width: int, fraction: float, patch: bool, device: torch.device | str | None = None
) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """The pixels (N,) (row-major indices) whose evidence a training step reads: a random `fraction`
    of the H W, scattered, or with `patch` a random square-ish patch of that share of the frame,
    given with its grid (h', w'), so that the search's spatial pass sees each pixel's neighbours."""
    n = height * width
    if not patch:
        return torch.randperm(n, device=device)[: max(1, round(n * fraction))], None
    rows, cols = max(1, round(height * fraction**0.5)), max(1, round(width * fraction**0.5))
    top = int(torch.randint(height - rows + 1, (), device=device))
    left = int(torch.randint(width - cols + 1, (), device=device))
    r = torch.arange(top, top + rows, device=device)
    c = torch.arange(left, left + cols, device=device)
    return (r[:, None] * width + c).flatten(), (rows, cols)


def search_nll(x: torch.Tensor, reading: Reading, sigma: float, width: float = 0.0) -> torch.Tensor:
    """The query's colours x (B, 3, N) at the reading's pixels -> (B,): the search's loss over the
    pixels some view sees. width 0: the expected Gaussian NLL (data term) of the colour it copies,
    sum over candidates d of w_d |x - c_d|^2 / 2 sigma^2, whose minimum puts all the weight on the
    best candidate, but whose gradient on a candidate's logit, w_d (e_d - mean e), vanishes for a
    good one the search gives little weight. width s > 0: the NLL of the mixture of Gaussians of
    width s about the candidates, -log sum_d w_d exp(-|x - c_d|^2 / 2 s^2), times (s / sigma)^2 so
    that it is in the same units (no more than the expected error, by Jensen, and equal to it as s
    grows); its gradient on a logit is (s / sigma)^2 (w_d - posterior_d), and the posterior goes
    to the candidates that hold x, whatever their weight."""
    error = (reading.colours - x[:, :, None].to(reading.colours.dtype)).square().sum(1)  # (B, D', N)
    if width <= 0:
        per_pixel = (reading.weights * error).sum(1) / (2 * sigma**2)
    else:
        w = reading.weights.float()
        tiny = torch.finfo(torch.float32).tiny
        log_w = w.clamp_min(tiny).log().masked_fill(w == 0, -math.inf)  # 0: a view that frames no point
        per_pixel = -(log_w - error / (2 * width**2)).logsumexp(1) * (width / sigma) ** 2
        per_pixel = per_pixel.masked_fill(reading.seen == 0, 0)  # not inf x 0
    return (per_pixel * reading.seen).sum(1)


def ray_facing(
    context_v: torch.Tensor,
    origin: torch.Tensor,
    direction: torch.Tensor,
    depth: torch.Tensor,
    distance: torch.Tensor,
) -> torch.Tensor:
    """How nearly each view looks along the query's rays: context_v (B, K, 7), the query's rays
    origin (B, 3) and direction (B, N, 3), depth (B, D, N) along each ray, distance (B, K, P) of each point from each
    view (`gather_along_rays`) -> (B, K, P), the cosine between view k's ray to a point and the
    query's, (p - c) . u / |p - c| with u the ray's unit direction, where (p - c) . u is
    (o - c) . u + d |direction|: computed once per ray, not per point."""
    unit = F.normalize(direction, dim=-1)  # (B, N, 3)
    ahead = (origin[:, None] - axes(context_v)[0]) @ unit.transpose(1, 2)  # (B, K, N): (o - c) . u
    along = depth * direction.norm(dim=-1)[:, None]  # (B, D, N)
    return (ahead[:, :, None] + along[:, None]).flatten(2) / distance.clamp_min(1e-12)


def pool_views(
    values: torch.Tensor,
    seen: torch.Tensor,
    facing: torch.Tensor,
    agreement: torch.Tensor | float,
    facing_weight: torch.Tensor | float,
    occluded: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool what K views read at P points, robustly (step 2).

    values (B, K, C, P) (zero where unseen), seen (B, K, P) in {0, 1}, facing (B, K, P) the cosine
    between each view's ray to the point and the query's, occluded (B, K, P) or None, how much
    each view is taken to be occluded there -> pooled (B, C, P), the views weighed by
    softmax(facing_weight * facing - agreement * |value - mean of the views|^2 - occluded) over
    those that see the point (zero where none does), and spread (B, C, P), the views' standard
    deviation.
    """
    count = seen.sum(1).clamp_min(1)[:, None]  # (B, 1, P)
    mean = values.sum(1) / count  # (B, C, P)
    deviation = (values - mean[:, None]).square_().mul_(seen[:, :, None])  # (B, K, C, P)
    spread = deviation.sum(1).div_(count).add_(1e-6).sqrt_()
    logits = facing_weight * facing - agreement * deviation.sum(2)  # (B, K, P)
    if occluded is not None:
        logits = logits - occluded
    weights = logits.masked_fill(seen == 0, -1e4).softmax(1) * seen
    return (weights[:, :, None] * values).sum(1), spread


def depth_behind(
    points: torch.Tensor, context_v: torch.Tensor, surfaces: torch.Tensor, fov: float
) -> torch.Tensor:
    """How far behind what each view sees each point lies: points (B, P, 3), context_v (B, K, 7),
    surfaces (B, K, h, w) the depth each view sees in each cell of its frame -> (B, K, P), the
    point's depth in view k less the surface's where the point lands (bilinear; the nearest edge
    cell outside the frame): > 0 behind the surface, < 0 in front of it."""
    b, k = surfaces.shape[:2]
    where, depth = project(points[:, None].expand(b, k, -1, 3), context_v, fov)  # (B, K, P, 2), (B, K, P)
    surface = F.grid_sample(
        surfaces.flatten(0, 1)[:, None],  # (BK, 1, h, w)
        where.flatten(0, 1)[:, :, None].to(surfaces.dtype),  # (BK, P, 1, 2)
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )[:, 0, :, 0].unflatten(0, (b, k))  # (B, K, P)
    return depth - surface


class Blend(nn.Module):
    """The generator's image and the pixel evidence -> the mean image: alpha copies what the views saw.

    mean = g + alpha (copied - g) at each pixel, alpha in [0, 1] from that pixel's canvas u and
    evidence; alpha is 0 where no context view sees any point of the pixel's ray, so there the
    image is the generator's alone. Per pixel, so that training may read a subset of pixels.

    With `spatial` = k, a pass over each pixel's neighbourhood (two k x k convolutions over the
    canvas, the evidence and g) corrects alpha's logit and g's colour, where some view sees the
    ray: the per-pixel choice cannot see that its neighbours copied an edge, nor draw one that the
    16 x 16 generator blurred. Its last layer starts at zero, so the pass starts as none (and may
    be grown onto a model without it); training then reads a patch.
    """

    def __init__(self, u_channels: int, evidence_channels: int, spatial: int = 0):
        super().__init__()
        self.alpha = nn.Sequential(
            nn.Linear(u_channels + evidence_channels, BLEND_HIDDEN), nn.ReLU(), nn.Linear(BLEND_HIDDEN, 1)
        )
        self.spatial = None
        if spatial:
            pad = spatial // 2
            self.spatial = nn.Sequential(
                nn.Conv2d(u_channels + evidence_channels + X_CHANNELS, BLEND_HIDDEN, spatial, padding=pad),
                nn.ReLU(),
                nn.Conv2d(BLEND_HIDDEN, BLEND_HIDDEN, spatial, padding=pad),
                nn.ReLU(),
                nn.Conv2d(BLEND_HIDDEN, 1 + X_CHANNELS, 1),  # alpha's logit, a colour
            )
            nn.init.zeros_(self.spatial[-1].weight)
            nn.init.zeros_(self.spatial[-1].bias)

    def forward(
        self,
        g: torch.Tensor,
        u: torch.Tensor,
        evidence: torch.Tensor,
        pixels: torch.Tensor | None = None,
        grid: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """g (B, 3, H, W) the generator's image, u (B, Cu, H, W) its canvas, evidence (B, E, N) of
        the pixels (N,) (`PixelEvidence`; None: all H W), grid (h', w') if they are a patch of the
        frame, row-major (needed by the spatial pass) -> the mean image (B, 3, H, W), the
        generator's own at the pixels not given."""
        g_flat, u_flat = g.flatten(2), u.flatten(2)
        if pixels is not None:
            g_flat, u_flat = g_flat[:, :, pixels], u_flat[:, :, pixels]
        copied, seen = evidence[:, :X_CHANNELS].to(g.dtype), (evidence[:, SEEN : SEEN + 1] > 0)
        inputs = torch.cat([u_flat, evidence.to(u.dtype)], 1)  # (B, Cu + E, N)
        logit = self.alpha(inputs.transpose(1, 2)).transpose(1, 2)  # (B, 1, N)
        if self.spatial is not None:
            n = inputs.shape[2]
            if pixels is None:
                grid = g.shape[2:]
            elif grid is None or grid[0] * grid[1] != n:
                raise GQNError(f"the blend's spatial pass needs the {n} pixels' grid, got {grid}")
            maps = torch.cat([inputs, g_flat.to(inputs.dtype)], 1).unflatten(2, tuple(grid))
            correction = self.spatial(maps).flatten(2).to(g.dtype)  # (B, 1 + 3, N)
            logit = logit + correction[:, :1]
            g_flat = g_flat + correction[:, 1:] * seen
        alpha = torch.sigmoid(logit) * seen  # (B, 1, N)
        blended = g_flat + alpha * (copied - g_flat)
        if pixels is None:
            return blended.view_as(g)
        return g.flatten(2).index_copy(2, pixels, blended).view_as(g)
