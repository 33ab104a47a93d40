"""The epipolar representation: gathering context features where the query's rays land."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from conftest import tiny, tiny_training, train_tiny
from PIL import Image

from gqn.cameras import pixel_centres, project, rays, sphere_cameras
from gqn.checkpoint import load_model
from gqn.cli import main
from gqn.data import viewpoints
from gqn.epipolar import along_ray_weights, gather, gather_along_rays
from gqn.model import GQN
from gqn.train import train

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


def test_gathering_along_rays_reads_what_gathering_their_points_reads():
    b, k = 2, 3
    v = cameras(b * k, 3).view(b, k, 7)
    query = cameras(b, 4)
    features = torch.rand(b, k, 5, 16, 16)
    origin, direction = rays(query, 8, FOV)
    direction = direction.flatten(1, 2)  # (B, 64, 3)
    depth = torch.linspace(1.0, 6.0, 7)
    points = (origin[:, None, None] + depth[:, None, None] * direction[:, None]).flatten(1, 2)
    values, seen, distance = gather_along_rays(features, v, origin, direction, depth, FOV)
    want_values, want_seen = gather(features, v, points, FOV)
    assert (
        0.2 < seen.mean() < 1 and (seen == want_seen).float().mean() > 0.999
    )  # a point on an edge may differ
    same = seen == want_seen
    torch.testing.assert_close(
        values.permute(0, 1, 3, 2)[same], want_values.permute(0, 1, 3, 2)[same], atol=1e-4, rtol=0
    )
    torch.testing.assert_close(
        distance, (points[:, None] - v[:, :, None, :3]).norm(dim=-1), atol=1e-4, rtol=1e-5
    )


def test_points_a_view_cannot_see_read_zero():
    v = viewpoints(torch.tensor([[[-3.0, 0.0, 0.0, 0.0, 0.0]]]))  # at -x looking along +x
    features = torch.ones(1, 1, 4, 8, 8)
    behind, outside = [-5.0, 0.0, 0.0], [0.0, 20.0, 0.0]
    values, seen = gather(features, v, torch.tensor([[behind, outside, [0.0, 0.0, 0.0]]]), 90.0)
    assert seen.tolist() == [[[0.0, 0.0, 1.0]]]
    assert values[0, 0, :, :2].abs().max() == 0 and torch.allclose(values[0, 0, :, 2], torch.ones(4))


def test_the_representation_depends_on_the_query_camera():
    torch.manual_seed(0)
    model = GQN(tiny(representation="epipolar", fov=FOV, near=0.8, far=5.9, depth_samples=8))
    x = torch.rand(2, 3, 3, 32, 32)
    v = cameras(8, 2).view(2, 4, 7)
    r1 = model.represent(x, v[:, :3], v[:, 3])
    r2 = model.represent(x, v[:, :3], v[:, 0])
    assert r1.shape == (2, 16, 8, 8) and (r1 - r2).abs().max() > 1e-3


@pytest.fixture(scope="module")
def epipolar_run(tmp_path_factory):
    """A tiny epipolar model trained for 3 steps (one of them deterministic), and its data."""
    root = tmp_path_factory.mktemp("epipolar")
    return train_tiny(root, 12, model=tiny(representation="epipolar"), deterministic_steps=1)


def test_training_takes_the_cameras_from_the_dataset_description(epipolar_run):
    _, run = epipolar_run
    model, loaded = load_model(run)
    assert loaded.step == 3
    assert (model.config.fov, model.config.near, model.config.far) == (100.0, 0.8, 5.9)


def gqn(command: str) -> int:
    return main(command.split())


def test_every_verb_works_with_an_epipolar_model(epipolar_run, tmp_path, capsys):
    data, run = epipolar_run
    on = f"--data {data} --scene 1"
    assert gqn(f"eval {run} --data {data} --scenes 4 --context 1,3 --out {tmp_path}/e.json") == 0
    assert "turning with the camera (10 cameras)" in capsys.readouterr().out
    assert gqn(f"render {run} {on} --out {tmp_path}/g.png") == 0
    assert gqn(f"render {run} {on} --orbit --frames 8 --out {tmp_path}/o.gif") == 0
    assert Image.open(tmp_path / "o.gif").n_frames == 8
    assert gqn(f"analyze {run} --data {data} --scenes 3 --sets 2 --prune-scenes 3 --out {tmp_path}/a") == 0
    assert gqn(f"export {run} --name sm5-epipolar --out {tmp_path}/w") == 0
    exported = tmp_path / "w" / "sm5-epipolar.safetensors"
    assert gqn(f"eval {exported} --data {data} --scenes 4 --context 1,3 --out {tmp_path}/x.json") == 0
    # The exported weights are the checkpoint's: every number of the report is the same.
    a, b = (json.loads((tmp_path / f).read_text())["results"] for f in ("e.json", "x.json"))
    assert a == b


def test_resuming_an_epipolar_run_continues_it(epipolar_run, tmp_path):
    data, run = epipolar_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    config = load_model(run)[1].train_config["config"]  # the model file the run was started with
    result = train(tiny_training(data, copy, config=config, max_steps=5, resume="auto"))
    assert result.step == 5 and math.isfinite(result.metrics["loss"])


def test_weights_along_a_ray_known_answers():
    logits = torch.tensor([0.0, 0.0, 40.0, 0.0])[None, :, None]  # (1, D=4, 1), nearest first
    soft = along_ray_weights(logits, "softmax")
    assert soft.sum().item() == pytest.approx(1.0) and soft[0, 2, 0].item() == pytest.approx(1.0)
    # transmittance: opacities 1/2, 1/2, ~1, 1/2 -> 1/2, 1/4, 1/4, then nothing is left
    torch.testing.assert_close(
        along_ray_weights(logits, "transmittance")[0, :, 0], torch.tensor([0.5, 0.25, 0.25, 0.0])
    )
    empty = along_ray_weights(torch.full((1, 4, 1), -40.0), "transmittance")
    assert empty.sum().item() < 1e-12  # a ray through empty space weighs nothing
