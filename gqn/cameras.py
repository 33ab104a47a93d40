"""GQN cameras (x, y, z, yaw, pitch) and the viewing direction they encode.

The convention is the one measured on DeepMind's Shepard-Metzler data (../shared/reference):
a camera at (x, y, z) looks along forward(yaw, pitch) = (cos p cos yaw, -cos p sin yaw, sin p),
+z up. On the sphere of radius r around the origin, looking at it, that is
x = -r cos p cos yaw, y = r cos p sin yaw, z = -r sin p. Shapes: V views.
"""

from __future__ import annotations

import numpy as np

SHEPARD_METZLER_RADIUS = 10 / 3  # measured on DeepMind's data
ROOM_RING_RADIUS = 3.0  # rooms_ring_camera as gqn data synth renders it
ROOM_EYE_HEIGHT = 1.0


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
