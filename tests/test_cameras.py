"""gqn.cameras: the pinhole model of a GQN camera, checked against the renderer that made the data,
the viewpoint the model sees, and the camera paths of the datasets' table."""

import math

import numpy as np
import pytest
import torch
from conftest import assert_shepard_metzler_cameras

from gqn.cameras import axes, forward, orbit_cameras, pixel_centres, project, project_rays, rays, viewpoints
from gqn.data.table import CAMERA_PATHS, DATASETS, FREE, RING, SPHERE, camera_path
from gqn.errors import GQNError
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


def path_cameras(path, rng: np.random.Generator) -> np.ndarray:
    """(6, 5) cameras on a path that see the middle of the scene: the free ones stand about 4 from
    it, each somewhere of its own, looking near it."""
    yaw, pitch = rng.uniform(0, 2 * np.pi, 6), rng.uniform(-1.2, 1.2, 6)
    if path != FREE:
        return path.cameras(yaw, pitch)
    position = -4 * forward(yaw, pitch) + rng.uniform(-0.3, 0.3, (6, 3))
    return path.cameras(yaw + rng.uniform(-0.05, 0.05, 6), pitch + rng.uniform(-0.05, 0.05, 6), position)


# Each path at the field of view of a dataset whose cameras move along it (free: as the free rooms')
@pytest.mark.parametrize(
    "path, dataset",
    [
        (SPHERE, "shepard_metzler_5_parts"),
        (RING, "rooms_ring_camera"),
        (FREE, "rooms_free_camera_no_object_rotations"),
    ],
    ids=lambda p: getattr(p, "name", ""),
)
def test_a_point_projects_where_mujoco_draws_it(path, dataset):
    choose_gl()  # before MuJoCo is imported: it reads MUJOCO_GL then
    from gqn.synth.views import ViewRenderer

    fov = DATASETS[dataset].fov
    renderer = ViewRenderer(sphere_scene(fov), SIZE)
    cameras = path_cameras(path, np.random.default_rng(0))
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


def test_the_viewpoint_encodes_the_camera_and_its_axes_give_it_back():
    rng = np.random.default_rng(1)
    yaw, pitch = rng.uniform(-2 * np.pi, 2 * np.pi, 8), rng.uniform(-1.5, 1.5, 8)
    cameras = np.concatenate([rng.uniform(-3, 3, (8, 3)), yaw[:, None], pitch[:, None]], 1)
    v = viewpoints(torch.from_numpy(cameras))  # (8, 5) -> (8, 7)
    known = np.concatenate(
        [cameras[:, :3], np.stack([np.sin(yaw), np.cos(yaw), np.sin(pitch), np.cos(pitch)], 1)], 1
    )
    np.testing.assert_allclose(v.numpy(), known, atol=1e-12)
    # and back: the position, and the direction the synthesizer points MuJoCo's camera along
    position, fwd, _, _ = axes(v)
    np.testing.assert_array_equal(position.numpy(), cameras[:, :3])
    np.testing.assert_allclose(fwd.numpy(), forward(yaw, pitch), atol=1e-12)
    back_yaw, back_pitch = torch.atan2(v[:, 3], v[:, 4]).numpy(), torch.asin(fwd[:, 2]).numpy()
    np.testing.assert_allclose((back_yaw - yaw + np.pi) % (2 * np.pi) - np.pi, 0, atol=1e-12)
    np.testing.assert_allclose(back_pitch, pitch, atol=1e-9)


def test_every_dataset_has_its_camera_path_in_the_table():
    paths = {name: info.camera for name, info in DATASETS.items()}
    assert paths["shepard_metzler_5_parts"] == paths["shepard_metzler_7_parts"] == SPHERE
    assert SPHERE.radius == pytest.approx(10 / 3)  # measured on DeepMind's data
    assert paths["rooms_ring_camera"] == RING and (RING.radius, RING.height) == (3.0, 1.0)
    assert paths["jaco"] == paths["mazes"] == FREE
    assert camera_path("shepard_metzler_7_parts") == SPHERE and camera_path("my_own_views") == FREE
    assert CAMERA_PATHS == {"sphere": SPHERE, "ring": RING, "free": FREE}


def test_orbit_cameras_lie_on_the_path():
    sphere = orbit_cameras(SPHERE, 36, pitch=0.3)
    x, y, z, yaw, pitch = sphere.T.astype(np.float64)
    r = 10 / 3
    np.testing.assert_allclose(np.sqrt(x**2 + y**2 + z**2), r, atol=1e-5)
    np.testing.assert_allclose(
        [x, y, z],
        [-r * np.cos(pitch) * np.cos(yaw), r * np.cos(pitch) * np.sin(yaw), -r * np.sin(pitch)],
        atol=1e-5,
    )
    np.testing.assert_allclose(np.diff(yaw), 2 * math.pi / 36, atol=1e-6)  # one full turn, evenly
    # The official encoding of each viewpoint: (x, y, z, sin yaw, cos yaw, sin pitch, cos pitch).
    v = viewpoints(torch.from_numpy(sphere)).numpy()
    np.testing.assert_allclose(
        v, np.stack([x, y, z, np.sin(yaw), np.cos(yaw), np.sin(pitch), np.cos(pitch)], 1), atol=1e-6
    )
    ring = orbit_cameras(RING, 40)
    np.testing.assert_allclose(np.hypot(ring[:, 0], ring[:, 1]), 3.0, atol=1e-5)
    np.testing.assert_allclose(ring[:, 2], 1.0)
    with pytest.raises(GQNError, match="the free camera path has no cameras of its own"):
        orbit_cameras(FREE)


def test_shepard_metzler_orbit_on_the_quantised_grid_is_a_real_camera():
    # On yaw multiples of π/50 and pitch multiples of π/100 the orbit's cameras are ones the data has.
    assert_shepard_metzler_cameras(orbit_cameras(SPHERE, 50, pitch=10 * math.pi / 100))


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


def test_projecting_rays_at_depths_is_projecting_their_points():
    # project_rays never forms the points origin + d direction; it must land them where project does
    v = viewpoints(torch.tensor([[1.0, -2.0, 0.5, 0.7, -0.2], [0.0, 3.0, 1.0, 4.0, 0.4]]))
    views = viewpoints(torch.tensor([[[3.0, 0.5, 1.0, 2.5, -0.3], [-2.0, -2.0, 0.0, 0.8, 0.2]]] * 2))
    origin, direction = rays(v, 6, 75.0)  # (2, 3), (2, 6, 6, 3)
    direction = direction.flatten(1, 2)  # (2, 36, 3)
    shared = torch.tensor([0.5, 1.0, 4.0])  # (D,): the same depths along every ray
    own = torch.rand(2, 3, 36) * 5  # (B, D, N): each ray its own
    for depth in (shared, own):
        along = depth[:, None, None] if depth.dim() == 1 else depth[..., None]
        points = (origin[:, None, None] + along * direction[:, None]).flatten(1, 2)  # depth-major
        grid, depths, distance = project_rays(origin, direction, depth, views, 75.0)  # (2, 2, 108, ...)
        want_grid, want_depth = project(points[:, None].expand(2, 2, -1, 3), views, 75.0)
        torch.testing.assert_close(grid, want_grid, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(depths, want_depth, atol=1e-5, rtol=1e-5)
        want_distance = (points[:, None] - views[:, :, None, :3]).norm(dim=-1)
        torch.testing.assert_close(distance, want_distance, atol=1e-5, rtol=1e-5)


def test_pixel_centres_put_row_zero_at_the_top():
    c = pixel_centres(4)
    assert c[0, 0].tolist() == [-0.75, 0.75] and c[3, 3].tolist() == [0.75, -0.75]


def test_a_point_behind_the_camera_has_negative_depth():
    v = viewpoints(torch.tensor([[-3.0, 0.0, 0.0, 0.0, 0.0]]))  # at -x looking along +x
    _, depth = project(torch.tensor([[[-4.0, 0.0, 0.0], [1.0, 0.0, 0.0]]]), v, 90.0)
    assert depth.tolist() == [[-1.0, 4.0]]
    assert math.isclose(project(torch.tensor([[[0.0, -3.0, 0.0]]]), v, 90.0)[0][0, 0, 0].item(), 1.0)
