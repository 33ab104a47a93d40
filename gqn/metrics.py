"""Image metrics in the units we report: MSE and PSNR of [0, 1] images, bits per dimension.

Shapes: B batch, 3 x H x W images with values in [0, 1].
"""

from __future__ import annotations

import math

import torch

PSNR_CAP = 100.0  # dB for identical images, where the PSNR would be infinite


def decibels(err: torch.Tensor) -> torch.Tensor:
    """-10 log10(err), capped at PSNR_CAP where err is 0. A NaN error stays NaN and an infinite
    one is -inf: a non-finite prediction never scores as a perfect one."""
    return torch.where(err == 0, torch.full_like(err, PSNR_CAP), -10 * torch.log10(err)).clamp_max(PSNR_CAP)


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image: (B, 3, H, W) x 2 -> (B,)."""
    return ((x.float() - y.float()) ** 2).flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB for a peak of 1, capped at PSNR_CAP; NaN for an
    image holding NaN: (B,)."""
    return decibels(mse(x, y))


def bits_per_dim(nats_per_image: float, dims: int) -> float:
    """Negative log-likelihood in bits per dimension on the 0..255 pixel scale.

    The Gaussian density is over [0, 1]-scaled pixels; on the 0..255 scale every dimension's
    density is 255 times smaller, which adds log2(255) ~ 8 bits per dimension.
    """
    return nats_per_image / (dims * math.log(2)) + math.log2(255)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004): Gaussian window 11, sigma 1.5,
    K1 = 0.01, K2 = 0.03, peak 1, averaged over channels and valid positions: (B,)."""
    x, y = x.float(), y.float()
    c = x.shape[1]
    g = torch.exp(-((torch.arange(window, dtype=torch.float32) - window // 2) ** 2) / (2 * sigma**2))
    g = (g / g.sum()).to(x.device)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(t):
        return torch.nn.functional.conv2d(t, kernel, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def view_scores(predictions: torch.Tensor, truths: torch.Tensor) -> tuple[float, float]:
    """How well predictions tell the query cameras apart: (view gain in dB, view identification).

    predictions (Q, 3, H, W): P_i, one scene's prediction at camera i, all from the same context;
    truths (Q, 3, H, W): X_j, the true view at camera j. With PSNR capped at PSNR_CAP:
      view gain      = mean_i PSNR(P_i, X_i) - mean over i != j of PSNR(P_i, X_j);
      identification = the fraction of views j whose nearest prediction by MSE is P_j, a tie
                       between n predictions counting 1/n.
    A prediction blind to the camera (every P_i the same) scores 0 dB and 1/Q; the truth itself
    scores 1.0 (unless two true views are identical).
    """
    q = len(predictions)
    if q < 2 or truths.shape != predictions.shape:
        raise ValueError(f"need Q >= 2 predictions and truths of one shape, got {tuple(predictions.shape)}")
    p = predictions.double().flatten(1)
    x = truths.double().flatten(1)
    err = torch.stack([((p_i - x) ** 2).mean(1) for p_i in p])  # err[i, j] = MSE(P_i, X_j), exact ties
    db = decibels(err)
    diagonal = torch.eye(q, dtype=torch.bool)
    gain = db[diagonal].mean() - db[~diagonal].mean()
    nearest = err == err.min(0, keepdim=True).values  # (Q, Q): P_i is (one of) the nearest to X_j
    identification = (nearest[diagonal].float() / nearest.sum(0).float()).mean()
    return gain.item(), identification.item()
