"""Rooms: a 7x7 room with textured walls and floor and 1 to 3 coloured objects, as in DeepMind's
rooms_ring_camera, rooms_free_camera_no_object_rotations and rooms_free_camera_with_object_rotations.

Objects are drawn from 7 shapes with random colours and stand on the floor; walls wear one of 5
textures and the floor one of 3; a directional light casts shadows. The camera either circles
the room on a ring facing its centre (`ring`) or stands anywhere inside it looking in any
direction (`free`). Cameras follow the convention of `gqn.synth.views`.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np

from gqn.cameras import forward
from gqn.data.scenes import Scene
from gqn.data.table import DATASETS, RING
from gqn.synth.views import ViewRenderer

HALF = 3.5  # the room spans [-3.5, 3.5] in x and y
WALL_HEIGHT = 3.0
EYE = RING.height  # camera height: the ring's (gqn.data.table), about which free cameras stand
OBJECT_AREA = 2.4  # objects stand within [-2.4, 2.4]^2, at least MIN_GAP apart
MIN_GAP = 1.3
MIN_VIEW_DEPTH = 2.5  # a free camera looks at a wall at least this far away, so it sees floor too
FOVY = DATASETS["rooms_ring_camera"].fov  # 60 degrees, the same for the three rooms datasets
HIDDEN = 3  # geom group of the objects not in the current scene; not rendered

# 7 shapes, each (MJCF geom attributes, height of its centre above the floor).
SHAPES = {
    "cube": ('type="box" size=".35 .35 .35"', 0.35),
    "sphere": ('type="sphere" size=".4"', 0.4),
    "cylinder": ('type="cylinder" size=".3 .4"', 0.4),
    "capsule": ('type="capsule" size=".25 .3"', 0.55),
    "ellipsoid": ('type="ellipsoid" size=".45 .25 .3"', 0.3),
    "cone": ('type="mesh" mesh="cone"', 0.0),
    "pyramid": ('type="mesh" mesh="pyramid"', 0.0),
}
MAX_OBJECTS = 3

# Builtin MuJoCo textures: 5 for the walls, 3 for the floor.
WALL_TEXTURES = [
    'builtin="checker" rgb1=".75 .7 .6" rgb2=".6 .55 .5" width="64" height="64"',
    'builtin="gradient" rgb1=".8 .8 .85" rgb2=".45 .5 .6" width="64" height="64"',
    'builtin="flat" rgb1=".7 .55 .45" mark="random" markrgb=".5 .35 .3" random=".15" width="64" height="64"',
    'builtin="checker" rgb1=".5 .65 .55" rgb2=".4 .55 .45" width="32" height="32"',
    'builtin="flat" rgb1=".85 .8 .55" mark="edge" markrgb=".6 .55 .35" width="64" height="64"',
]
FLOOR_TEXTURES = [
    'builtin="checker" rgb1=".45 .45 .45" rgb2=".3 .3 .3" width="64" height="64"',
    'builtin="flat" rgb1=".5 .4 .3" mark="random" markrgb=".35 .28 .2" random=".2" width="64" height="64"',
    'builtin="gradient" rgb1=".55 .5 .4" rgb2=".35 .3 .25" width="64" height="64"',
]


def _cone_vertices(n: int = 16, radius: float = 0.38, height: float = 0.8) -> str:
    ring = [
        f"{radius * math.cos(2 * math.pi * i / n):.4f} {radius * math.sin(2 * math.pi * i / n):.4f} 0"
        for i in range(n)
    ]
    return " ".join([*ring, f"0 0 {height}"])


def scene_xml(size: int) -> str:
    textures = "\n".join(
        [f'<texture name="wall{i}" type="2d" {t}/>' for i, t in enumerate(WALL_TEXTURES)]
        + [f'<texture name="floor{i}" type="2d" {t}/>' for i, t in enumerate(FLOOR_TEXTURES)]
    )
    materials = "\n".join(
        [
            f'<material name="wall{i}" texture="wall{i}" texrepeat="4 1" texuniform="false"/>'
            for i in range(len(WALL_TEXTURES))
        ]
        + [
            f'<material name="floor{i}" texture="floor{i}" texrepeat="4 4"/>'
            for i in range(len(FLOOR_TEXTURES))
        ]
    )
    h = WALL_HEIGHT / 2
    walls = "\n".join(
        f'<geom name="wall{i}" type="box" pos="{x} {y} {h}" size="{sx} {sy} {h}" material="wall0"/>'
        for i, (x, y, sx, sy) in enumerate(
            [(HALF, 0, 0.05, HALF), (-HALF, 0, 0.05, HALF), (0, HALF, HALF, 0.05), (0, -HALF, HALF, 0.05)]
        )
    )
    objects = "\n".join(
        f'<geom name="{shape}{k}" {attrs} group="{HIDDEN}"/>'
        for shape, (attrs, _) in SHAPES.items()
        for k in range(MAX_OBJECTS)
    )
    return f"""
<mujoco>
  <asset>
    {textures}
    {materials}
    <mesh name="cone" vertex="{_cone_vertices()}"/>
    <mesh name="pyramid" vertex="-.35 -.35 0  .35 -.35 0  .35 .35 0  -.35 .35 0  0 0 .75"/>
  </asset>
  <visual>
    <global offwidth="{size}" offheight="{size}" fovy="{FOVY}"/>
    <quality shadowsize="1024" offsamples="0"/>
    <headlight ambient=".35 .35 .35" diffuse=".2 .2 .2" specular="0 0 0"/>
    <map znear=".02"/>
  </visual>
  <worldbody>
    <light directional="true" pos="2 1 6" dir="-.35 -.2 -1" diffuse=".6 .6 .6" specular=".1 .1 .1" castshadow="true"/>
    <geom name="floor" type="plane" size="{HALF} {HALF} .1" material="floor0"/>
    {walls}
    <body name="objects">{objects}</body>
  </worldbody>
</mujoco>"""


def _depth_to_wall(x: float, y: float, yaw: float) -> float:
    """Horizontal distance from (x, y) along the camera's heading to the nearest wall."""
    dx, dy, _ = forward(yaw, 0.0)
    ts = [(HALF - p * math.copysign(1, d)) / abs(d) for p, d in ((x, dx), (y, dy)) if abs(d) > 1e-9]
    return min(ts)


class Rooms:
    """Renders room scenes with `views` cameras each; camera "ring" or "free"."""

    def __init__(self, views: int, size: int, camera: str, rotate_objects: bool):
        self.views, self.camera_mode, self.rotate_objects = views, camera, rotate_objects
        self.renderer = ViewRenderer(scene_xml(size), size, hidden_group=HIDDEN)
        model = self.renderer.model
        self.wall_geoms = [model.geom(f"wall{i}").id for i in range(4)]
        self.floor_geom = model.geom("floor").id
        self.wall_materials = [model.material(f"wall{i}").id for i in range(len(WALL_TEXTURES))]
        self.floor_materials = [model.material(f"floor{i}").id for i in range(len(FLOOR_TEXTURES))]
        self.object_geoms = {s: [model.geom(f"{s}{k}").id for k in range(MAX_OBJECTS)] for s in SHAPES}

    def _place_objects(self, rng: np.random.Generator) -> None:
        model = self.renderer.model
        for ids in self.object_geoms.values():
            model.geom_group[ids] = HIDDEN
        count = int(rng.integers(1, MAX_OBJECTS + 1))
        positions: list[np.ndarray] = []
        while len(positions) < count:  # rejection sampling: objects apart from each other
            p = rng.uniform(-OBJECT_AREA, OBJECT_AREA, 2)
            if all(np.linalg.norm(p - q) >= MIN_GAP for q in positions):
                positions.append(p)
        names = list(SHAPES)
        for k, p in enumerate(positions):
            shape = names[rng.integers(len(names))]
            geom = self.object_geoms[shape][k]
            model.geom_group[geom] = 0
            model.geom_pos[geom] = [p[0], p[1], SHAPES[shape][1]]
            angle = rng.uniform(0, 2 * math.pi) if self.rotate_objects else 0.0
            model.geom_quat[geom] = [math.cos(angle / 2), 0, 0, math.sin(angle / 2)]
            hue, sat, val = rng.random(), rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)
            model.geom_rgba[geom] = [*colorsys.hsv_to_rgb(hue, sat, val), 1.0]

    def _cameras(self, rng: np.random.Generator) -> np.ndarray:
        v = self.views
        yaw = rng.uniform(0, 2 * math.pi, v)
        if self.camera_mode == "ring":
            return RING.cameras(yaw)
        x, y = np.empty(v), np.empty(v)
        for i in range(v):  # anywhere in the room, not facing a wall from up close
            while True:
                x[i], y[i] = rng.uniform(-HALF + 0.6, HALF - 0.6, 2)
                if _depth_to_wall(x[i], y[i], yaw[i]) >= MIN_VIEW_DEPTH:
                    break
                yaw[i] = rng.uniform(0, 2 * math.pi)
        z = rng.uniform(EYE - 0.3, EYE + 0.3, v)
        pitch = rng.uniform(-0.45, 0.1, v)
        return np.stack([x, y, z, yaw, pitch], 1).astype(np.float32)

    def scene(self, rng: np.random.Generator) -> Scene:
        model = self.renderer.model
        model.geom_matid[self.wall_geoms] = self.wall_materials[rng.integers(len(self.wall_materials))]
        model.geom_matid[self.floor_geom] = self.floor_materials[rng.integers(len(self.floor_materials))]
        self._place_objects(rng)
        cameras = self._cameras(rng)
        return Scene(self.renderer.render(cameras), cameras)

    def close(self) -> None:
        self.renderer.close()
