"""Rendering a MuJoCo scene from GQN cameras (x, y, z, yaw, pitch), in the convention of
`gqn.cameras`. In MuJoCo's free camera that is azimuth = -yaw and elevation = pitch (degrees),
looking at position + `gqn.cameras.forward(yaw, pitch)`.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from gqn.cameras import forward


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
            self.camera.lookat[:] = np.array([x, y, z]) + forward(yaw, pitch) * self.camera.distance
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
