"""The Generative Query Network (Eslami et al., "Neural scene representation and rendering",
Science 2018): representation network, generation network, inference network and the ELBO.

Shapes, used throughout this file:
  B batch, K context views, H x W frames (3 channels), h x w = H/s x W/s the generation grid
  (s = grid_scale, the paper's 4),
  L generation steps, Cr representation channels, Ch LSTM hidden channels, Cu canvas channels,
  Cz latent channels. v is the 7-D viewpoint (x, y, z, sin yaw, cos yaw, sin pitch, cos pitch).

    model = GQN(PRESETS["small"])
    out = model(context_x, context_v, query_x, query_v, sigma=0.7)   # out["loss"], ["nll"], ["kl"]
    x = model.sample(context_x, context_v, query_v)                  # a draw from the prior

The generation loop follows the supplementary material's pseudo-code: at step l the prior comes
from the generator state h_g, the inference core sees [x_q, v_q, r, h_g, u] and gives the
posterior, z ~ posterior, the generator core takes [v_q, r, z], and the canvas grows by a
transposed convolution of the new h_g. The mean image is a 1x1 convolution of the final canvas.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from gqn.epipolar import RAY_WEIGHTINGS, X_CHANNELS, Epipolar
from gqn.errors import GQNError
from gqn.fields import check_fields, from_dict
from gqn.pixels import SAMPLINGS, Blend, PixelEvidence, Reading, search_nll, training_pixels

V_DIM = 7  # the official viewpoint encoding
SCALE = 4  # the tower's r is at 1/4 of the frame, and the default grid_scale (the paper's grid)


@dataclass(frozen=True)
class GQNConfig:
    # frames the model learned from (H = W; gqn train sets it); any multiple of grid_scale runs
    image_size: int = field(default=64, metadata={"min": 8})
    # "tower", "pool" (tower, averaged to 1x1), "pyramid" (the paper's three), or "epipolar"
    # (E-GQN: one r per cell of the query's grid, gathered along its ray; gqn/epipolar.py)
    representation: str = "tower"
    r_channels: int = field(default=256, metadata={"min": 8})  # Cr: channels of r (the pyramid's first: Cr/8)
    h_channels: int = field(default=256, metadata={"min": 1})  # Ch: hidden (and cell) channels of both cores
    u_channels: int = field(default=256, metadata={"min": 1})  # Cu: channels of the canvas u, at full size
    z_channels: int = field(default=64, metadata={"min": 1})  # Cz: latent channels per grid position and step
    L: int = field(default=12, metadata={"min": 1})  # generation steps
    # the cores' convolutions, and the prior's and posterior's; odd, so that padding keeps the grid
    kernel_size: int = field(default=5, metadata={"min": 1, "odd": True})
    shared_core: bool = True  # one generation and one inference core for all L steps, or L of each
    # The cameras' geometry, used by the epipolar representation only (gqn train takes them from
    # the dataset's description, gqn.data.DATASETS, unless a config file sets them):
    fov: float | None = field(default=None, metadata={"above": 0, "below": 180})  # of the frames, degrees
    near: float | None = field(default=None, metadata={"above": 0})  # the scene lies between these depths
    far: float | None = field(default=None, metadata={"above": 0})  # from any camera
    depth_samples: int = field(default=32, metadata={"min": 1})  # D: points sampled along each query ray
    # how depths along a ray are weighed: "softmax" or "transmittance"
    ray_weighting: str = field(default="softmax", metadata={"choices": RAY_WEIGHTINGS})
    # Pixel-level evidence (gqn/pixels.py): each output pixel's ray is sampled at this many depths
    # and read in the context views at full resolution, and what the views saw is blended into the
    # generator's image; 0: none (the paper's model, E-GQN). It needs the cameras as epipolar does.
    pixel_depths: int = field(default=0, metadata={"min": 0})
    # C: features per view and pixel: the 3 colours and C - 3 learned ones (3: the colours alone)
    pixel_channels: int = field(default=3, metadata={"min": 3})
    # the share of pixels whose evidence is read in a training step (a fresh random set each step;
    # the rest are the generator's alone); every pixel at eval and render
    pixel_fraction: float = field(default=1.0, metadata={"above": 0, "max": 1})
    # k: the search along each pixel's ray also weighs the scores of its k x k neighbours (odd;
    # 0: each ray alone); training then reads a random square patch of pixel_fraction of the
    # frame, not a random scatter, so that the pixels it reads have their neighbours
    search_spatial: int = field(default=0, metadata={"min": 0})
    # hidden channels of the search's convolutions along each ray (its cost: their square, times
    # pixel_depths, for every pixel of every view drawn)
    search_hidden: int = field(default=32, metadata={"min": 1})
    # per-view visibility in the pixel evidence: each context view's own surface depth (the coarse
    # epipolar attention from the other context views) tells where it is occluded (epipolar only)
    pixel_visibility: bool = False
    # the search along each pixel's ray picks a context view as well as a depth, and copies that
    # view's own colour there, not the views' pooled one (no spatial pass)
    search_views: bool = False
    # s: the search's loss. 0: the expected error of the colour it copies, sum_d w_d |x - c_d|^2 /
    # 2 sigma^2; s > 0: the NLL of a mixture of Gaussians of width s about its candidates'
    # colours, -log sum_d w_d exp(-|x - c_d|^2 / 2 s^2), times (s / sigma)^2 (the same units: it
    # tends to the expected error as s grows). Its gradient reaches a good candidate however little
    # weight it has
    search_width: float = field(default=0.0, metadata={"min": 0})
    # where each pixel's D depths lie along its ray: "uniform", evenly from near to far, or
    # "coarse", where the coarse epipolar attention of its cell puts its weight (NeRF's fine pass;
    # epipolar only), so that the same D look more closely where the surface is
    pixel_sampling: str = field(default="uniform", metadata={"choices": SAMPLINGS})
    # how the search weighs its candidates along each pixel's ray: "softmax" (every ray weighs
    # some depth) or, with search_views, "transmittance" (each depth stops the ray with a learned
    # probability, front to back, and what passes them all sees a learned background: volume
    # rendering's compositing)
    search_weighting: str = field(default="softmax", metadata={"choices": RAY_WEIGHTINGS})
    # k: the blend of the copied colours into the generator's image also reads each pixel's k x k
    # neighbours, and may correct the generator's colour where a view sees the ray (odd; 0: per
    # pixel); training then reads a random square patch of pixel_fraction of the frame
    blend_spatial: int = field(default=0, metadata={"min": 0})
    # the generation grid (r, the cores, z) is H/grid_scale x W/grid_scale: the paper's 4 (16 x 16
    # at 64 px); 8 keeps 16 x 16 at 128 px, where the pixel evidence gives the full resolution
    # (the tower's r is at 1/4, so it needs 4; the epipolar, pool and pyramid take any)
    grid_scale: int = field(default=SCALE, metadata={"min": 1})

    def __post_init__(self):
        check_fields(self)
        if self.representation not in REPRESENTATIONS:
            raise GQNError(
                f"representation {self.representation!r} is not one of {', '.join(REPRESENTATIONS)}"
            )
        if self.representation == "pyramid" and self.image_size < 64:
            raise GQNError(
                f"image_size must be at least 64 for the pyramid (its last layer is 8x8/8 of H/8), got {self.image_size}"
            )
        if self.image_size % self.grid_scale:
            raise GQNError(
                f"image_size must be a multiple of grid_scale {self.grid_scale}, got {self.image_size}"
            )
        if self.representation == "tower" and self.grid_scale != SCALE:
            raise GQNError(
                f"the tower's r is at 1/{SCALE} of the frame: grid_scale must be {SCALE}, got {self.grid_scale}"
            )
        if self.pixel_visibility and not (self.pixel_depths and self.representation == "epipolar"):
            raise GQNError(
                "pixel_visibility needs pixel evidence (pixel_depths > 0) and the epipolar representation"
            )
        for name in ("search_spatial", "blend_spatial"):
            k = getattr(self, name)
            if k and k % 2 == 0:
                raise GQNError(f"{name} must be odd (or 0), got {k}")
        if self.blend_spatial and not self.pixel_depths:
            raise GQNError("blend_spatial needs pixel evidence (pixel_depths > 0)")
        if self.search_views and (self.search_spatial or not self.pixel_depths):
            raise GQNError("search_views needs pixel evidence (pixel_depths > 0) and no search_spatial")
        if self.search_weighting == "transmittance" and not self.search_views:
            raise GQNError("search_weighting transmittance needs the search over views (search_views true)")
        if self.pixel_sampling == "coarse" and not (self.pixel_depths and self.representation == "epipolar"):
            raise GQNError(
                "pixel_sampling coarse needs pixel evidence (pixel_depths > 0) and the epipolar representation"
            )
        if self.near is not None and self.far is not None and self.far <= self.near:
            raise GQNError(f"far must be more than near, got near {self.near} and far {self.far}")

    @property
    def needs_cameras(self) -> bool:
        """True if the model reads the context views through the cameras' geometry."""
        return self.representation == "epipolar" or self.pixel_depths > 0

    def check_cameras(self) -> None:
        """A model that needs the cameras (`needs_cameras`) cannot be built without their field of
        view and depth bounds. Presets leave them unset: gqn train fills them from the dataset."""
        missing = [n for n in ("fov", "near", "far") if getattr(self, n) is None]
        if self.needs_cameras and missing:
            raise GQNError(
                f"the {self.representation} representation{' with pixel evidence' if self.pixel_depths else ''} "
                f"needs the cameras' {', '.join(missing)}: gqn train takes them from the dataset's "
                "description, or set them in a config file"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> GQNConfig:
        return from_dict(cls, d, where)


# ----------------------------------------------------------------------------------------------
# Representation networks (supplementary Fig. S1): x (B, 3, H, W), v (B, 7) -> r (B, Cr, ., .)


class Tower(nn.Module):
    """The "tower": r at 1/4 resolution, v joined at the second stage, two residual connections."""

    def __init__(self, r: int):
        super().__init__()
        self.conv1 = nn.Conv2d(X_CHANNELS, r, 2, stride=2)
        self.conv2 = nn.Conv2d(r, r, 2, stride=2)  # skip
        self.conv3 = nn.Conv2d(r, r // 2, 3, padding=1)
        self.conv4 = nn.Conv2d(r // 2, r, 2, stride=2)
        self.conv5 = nn.Conv2d(r + V_DIM, r, 3, padding=1)  # skip
        self.conv6 = nn.Conv2d(r + V_DIM, r // 2, 3, padding=1)
        self.conv7 = nn.Conv2d(r // 2, r, 3, padding=1)
        self.conv8 = nn.Conv2d(r, r, 1)

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """x (N, 3, H, W), v (N, 7) -> r (N, Cr, H/4, W/4)."""
        x = F.relu(self.conv1(x))
        skip = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x)) + skip
        x = torch.cat([x, v[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        skip = F.relu(self.conv5(x))
        x = F.relu(self.conv6(x))
        x = F.relu(self.conv7(x)) + skip
        return F.relu(self.conv8(x))


class Pool(Tower):
    """The tower, averaged over space: r (N, Cr, 1, 1)."""

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return super().forward(x, v).mean((2, 3), keepdim=True)


class Pyramid(nn.Module):
    """The "pyramid": v joined to every pixel, then 2x2/2, 2x2/2, 2x2/2 and 8x8/8 convolutions."""

    def __init__(self, r: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(X_CHANNELS + V_DIM, r // 8, 2, stride=2),
            nn.ReLU(),
            nn.Conv2d(r // 8, r // 4, 2, stride=2),
            nn.ReLU(),
            nn.Conv2d(r // 4, r // 2, 2, stride=2),
            nn.ReLU(),
            nn.Conv2d(r // 2, r, 8, stride=8),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """x (N, 3, H, W), v (N, 7) -> r (N, Cr, 1, 1); frames over 64 px are averaged to 1x1."""
        x = torch.cat([x, v[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        return self.net(x).mean((2, 3), keepdim=True)


# Each representation network from a model config (DiT's table of factories).
REPRESENTATIONS = {
    "tower": lambda c: Tower(c.r_channels),
    "pool": lambda c: Pool(c.r_channels),
    "pyramid": lambda c: Pyramid(c.r_channels),
    "epipolar": lambda c: Epipolar(c.r_channels, c.fov, c.near, c.far, c.depth_samples, c.ray_weighting),
}


# Named presets. `paper`: the sizes of the paper's supplementary material (Eslami et al. 2018,
# "Model details": r is 16x16x256 from the tower; 12 generation steps of a 5x5 convolutional LSTM
# with 256 hidden channels; a 256-channel canvas; 64 latent channels per position; one core
# (C^g_θ, C^e_θ) applied at every step), which DeepMind-faithful ports such as tf-gqn also use.
# `small` trains usefully on a 2-core CPU in minutes; `tiny` is for tests.
PRESETS: dict[str, GQNConfig] = {
    "paper": GQNConfig(),
    "small": GQNConfig(r_channels=64, h_channels=32, u_channels=32, z_channels=8, L=6),
    "tiny": GQNConfig(r_channels=16, h_channels=16, u_channels=16, z_channels=4, L=2, kernel_size=3),
    # small's sizes with the epipolar representation; r per cell already says what the ray meets,
    # so the cores need less reach: 3x3 kernels and 4 steps, 2.8x fewer FLOPs than small's. 16
    # depths along each ray: in the same minutes they learned more than 8, 32 or 64
    # (benchmarks/learning.py, README); the shipped weights were trained with 32.
    "epipolar": GQNConfig(
        representation="epipolar",
        r_channels=64,
        h_channels=32,
        u_channels=32,
        z_channels=8,
        L=4,
        kernel_size=3,
        depth_samples=16,
    ),
}
# The epipolar model with pixel-level evidence: sharp views copied from the context where it saw.
# The colours alone (pixel_channels 3), 16 depths per pixel and a quarter of the pixels per
# training step learned more in ten minutes than 8 features or 32 depths (benchmarks/learning.py).
PRESETS["sharp"] = replace(PRESETS["epipolar"], pixel_depths=16, pixel_fraction=0.25)
# `sharp` whose search picks a context view as well as a depth (with 16 hidden channels, since it
# runs once per view), trained by the mixture NLL (search_width 0.2): in ten minutes from scratch
# it learned 1.8 dB more than with the expected error (benchmarks/learning.py, README).
PRESETS["views"] = replace(PRESETS["sharp"], search_views=True, search_hidden=16, search_width=0.2)
# `views` with a cheaper step for `gqn demo`'s ten minutes: 8 depths per pixel and an eighth of the
# pixels per training step (every pixel at eval and render). From scratch in ten minutes it made
# 2,316 steps against `views`' 1,308 and learned more than `views` and `epipolar` (24.34 dB, SSIM
# 0.799, view gain 4.61 dB against 23.85, 0.795, 3.87 and 24.08, 0.638, 4.56; benchmarks/learning.py,
# README "Pixel-level evidence").
PRESETS["demo"] = replace(PRESETS["views"], pixel_depths=8, pixel_fraction=0.125)


# ----------------------------------------------------------------------------------------------
# The cores


class ConvLSTM(nn.Module):
    """A convolutional LSTM whose four gates come from one convolution of [input, h].

    The input is in two parts: `fixed`, the same at every step (v_q and r, and x_q for
    inference), and `step`, new at each step. A convolution is linear, so conv([fixed, step, h])
    = conv_fixed(fixed) + conv_step([step, h]): the fixed part is convolved once per image
    (`gates_of`), not L times. A core that only ever runs from the zero state (the first of
    separate per-step cores) has no weights for h, which would never see anything but zeros.
    """

    def __init__(self, fixed: int, step: int, hidden: int, kernel: int, zero_state: bool = False):
        super().__init__()
        self.fixed = nn.Conv2d(fixed, 4 * hidden, kernel, padding=kernel // 2)
        step_in = step + (0 if zero_state else hidden)
        self.step = (
            nn.Conv2d(step_in, 4 * hidden, kernel, padding=kernel // 2, bias=False) if step_in else None
        )

    def gates_of(self, fixed: torch.Tensor) -> torch.Tensor:
        """fixed (B, C, h, w) -> its contribution to the gates (B, 4 Ch, h, w)."""
        return self.fixed(fixed)

    def forward(
        self, fixed_gates: torch.Tensor, inputs: list[torch.Tensor], c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """fixed_gates (B, 4 Ch, h, w), inputs [step input..., h] each (B, ., h, w), c (B, Ch, h, w)
        -> the new (h, c)."""
        gates = fixed_gates + self.step(torch.cat(inputs, 1)) if inputs else fixed_gates
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class Constant(nn.Module):
    """A learned constant (B, C, H, W): what a convolution of the all-zero state gives."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, like: torch.Tensor) -> torch.Tensor:
        """like (B, ., H, W) -> (B, channels, H, W)."""
        return self.bias[None, :, None, None].to(like.dtype).expand(like.shape[0], -1, *like.shape[2:])


class GenerationCore(nn.Module):
    """C^g: [v_q, r, z] and its state -> (h_g, c_g); the canvas update Δ(h_g); the prior η^π(h_g).

    zero_state: this core runs only at the first step, from h_g = 0 (separate per-step cores),
    so its prior is a learned constant and its LSTM has no weights for h_g.
    """

    def __init__(self, cfg: GQNConfig, zero_state: bool = False):
        super().__init__()
        k = cfg.kernel_size
        self.zero_state = zero_state
        self.lstm = ConvLSTM(V_DIM + cfg.r_channels, cfg.z_channels, cfg.h_channels, k, zero_state)
        s = cfg.grid_scale
        self.delta = nn.ConvTranspose2d(cfg.h_channels, cfg.u_channels, s, stride=s)
        self.prior = (
            Constant(2 * cfg.z_channels)
            if zero_state
            else nn.Conv2d(cfg.h_channels, 2 * cfg.z_channels, k, padding=k // 2)
        )

    def gates_of(self, fixed: torch.Tensor) -> torch.Tensor:
        """[v_q, r] (B, 7 + Cr, h, w) -> its part of the LSTM gates, computed once for all steps."""
        return self.lstm.gates_of(fixed)

    def prior_of(self, h_g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """π_l: the prior's mean and standard deviation (B, Cz, h, w) from the generator state."""
        return gaussian(self.prior(h_g))

    def forward(
        self, gates: torch.Tensor, z: torch.Tensor, h_g: torch.Tensor, c_g: torch.Tensor, u: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: gates (`gates_of`), z (B, Cz, h, w), the state h_g, c_g (B, Ch, h, w) and the
        canvas u (B, Cu, H, W) -> the new (h_g, c_g, u + Δ(h_g))."""
        h_g, c_g = self.lstm(gates, [z.to(h_g.dtype)] + ([] if self.zero_state else [h_g]), c_g)
        return h_g, c_g, u + self.delta(h_g)


class InferenceCore(nn.Module):
    """C^e: [x_q, v_q, r, h_g, u] and its state -> (h_e, c_e); the posterior η^e(h_e).

    x_q enters as its s x s pixel blocks (s = grid_scale; the paper's 4x4) stacked into 3 s^2
    channels (lossless, no parameters); the canvas u through a learned s x s stride-s convolution.
    zero_state: this core runs only at the first step, where h_g, u and h_e are all 0, so it has
    no weights for them.
    """

    def __init__(self, cfg: GQNConfig, zero_state: bool = False):
        super().__init__()
        k = cfg.kernel_size
        self.zero_state = zero_state
        s = cfg.grid_scale
        fixed = X_CHANNELS * s * s + V_DIM + cfg.r_channels
        step = 0 if zero_state else cfg.h_channels + cfg.u_channels
        self.downsample_u = None if zero_state else nn.Conv2d(cfg.u_channels, cfg.u_channels, s, stride=s)
        self.lstm = ConvLSTM(fixed, step, cfg.h_channels, k, zero_state)
        self.posterior = nn.Conv2d(cfg.h_channels, 2 * cfg.z_channels, k, padding=k // 2)

    def gates_of(self, fixed: torch.Tensor) -> torch.Tensor:
        """[x_q blocks, v_q, r] (B, 3 s^2 + 7 + Cr, h, w) -> its part of the gates, once for all steps."""
        return self.lstm.gates_of(fixed)

    def forward(
        self,
        gates: torch.Tensor,
        h_g: torch.Tensor,
        u: torch.Tensor,
        h_e: torch.Tensor,
        c_e: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: gates (`gates_of`), the generator state h_g (B, Ch, h, w), the canvas u
        (B, Cu, H, W) and its own state h_e, c_e -> the new (h_e, c_e) and the posterior's mean
        and standard deviation (B, Cz, h, w)."""
        inputs = [] if self.zero_state else [h_g, self.downsample_u(u), h_e]
        h_e, c_e = self.lstm(gates, inputs, c_e)
        return h_e, c_e, *gaussian(self.posterior(h_e))


def gaussian(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split (B, 2 Cz, h, w) into mean and standard deviation (softplus keeps it positive)."""
    mean, pre_std = params.float().chunk(2, 1)
    return mean, F.softplus(pre_std) + 1e-4


def kl_divergence(
    q_mean: torch.Tensor, q_std: torch.Tensor, p_mean: torch.Tensor, p_std: torch.Tensor
) -> torch.Tensor:
    """KL(q || p) of diagonal Gaussians, summed over all but the batch dimension: (B,)."""
    var_ratio = (q_std / p_std) ** 2
    kl = 0.5 * (var_ratio + ((q_mean - p_mean) / p_std) ** 2 - 1 - var_ratio.log())
    return kl.flatten(1).sum(1)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, sigma: float) -> torch.Tensor:
    """-log N(x | mean, sigma^2), summed over each image: (B,). The constant at sigma = 0.7 for a
    64x64x3 image is 12288 (log 0.7 + log(2 pi) / 2) = 6,909 nats, the familiar "floor"."""
    d = x[0].numel()
    sq = ((x.float() - mean.float()) ** 2).flatten(1).sum(1)
    return sq / (2 * sigma**2) + d * (math.log(sigma) + 0.5 * math.log(2 * math.pi))


# ----------------------------------------------------------------------------------------------
# The model


# How the generation loop draws z (`GQN._generate`): from the prior or from the posterior (which
# sees the query view and scores the KL), a draw or that distribution's mean; or "shadow": z is
# the prior's mean while the posterior runs beside the generator on detached inputs, its KL scored
# against the detached prior, so the KL trains the inference network alone to agree with the prior.
Z_MODES = ("prior", "prior_mean", "posterior", "posterior_mean", "shadow")

# What the pixel evidence read (gqn/pixels.py) and the pixels (N,) it is of, None for all.
Evidence = tuple[Reading, torch.Tensor | None]


class GQN(nn.Module):
    """The GQN of a config: a scene representation from the context views, a generator that draws
    the query view in L steps with a latent z per step, an inference network for training.

    Stages, each a method: `represent` (the context -> r; for the epipolar representation, r of
    the query camera), pixel evidence (config.pixel_depths: what the context views saw along each
    output pixel's ray, gqn/pixels.py), `_generate` (the L steps; z from the prior or the
    posterior, `Z_MODES`), and the mean image: η^g of the canvas, blended with the evidence.
    `forward` is the training loss (the negative ELBO); `sample` and `reconstruct` predict.
    """

    def __init__(self, config: GQNConfig):
        super().__init__()
        config.check_cameras()
        self.config = config
        # One core of each kind for all steps, or one per step (the first sees the zero state only).
        zero_state = [False] if config.shared_core else [True] + [False] * (config.L - 1)
        self.representation = REPRESENTATIONS[config.representation](config)
        self.generation = nn.ModuleList(GenerationCore(config, z) for z in zero_state)
        self.inference = nn.ModuleList(InferenceCore(config, z) for z in zero_state)
        self.observation = nn.Conv2d(config.u_channels, X_CHANNELS, 1)  # η^g: canvas -> mean image
        if config.pixel_depths:
            self.evidence = PixelEvidence(
                config.pixel_channels,
                config.fov,
                config.near,
                config.far,
                config.pixel_depths,
                config.search_spatial,
                config.search_hidden,
                config.pixel_visibility,
                config.search_views,
                config.pixel_sampling,
                config.search_weighting,
            )
            self.blend = Blend(config.u_channels, self.evidence.channels, config.blend_spatial)

    # -- stages --------------------------------------------------------------------------------

    @property
    def query_dependent(self) -> bool:
        """True if r depends on the query camera (the epipolar representation)."""
        return self.config.representation == "epipolar"

    def represent(
        self, context_x: torch.Tensor, context_v: torch.Tensor, query_v: torch.Tensor | None = None
    ) -> torch.Tensor:
        """context_x (B, K, 3, H, W), context_v (B, K, 7) -> r (B, Cr, H/4, W/4) (tower) or (B, Cr, 1, 1),
        the sum of the per-view representations; for the epipolar representation, r of the query
        camera query_v (B, 7), one per cell of its grid: (B, Cr, h, w)."""
        return self._represent(context_x, context_v, query_v)[0]

    def _represent(
        self, context_x: torch.Tensor, context_v: torch.Tensor, query_v: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`represent`'s r, and the epipolar representation's weights over depth (B, D, h, w)."""
        self._check(context_x, context_v)
        b, k = context_x.shape[:2]
        if self.query_dependent:
            if query_v is None:
                raise GQNError("the epipolar representation is the query camera's: pass query_v")
            grid = self.grid(*context_x.shape[3:])
            return self.representation(context_x, context_v, query_v, grid)
        r = self.representation(context_x.flatten(0, 1), context_v.flatten(0, 1))
        return r.unflatten(0, (b, k)).sum(1), None

    def _scene(
        self, context_x: torch.Tensor, context_v: torch.Tensor, query_v: torch.Tensor
    ) -> tuple[torch.Tensor, Evidence | None]:
        """What the generator is given of the scene: r, and what the pixel evidence read with the
        pixels (N,) it is of (None: all), or None."""
        r, depth_weights = self._represent(context_x, context_v, query_v)
        if not self.config.pixel_depths:
            return r, None
        pixels, grid = None, None  # all of them, but a share of them in training (config.pixel_fraction)
        if self.training and self.config.pixel_fraction < 1:
            height, width = context_x.shape[3:]
            patch = self.config.search_spatial > 0 or self.config.blend_spatial > 0
            pixels, grid = training_pixels(height, width, self.config.pixel_fraction, patch, context_x.device)
        surfaces = self._surfaces(context_x, context_v) if self.config.pixel_visibility else None
        return r, (
            self.evidence(context_x, context_v, query_v, depth_weights, pixels, grid, surfaces),
            pixels,
        )

    @torch.no_grad()
    def _surfaces(self, context_x: torch.Tensor, context_v: torch.Tensor) -> torch.Tensor:
        """The depth each context view sees in each cell of its own grid (B, K, h, w), from the
        coarse epipolar attention with the other K - 1 views as context (its expected depth, the
        weight a ray leaves unspent at the far plane); the far plane everywhere for one view, which
        nothing then occludes. Geometry for the pixel evidence's depth test, so no gradient flows
        back; its parameters still take part in every step (DDP needs each used every step)."""
        b, k = context_x.shape[:2]
        grid = self.grid(*context_x.shape[3:])
        if k < 2:
            return context_x.new_full((b, k, *grid), self.config.far, dtype=torch.float32)
        others = torch.tensor([[j for j in range(k) if j != i] for i in range(k)], device=context_x.device)
        cx = context_x[:, others].flatten(0, 1)  # (B K, K - 1, 3, H, W)
        cv = context_v[:, others].flatten(0, 1)  # (B K, K - 1, 7)
        _, weights = self.representation(cx, cv, context_v.flatten(0, 1), grid)
        weights = weights.float()  # (B K, D, h, w); with transmittance they may sum to less than 1
        depth = torch.linspace(self.config.near, self.config.far, weights.shape[1], device=weights.device)
        expected = torch.einsum("ndhw,d->nhw", weights, depth) + (1 - weights.sum(1)) * self.config.far
        return expected.unflatten(0, (b, k))

    def _fixed_inputs(self, r: torch.Tensor, query_v: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """[v_q, r] broadcast over the grid: (B, 7 + Cr, h, w)."""
        b = r.shape[0]
        if r.shape[2:] != grid:
            r = r.expand(-1, -1, *grid)  # pool and pyramid: one vector for the whole scene
        return torch.cat([query_v[:, :, None, None].expand(b, -1, *grid), r], 1)

    def _observe(self, u: torch.Tensor, evidence: Evidence | None) -> torch.Tensor:
        """The canvas u (B, Cu, H, W) -> the mean image (B, 3, H, W): η^g(u), blended with what the
        context views saw (gqn/pixels.py) if the model reads them per pixel."""
        # η^g is linear, as in the paper. A sigmoid here looks harmless but is not: pulling its
        # output from 0.5 down to a black background makes Adam saturate every LSTM gate within
        # ~100 steps, after which no gradient reaches r or z (tests/test_model.py overfits a batch).
        g = self.observation(u)
        if evidence is None:
            return g
        reading, pixels = evidence
        return self.blend(g, u, reading.evidence, pixels, reading.grid)

    def _search_nll(
        self, x: torch.Tensor, reading: Reading, pixels: torch.Tensor | None, sigma: float
    ) -> torch.Tensor:
        """The query x (B, 3, H, W) -> (B,): `search_nll` of the pixels read, scaled to the frame."""
        target = x.flatten(2) if pixels is None else x.flatten(2)[:, :, pixels]  # (B, 3, N)
        nll = search_nll(target, reading, sigma, self.config.search_width)
        return nll * (x.shape[2] * x.shape[3] / target.shape[2])

    def _generate(
        self,
        r: torch.Tensor,
        evidence: Evidence | None,
        query_v: torch.Tensor,
        image: tuple[int, int],
        z_mode: str,
        query_x: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        trace: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the L steps; returns the mean image (B, 3, H, W) and the KL of each step [(B,)]
        (empty for the prior's modes).

        z_mode: one of `Z_MODES`; the posterior's and "shadow" need query_x (B, 3, H, W).
        noise: the standard normal draws for z, (L, B, Cz, h, w); drawn from torch's RNG if None.
        trace: if a list, the mean image after every step is appended to it (the canvas so far).
        """
        if z_mode not in Z_MODES:
            raise GQNError(f"z_mode must be one of {', '.join(Z_MODES)}, got {z_mode!r}")
        infer = z_mode in ("posterior", "posterior_mean", "shadow")
        if infer and query_x is None:
            raise GQNError(f"z_mode {z_mode!r} needs the query view")
        shadow, use_mean = z_mode == "shadow", z_mode.endswith("_mean") or z_mode == "shadow"
        cfg = self.config
        b = r.shape[0]
        grid = self.grid(*image)
        fixed = self._fixed_inputs(r, query_v, grid)
        h_g = r.new_zeros(b, cfg.h_channels, *grid)
        c_g = torch.zeros_like(h_g)
        u = r.new_zeros(b, cfg.u_channels, *image)
        g_gates = [core.gates_of(fixed) for core in self.generation]
        if infer:
            h_e, c_e = torch.zeros_like(h_g), torch.zeros_like(h_g)
            x_blocks = F.pixel_unshuffle(query_x, cfg.grid_scale)  # (B, 3 s^2, h, w): 48 at s = 4
            e_fixed = torch.cat([x_blocks, fixed.detach() if shadow else fixed], 1)
            e_gates = [core.gates_of(e_fixed) for core in self.inference]
        kls = []
        for step in range(cfg.L):
            core = step % len(self.generation)  # the shared core, or this step's own
            gen = self.generation[core]
            mean, std = p_mean, p_std = gen.prior_of(h_g)  # π_l from the generator's state
            if shadow:
                h_e, c_e, q_mean, q_std = self.inference[core](
                    e_gates[core], h_g.detach(), u.detach(), h_e, c_e
                )
                kls.append(kl_divergence(q_mean, q_std, p_mean.detach(), p_std.detach()))
            elif infer:
                h_e, c_e, mean, std = self.inference[core](e_gates[core], h_g, u, h_e, c_e)
                kls.append(kl_divergence(mean, std, p_mean, p_std))
            if use_mean:
                z = mean
            else:
                eps = torch.randn_like(std) if noise is None else noise[step].to(std)
                z = mean + std * eps
            h_g, c_g, u = gen(g_gates[core], z, h_g, c_g, u)
            if trace is not None:
                trace.append(self._observe(u, evidence))
        return self._observe(u, evidence), kls

    # -- public API ----------------------------------------------------------------------------

    def forward(
        self,
        context_x: torch.Tensor,
        context_v: torch.Tensor,
        query_x: torch.Tensor,
        query_v: torch.Tensor,
        sigma: float,
        noise: torch.Tensor | None = None,
        per_image: bool = False,
        deterministic: bool = False,
    ) -> dict[str, torch.Tensor]:
        """The negative ELBO of the query view given the context (Eq. S10 of the supplement).

        context_x (B, K, 3, H, W) in [0, 1], context_v (B, K, 7), query_x (B, 3, H, W),
        query_v (B, 7), sigma the pixel standard deviation, noise the posterior draws
        (`noise_shape`; torch's RNG if None: data-parallel training passes each process its slice
        of one global draw, so N processes compute exactly what one would). Returns, as means over the batch,
        `loss` = `nll` + `kl` (nats per image), `kl_steps` (L,), and `mean` (B, 3, H, W), the
        reconstruction through the posterior, detached; `objective`, what training minimises: the
        loss, plus with pixel evidence `search_nll` (the search along the rays' own fit, not part
        of the ELBO). per_image: `objective`, `search_nll`, `loss`, `nll`, `kl` are (B,).
        deterministic: the mean image is the prior-mean prediction, regressed on the query by the
        representation and generation networks, while the inference network learns apart to agree
        with the prior (z_mode "shadow"): a deterministic warm-up, `gqn train
        --deterministic-steps`. The KL it reports is that agreement, so when the ELBO takes over
        the posterior already sits on the prior. (Left untrained, the posterior met the ELBO with
        a KL near 900 nats, whose gradient wiped out 4,000 steps of learned views in 250.)
        """
        r, evidence = self._scene(context_x, context_v, query_v)
        z_mode = "shadow" if deterministic else "posterior"
        mean, kls = self._generate(r, evidence, query_v, query_x.shape[2:], z_mode, query_x, noise)
        nll = gaussian_nll(query_x, mean, sigma)
        kl_steps = torch.stack(kls, 1)  # (B, L)
        kl = kl_steps.sum(1)
        search = nll.new_zeros(nll.shape) if evidence is None else self._search_nll(query_x, *evidence, sigma)
        reduce = (lambda t: t) if per_image else torch.mean
        return {
            "objective": reduce(nll + kl + search),
            "search_nll": reduce(search),
            "loss": reduce(nll + kl),
            "nll": reduce(nll),
            "kl": reduce(kl),
            "kl_steps": kl_steps.mean(0),
            "mse": ((query_x.float() - mean.float()) ** 2).mean(),
            "mean": mean.detach(),
        }

    def noise_shape(self, batch: int, height: int, width: int) -> tuple[int, ...]:
        """Shape of the standard normal draws for z of a batch: (L, B, Cz, h, w), the grid's."""
        return (self.config.L, batch, self.config.z_channels, *self.grid(height, width))

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The generation grid (h, w) of frames of H x W: (H/4, W/4) at the paper's grid_scale."""
        return height // self.config.grid_scale, width // self.config.grid_scale

    @torch.no_grad()
    def sample(
        self,
        context_x: torch.Tensor,
        context_v: torch.Tensor,
        query_v: torch.Tensor,
        use_mean: bool = False,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """A prediction of the query view (B, 3, H, W) in [0, 1]: z drawn from the prior at each
        step (under the torch RNG, so `torch.manual_seed` makes it repeatable, or from `noise`),
        or its mean with use_mean."""
        return self.samples(context_x, context_v, query_v, ["mean" if use_mean else noise])[0]

    @torch.no_grad()
    def samples(
        self,
        context_x: torch.Tensor,
        context_v: torch.Tensor,
        query_v: torch.Tensor,
        draws: list[torch.Tensor | str | None],
    ) -> list[torch.Tensor]:
        """Several predictions of one query view (each as `sample`'s) from one reading of the scene:
        r and the pixel evidence do not depend on z, so they are computed once, not per draw. For
        each of `draws`, a noise tensor (`noise_shape`) gives that prior sample, None a prior sample
        drawn from torch's RNG, "mean" the prior mean."""
        r, evidence = self._scene(context_x, context_v, query_v)
        image = context_x.shape[3:]
        out = []
        for draw in draws:
            if isinstance(draw, str) and draw != "mean":
                raise GQNError(f'a draw is a noise tensor or "mean", got {draw!r}')
            z_mode, noise = ("prior_mean", None) if isinstance(draw, str) else ("prior", draw)
            out.append(self._generate(r, evidence, query_v, image, z_mode, noise=noise)[0].clamp(0, 1))
        return out

    @torch.no_grad()
    def canvas_steps(
        self, context_x: torch.Tensor, context_v: torch.Tensor, query_v: torch.Tensor
    ) -> torch.Tensor:
        """What the canvas shows after each generation step, z at the prior mean: (L, B, 3, H, W)."""
        trace: list[torch.Tensor] = []
        r, evidence = self._scene(context_x, context_v, query_v)
        self._generate(r, evidence, query_v, context_x.shape[3:], "prior_mean", trace=trace)
        return torch.stack(trace).clamp(0, 1)

    @torch.no_grad()
    def reconstruct(
        self,
        context_x: torch.Tensor,
        context_v: torch.Tensor,
        query_x: torch.Tensor,
        query_v: torch.Tensor,
        use_mean: bool = False,
    ) -> torch.Tensor:
        """The query view (B, 3, H, W) in [0, 1] through the posterior, which sees query_x."""
        r, evidence = self._scene(context_x, context_v, query_v)
        z_mode = "posterior_mean" if use_mean else "posterior"
        return self._generate(r, evidence, query_v, query_x.shape[2:], z_mode, query_x)[0].clamp(0, 1)

    def _check(self, context_x: torch.Tensor, context_v: torch.Tensor) -> None:
        if context_x.dim() != 5 or context_x.shape[2] != X_CHANNELS:
            raise GQNError(f"context_x must be (B, K, 3, H, W), got {tuple(context_x.shape)}")
        if context_v.shape != (*context_x.shape[:2], V_DIM):
            raise GQNError(
                f"context_v must be (B, K, 7) = {(*context_x.shape[:2], V_DIM)}, got {tuple(context_v.shape)}"
            )
        h, w = context_x.shape[3:]
        s = self.config.grid_scale
        if h % s or w % s or min(h, w) < 8:
            raise GQNError(
                f"frames of {w}x{h} pixels: width and height must be multiples of {s} (at least 8)"
            )
