"""gqn.cameras: the pinhole model of a GQN camera, checked against the renderer that made the data."""

import math

import numpy as np
import pytest
import torch

from gqn.cameras import axes, pixel_centres, project, rays, ring_cameras, sphere_cameras
from gqn.data import viewpoints
from gqn.data.table import DATASETS
from gqn.synth.gl import choose_gl

SIZE = 512  # 8x the datasets' frames, so that the centroid of a small drawn ball is precise
FRAME = 64  # errors are measured in pixels of the datasets' 64 px frames


def sphere_scene(fov: float) -> str:
    return f"""
<mujoco>
  <visual><global offwidth="{SIZE}" offheight="{SIZE}" fovy="{fov}"/></visual>
  <worldbody><geom name="ball" type="sphere" size=".05" pos="0 0 0"/></worldbody>
</mujoco>"""


def drawn_at(renderer, cameras: np.ndarray) -> np.ndarray:
    """(V, 2) pixel coordinates (column, row; pixel centres at +0.5) of the ball's centroid."""
    ids = renderer.segment(cameras)
    out = []
    for seen in ids:
        rows, cols = np.nonzero(seen >= 0)
        assert len(rows) > 0, "the ball is not in the frame"
        out.append([cols.mean() + 0.5, rows.mean() + 0.5])
    return np.array(out)


@pytest.mark.parametrize("dataset", ["shepard_metzler_5_parts", "rooms_ring_camera"])
def test_a_point_projects_where_mujoco_draws_it(dataset):
    choose_gl()  # before MuJoCo is imported: it reads MUJOCO_GL then
    from gqn.synth.views import ViewRenderer

    fov = DATASETS[dataset].fov
    renderer = ViewRenderer(sphere_scene(fov), SIZE)
    rng = np.random.default_rng(0)
    if dataset.startswith("shepard"):
        cameras = sphere_cameras(rng.uniform(0, 2 * np.pi, 6), rng.uniform(-1.2, 1.2, 6), 10 / 3)
    else:
        cameras = ring_cameras(rng.uniform(0, 2 * np.pi, 6), 3.0, 1.0)
    errors = []
    for point in ([0.0, 0.0, 0.0], [0.6, -0.4, 0.3], [-0.5, 0.7, -0.6], [0.9, 0.2, 0.5]):
        renderer.model.geom_pos[0] = point
        renderer.model.geom_sameframe[:] = 0
        drawn = drawn_at(renderer, cameras)
        grid, depth = project(
            torch.tensor([point], dtype=torch.float64).expand(len(cameras), 1, 3),
            viewpoints(torch.from_numpy(cameras).double()),
            fov,
        )
        assert (depth > 0).all()
        predicted = (grid[:, 0].numpy() + 1) / 2 * SIZE  # grid_sample's (x, y) -> (column, row)
        errors.append(np.abs(predicted - drawn).max() * FRAME / SIZE)
    renderer.close()
    # within half a pixel is the promise; measured, it is within 0.03
    assert max(errors) < 0.1, f"projection is {max(errors):.3f} px from where MuJoCo draws the point"


def test_axes_are_orthonormal_and_right_handed():
    yaw, pitch = torch.tensor([0.3, 2.0, -1.0]), torch.tensor([0.1, -0.7, 1.2])
    v = viewpoints(torch.stack([torch.zeros(3), torch.zeros(3), torch.zeros(3), yaw, pitch], 1))
    _, f, r, u = axes(v)
    frame = torch.stack([r, u, -f], 1)  # camera x right, y up, looking down -z
    assert torch.allclose(frame @ frame.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(frame), torch.ones(3), atol=1e-6)
    assert (u[:, 2] >= 0).all()  # up is up while |pitch| < 90 degrees


def test_rays_pass_through_the_points_that_project_to_their_cells():
    v = viewpoints(
        torch.tensor([[1.0, -2.0, 0.5, 0.7, -0.2], [0.0, 3.0, 1.0, 4.0, 0.4]], dtype=torch.float64)
    )
    origin, direction = rays(v, 8, 75.0)  # (2, 3), (2, 8, 8, 3)
    points = origin[:, None] + 2.5 * direction.flatten(1, 2)  # depth 2.5 along each ray
    grid, depth = project(points, v, 75.0)
    centres = pixel_centres(8).double().flatten(0, 1)  # (64, 2) of (x, y)
    assert torch.allclose(grid[0], centres * torch.tensor([1.0, -1.0], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(depth, torch.full_like(depth, 2.5))


def test_pixel_centres_put_row_zero_at_the_top():
    c = pixel_centres(4)
    assert c[0, 0].tolist() == [-0.75, 0.75] and c[3, 3].tolist() == [0.75, -0.75]


def test_a_point_behind_the_camera_has_negative_depth():
    v = viewpoints(torch.tensor([[-3.0, 0.0, 0.0, 0.0, 0.0]]))  # at -x looking along +x
    _, depth = project(torch.tensor([[[-4.0, 0.0, 0.0], [1.0, 0.0, 0.0]]]), v, 90.0)
    assert depth.tolist() == [[-1.0, 4.0]]
    assert math.isclose(project(torch.tensor([[[0.0, -3.0, 0.0]]]), v, 90.0)[0][0, 0, 0].item(), 1.0)
