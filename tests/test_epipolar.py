"""The epipolar representation: gathering context features where the query's rays land."""

from dataclasses import replace

import numpy as np
import torch

from gqn.cameras import pixel_centres, project, sphere_cameras
from gqn.data import viewpoints
from gqn.epipolar import gather
from gqn.model import GQN, PRESETS

FOV = 100.0


def cameras(n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return viewpoints(
        torch.from_numpy(sphere_cameras(rng.uniform(0, 2 * np.pi, n), rng.uniform(-1, 1, n), 10 / 3))
    )


def test_gathering_a_map_of_positions_returns_the_projected_positions():
    # Each context view's feature map holds, at every cell, that cell's own (x, -y) grid position:
    # reading it where a point lands must give back where the point lands.
    b, k, size = 2, 3, 32
    v = cameras(b * k, 0).view(b, k, 7)
    position_map = pixel_centres(size) * torch.tensor([1.0, -1.0])  # (size, size, 2): (x, -y)
    features = position_map.permute(2, 0, 1).expand(b, k, 2, size, size)
    points = torch.from_numpy(np.random.default_rng(1).uniform(-0.8, 0.8, (b, 50, 3))).float()
    values, seen = gather(features, v, points, FOV)  # (B, K, 2, P), (B, K, P)
    grid, depth = project(points[:, None].expand(b, k, -1, 3), v, FOV)  # (B, K, P, 2)
    inner = (grid.abs() < 1 - 1 / size).all(-1)  # away from the border, where bilinear reads zeros
    assert inner.float().mean() > 0.9 and (seen.bool() == ((grid.abs() <= 1).all(-1) & (depth > 0))).all()
    got = values.permute(0, 1, 3, 2)[inner]
    torch.testing.assert_close(got, grid[inner], atol=1e-5, rtol=0)


def test_points_a_view_cannot_see_read_zero():
    v = viewpoints(torch.tensor([[[-3.0, 0.0, 0.0, 0.0, 0.0]]]))  # at -x looking along +x
    features = torch.ones(1, 1, 4, 8, 8)
    behind, outside = [-5.0, 0.0, 0.0], [0.0, 20.0, 0.0]
    values, seen = gather(features, v, torch.tensor([[behind, outside, [0.0, 0.0, 0.0]]]), 90.0)
    assert seen.tolist() == [[[0.0, 0.0, 1.0]]]
    assert values[0, 0, :, :2].abs().max() == 0 and torch.allclose(values[0, 0, :, 2], torch.ones(4))


def test_the_representation_depends_on_the_query_camera():
    torch.manual_seed(0)
    model = GQN(replace(PRESETS["epipolar"], r_channels=16, fov=FOV, near=0.8, far=5.9, depth_samples=8))
    x = torch.rand(2, 3, 3, 32, 32)
    v = cameras(8, 2).view(2, 4, 7)
    r1 = model.represent(x, v[:, :3], v[:, 3])
    r2 = model.represent(x, v[:, :3], v[:, 0])
    assert r1.shape == (2, 16, 8, 8) and (r1 - r2).abs().max() > 1e-3
