"""GQN cameras (x, y, z, yaw, pitch): where they look, the paths they move along, the viewpoint
the model sees, the rays through their pixels, and where a 3D point lands in their image. Every
other module calls these; nobody re-derives a rotation.

The convention is the one measured on DeepMind's Shepard-Metzler data (examples/reference) and
rendered by `gqn.synth.views` (tested against MuJoCo in tests/test_cameras.py):
  forward = (cos p cos yaw, -cos p sin yaw, sin p), +z is up;
  right   = forward x z / |forward x z| = (-sin yaw, -cos yaw, 0);
  up      = right x forward.
On the sphere of radius r around the origin, looking at it, that is x = -r cos p cos yaw,
y = r cos p sin yaw, z = -r sin p.

The model sees a camera as the 7-D viewpoint v = (x, y, z, sin yaw, cos yaw, sin pitch, cos pitch)
of DeepMind's reader (`viewpoints`); `axes` reads the camera back from it.

The image is a pinhole of square field of view `fov` (degrees, MuJoCo's fovy; frames are
square). Row 0 is the top of the image and column 0 its left; pixel (i, j) of an n x n image has
its centre at normalised coordinates (x, y) = ((2j + 1)/n - 1, 1 - (2i + 1)/n), so (-1, 1) is the
top-left corner of the frame. A point p seen from a camera at c is at depth d = (p - c) . forward
and at x = (p - c) . right / (d tan(fov/2)), y = (p - c) . up / (d tan(fov/2)).
`torch.nn.functional.grid_sample(align_corners=False)` takes (x, -y): see `project`.

Shapes: V views; the torch functions take any leading dimensions (...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from gqn.errors import GQNError

ORBIT_FRAMES = 48  # cameras of one full turn of an orbit, unless asked otherwise
ORBIT_PITCH = math.pi / 8  # the sphere's orbit, unless asked otherwise


def forward(yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """(V, 3) unit viewing directions."""
    return np.stack([np.cos(pitch) * np.cos(yaw), -np.cos(pitch) * np.sin(yaw), np.sin(pitch)], -1)


def sphere_cameras(yaw: np.ndarray, pitch: np.ndarray, radius: float) -> np.ndarray:
    """(V, 5) float32 cameras on a sphere around the origin, looking at it."""
    yaw, pitch = np.broadcast_arrays(np.asarray(yaw, np.float64), np.asarray(pitch, np.float64))
    position = -radius * forward(yaw, pitch)
    return np.concatenate([position, yaw[:, None], pitch[:, None]], 1).astype(np.float32)


def ring_cameras(yaw: np.ndarray, radius: float, height: float) -> np.ndarray:
    """(V, 5) float32 cameras on a horizontal ring at `height`, each facing the floor's centre."""
    yaw = np.asarray(yaw, np.float64)
    pitch = np.full_like(yaw, -np.arctan2(height, radius))
    flat = -radius * forward(yaw, np.zeros_like(yaw))
    flat[:, 2] = height
    return np.concatenate([flat, yaw[:, None], pitch[:, None]], 1).astype(np.float32)


@dataclass(frozen=True)
class CameraPath:
    """The path a dataset's camera moves along when it is turned (`gqn render --orbit`, `gqn
    view`): each dataset's is in its entry of `gqn.data.table`."""

    name: str  # "sphere": around the origin, looking at it; "ring": facing the floor's centre; "free"
    radius: float | None = None  # sphere and ring: the distance from the centre
    height: float | None = None  # ring: the height of the cameras

    def cameras(
        self, yaw: np.ndarray, pitch: np.ndarray | None = None, position: np.ndarray | None = None
    ) -> np.ndarray:
        """(V, 5) float32 cameras on the path at `yaw` (V,) and `pitch` (V,), which the ring
        sets itself; the free path stands them at `position` (V, 3)."""
        if self.name == "sphere":
            return sphere_cameras(yaw, pitch, self.radius)
        if self.name == "ring":
            return ring_cameras(yaw, self.radius, self.height)
        if position is None:
            raise GQNError(f"the {self.name} camera path has no cameras of its own: give their positions")
        yaw, pitch = np.asarray(yaw, np.float32), np.asarray(pitch, np.float32)
        return np.concatenate([np.asarray(position, np.float32), yaw[:, None], pitch[:, None]], 1)


def orbit_cameras(path: CameraPath, frames: int = ORBIT_FRAMES, pitch: float | None = None) -> np.ndarray:
    """(frames, 5) cameras one full turn along a path, from yaw 0: on the sphere at `pitch`
    (default π/8), on the ring at its own."""
    yaw = np.linspace(0, 2 * math.pi, frames, endpoint=False)
    return path.cameras(yaw, np.full(frames, ORBIT_PITCH if pitch is None else pitch))


# ----------------------------------------------------------------------------------------------
# The pinhole, in torch, from the 7-D viewpoint v = (x, y, z, sin yaw, cos yaw, sin pitch, cos pitch)
# that the model sees: it determines the camera exactly.


def viewpoints(cameras: torch.Tensor) -> torch.Tensor:
    """The official viewpoint v = (x, y, z, sin yaw, cos yaw, sin pitch, cos pitch): (..., 5) -> (..., 7)."""
    xyz, yaw, pitch = cameras[..., :3], cameras[..., 3:4], cameras[..., 4:5]
    return torch.cat([xyz, yaw.sin(), yaw.cos(), pitch.sin(), pitch.cos()], dim=-1)


def axes(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """v (..., 7) -> the camera's position, forward, right and up, each (..., 3)."""
    position, sin_yaw, cos_yaw, sin_pitch, cos_pitch = v[..., :3], *v[..., 3:7].unbind(-1)
    fwd = torch.stack([cos_pitch * cos_yaw, -cos_pitch * sin_yaw, sin_pitch], -1)
    right = torch.stack([-sin_yaw, -cos_yaw, torch.zeros_like(sin_yaw)], -1)
    up = torch.linalg.cross(right, fwd)
    return position, fwd, right, up


def pixel_centres(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(n, n, 2) normalised (x, y) of the centres of an n x n grid of cells over the frame."""
    c = (2 * torch.arange(n, dtype=torch.float32, device=device) + 1) / n - 1
    y, x = torch.meshgrid(-c, c, indexing="ij")
    return torch.stack([x, y], -1)


def rays(v: torch.Tensor, n: int, fov: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The rays through the centres of an n x n grid of cells over each camera's frame.

    v (..., 7) -> origins (..., 3) and directions (..., n, n, 3). A direction's forward component
    is 1, so origin + d * direction is the point at depth d (not distance d) along the ray.
    """
    position, fwd, right, up = axes(v)
    xy = pixel_centres(n, v.device).to(v.dtype) * math.tan(math.radians(fov) / 2)  # (n, n, 2)
    grid = (..., None, None, slice(None))  # (..., 3) -> (..., 1, 1, 3)
    directions = fwd[grid] + xy[..., :1] * right[grid] + xy[..., 1:] * up[grid]
    return position, directions


def project(points: torch.Tensor, v: torch.Tensor, fov: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Where 3D points land in a camera's frame.

    points (..., P, 3), v (..., 7) (the same leading dimensions) -> grid (..., P, 2), the (x, -y)
    that `grid_sample(align_corners=False)` takes (-1 the left and top edges of the frame, +1 the
    right and bottom), and depth (..., P) along the camera's forward axis (<= 0: behind it).
    """
    position, fwd, right, up = axes(v)
    rel = points - position[..., None, :]
    depth = (rel * fwd[..., None, :]).sum(-1)
    scale = depth.clamp_min(1e-6) * math.tan(math.radians(fov) / 2)
    x = (rel * right[..., None, :]).sum(-1) / scale
    y = (rel * up[..., None, :]).sum(-1) / scale
    return torch.stack([x, -y], -1), depth


def project_rays(
    origin: torch.Tensor, direction: torch.Tensor, depth: torch.Tensor, v: torch.Tensor, fov: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the points at `depth` along rays land in cameras' frames, as `project` of the points
    origin + d direction, without forming them: a point's coordinates in a camera are affine in d,
    (o - c) R + d (direction R), so the rotation R is applied once per ray, not once per point.

    origin (B, 3), direction (B, N, 3), depth (D,) the same for every ray or (B, D, N) each
    ray's own, v (B, K, 7) -> grid (B, K, P, 2) as `project`'s, depth (B, K, P) along each
    camera's forward axis, and distance (B, K, P) from each camera, with P = D N depth-major (the
    point at depth i of ray n is i N + n).
    """
    position, fwd, right, up = axes(v)  # (B, K, 3) each
    rotation = torch.stack([fwd, right, up], -1)  # (B, K, 3, 3): (p - c) @ rotation = (depth, x, y)
    start = ((origin[:, None] - position)[:, :, None] @ rotation)[:, :, 0]  # (B, K, 3)
    step = direction[:, None] @ rotation  # (B, K, N, 3)
    along = depth[:, None]  # (D, 1), or (B, 1, D, N)
    z, x, y = (start[..., i, None, None] + along * step[:, :, None, :, i] for i in range(3))  # (B, K, D, N)
    distance = (z.square() + x.square() + y.square()).sqrt().flatten(2)
    scale = z.clamp_min(1e-6) * math.tan(math.radians(fov) / 2)
    grid = torch.stack([x / scale, -y / scale], -1).flatten(2, 3)  # (B, K, P, 2)
    return grid, z.flatten(2), distance
