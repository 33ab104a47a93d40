"""Shepard-Metzler objects: N unit cubes joined face to face along a random self-avoiding path.

As in DeepMind's shepard_metzler_{5,7}_parts (measured on the real scene in examples/reference):
the object is centred at the origin, each cube has its own strongly saturated colour of random
hue, the background is black, and the cameras sit on the sphere of radius 10/3 looking at the
origin, yaw on multiples of π/50 in [0, 2π), pitch on multiples of π/100 in [-0.45π, 0.48π].
"""

from __future__ import annotations

import colorsys

import numpy as np

from gqn.cameras import sphere_cameras
from gqn.data.scenes import Scene
from gqn.data.table import DATASETS, SPHERE
from gqn.synth.views import ViewRenderer

RADIUS = SPHERE.radius
YAW_STEPS = 100  # yaw = k π/50, k in 0..99
PITCH_RANGE = (-45, 48)  # pitch = k π/100, k in this range (inclusive)
# 100 degrees, from the datasets' table: the object then covers as much of the frame as in the
# real data (see README).
FOVY = DATASETS["shepard_metzler_5_parts"].fov
# A point seen from every camera of the sphere lies within RADIUS sin(FOVY / 2) = 2.55 of the centre.
REACH = 2.5
STEPS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])


def cube_path(parts: int, rng: np.random.Generator) -> np.ndarray:
    """(parts, 3) cube centres of a random self-avoiding walk, each a face neighbour of the last,
    centred on the middle of their bounding box.

    The walk turns at every cube, as the arms of Shepard and Metzler's figures do, and no cube
    corner lies farther than REACH from the centre, so that at the real data's wide field of
    view the object is inside the frame from every camera (a straight run of 5 cubes would come
    within 0.8 of a camera on the 10/3 sphere).
    """
    while True:
        cells = [np.zeros(3, int)]
        taken = {(0, 0, 0)}
        last = np.zeros(3, int)
        while len(cells) < parts:
            free = [s for s in STEPS if tuple(cells[-1] + s) not in taken and not (s == last).all()]
            if not free:
                break  # boxed in (only possible for long walks): start again
            last = free[rng.integers(len(free))]
            cell = cells[-1] + last
            cells.append(cell)
            taken.add(tuple(cell))
        if len(cells) < parts:
            continue
        centres = np.array(cells) - (np.min(cells, 0) + np.max(cells, 0)) / 2
        if np.linalg.norm(centres, axis=1).max() + np.sqrt(3) / 2 <= REACH:
            return centres


def scene_xml(parts: int, size: int) -> str:
    cubes = "\n".join(f'<geom name="cube{i}" type="box" size=".5 .5 .5"/>' for i in range(parts))
    return f"""
<mujoco>
  <visual>
    <global offwidth="{size}" offheight="{size}" fovy="{FOVY}"/>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient=".15 .15 .15" diffuse=".3 .3 .3" specular="0 0 0"/>
  </visual>
  <worldbody>
    <light directional="true" dir="-.4 -.3 -1" diffuse=".6 .6 .6" specular=".1 .1 .1" castshadow="false"/>
    <body name="object">{cubes}</body>
  </worldbody>
</mujoco>"""


class ShepardMetzler:
    """Renders Shepard-Metzler scenes of `parts` cubes with `views` cameras each."""

    def __init__(self, parts: int, views: int, size: int):
        self.parts, self.views = parts, views
        self.renderer = ViewRenderer(scene_xml(parts, size), size)

    def scene(self, rng: np.random.Generator) -> Scene:
        model = self.renderer.model
        model.geom_pos[:] = cube_path(self.parts, rng)
        hues, saturations = rng.random(self.parts), rng.uniform(0.75, 1.0, self.parts)
        model.geom_rgba[:] = [(*colorsys.hsv_to_rgb(h, s, 1.0), 1.0) for h, s in zip(hues, saturations)]
        yaw = rng.integers(0, YAW_STEPS, self.views) * np.pi / 50
        pitch = rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1, self.views) * np.pi / 100
        cameras = sphere_cameras(yaw, pitch, RADIUS)
        return Scene(self.renderer.render(cameras), cameras)

    def close(self) -> None:
        self.renderer.close()
