"""Rendering a MuJoCo scene from GQN cameras (x, y, z, yaw, pitch).

One convention for every family, the one measured on DeepMind's Shepard-Metzler data: a camera
at (x, y, z) looks along forward(yaw, pitch) = (cos p cos yaw, -cos p sin yaw, sin p), with +z up.
On the sphere of radius r around the origin that is x = -r cos p cos yaw, y = r cos p sin yaw,
z = -r sin p, the formula in ../shared/reference/README.md. In MuJoCo's free camera this is
azimuth = -yaw and elevation = pitch (degrees), looking at position + forward.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np


def sphere_cameras(yaw: np.ndarray, pitch: np.ndarray, radius: float) -> np.ndarray:
    """(V, 5) float32 cameras on a sphere around the origin, looking at it."""
    x = -radius * np.cos(pitch) * np.cos(yaw)
    y = radius * np.cos(pitch) * np.sin(yaw)
    z = -radius * np.sin(pitch)
    return np.stack([x, y, z, yaw, pitch], 1).astype(np.float32)


class ViewRenderer:
    """Renders (V, size, size, 3) uint8 frames of an MJCF scene from (V, 5) cameras.

    Geoms in `hidden_group` are not drawn (scenes hide the objects they do not use there).
    """

    def __init__(self, xml: str, size: int, hidden_group: int | None = None):
        self.model = mujoco.MjModel.from_xml_string(xml)
        # Scenes move geoms by editing geom_pos; MuJoCo would otherwise keep using the frame
        # that a geom shared with its body at compile time.
        self.model.geom_sameframe[:] = 0
        self.data = mujoco.MjData(self.model)
        self.renderer = mujoco.Renderer(self.model, size, size)
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self.camera.distance = 1.0
        self.option = mujoco.MjvOption()
        if hidden_group is not None:
            self.option.geomgroup[hidden_group] = 0

    def _views(self, cameras: np.ndarray):
        mujoco.mj_forward(self.model, self.data)
        for x, y, z, yaw, pitch in cameras.astype(np.float64):
            forward = np.array(
                [math.cos(pitch) * math.cos(yaw), -math.cos(pitch) * math.sin(yaw), math.sin(pitch)]
            )
            self.camera.lookat[:] = np.array([x, y, z]) + forward * self.camera.distance
            self.camera.azimuth = -math.degrees(yaw)
            self.camera.elevation = math.degrees(pitch)
            self.renderer.update_scene(self.data, camera=self.camera, scene_option=self.option)
            yield self.renderer.render().copy()

    def render(self, cameras: np.ndarray) -> np.ndarray:
        return np.stack(list(self._views(cameras)))

    def segment(self, cameras: np.ndarray) -> np.ndarray:
        """(V, size, size) geom id seen at each pixel, -1 for none: what tests check frames against."""
        self.renderer.enable_segmentation_rendering()
        try:
            ids = np.stack([seg[..., 0] for seg in self._views(cameras)])
        finally:
            self.renderer.disable_segmentation_rendering()
        return ids

    def close(self) -> None:
        self.renderer.close()
