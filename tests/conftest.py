import json
import os
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from gqn.data import Scene, write_scenes
from gqn.data.table import file_name
from gqn.model import PRESETS, GQNConfig

# DeepMind's real scene, kept in the repository: the tests need nothing beside it.
REFERENCE = Path(__file__).resolve().parents[1] / "examples" / "reference"
REFERENCE_FILE = REFERENCE / "shepard_metzler_5_parts" / "test" / "1-of-1.tfrecord"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Every test gets its own index cache and starts from the same torch seed."""
    monkeypatch.setenv("GQN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    torch.manual_seed(0)


def random_scene(rng, views=15, size=64) -> Scene:
    """Flat coloured blocks on black (JPEG keeps them well) and cameras on the 10/3 sphere."""
    frames = np.zeros((views, size, size, 3), np.uint8)
    for f in frames:
        x0, y0 = rng.integers(0, size // 2, 2)
        f[y0 : y0 + size // 3, x0 : x0 + size // 3] = rng.integers(60, 255, 3)
    yaw = rng.integers(0, 100, views) * np.pi / 50
    pitch = rng.integers(-45, 48, views) * np.pi / 100
    r = 10 / 3
    cameras = np.stack(
        [-r * np.cos(pitch) * np.cos(yaw), r * np.cos(pitch) * np.sin(yaw), -r * np.sin(pitch), yaw, pitch], 1
    ).astype(np.float32)
    return Scene(frames, cameras)


def make_dataset(
    root, name="shepard_metzler_5_parts", files=(3, 2), scenes_per_file=4, views=15, size=64, seed=0
):
    """Write `<root>/<name>/{train,test}/i-of-n.tfrecord` with random scenes; returns the dataset folder."""
    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "test"), files):
        folder = Path(root) / name / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            scenes = [random_scene(rng, views, size) for _ in range(scenes_per_file)]
            write_scenes(folder / file_name(i, n), scenes)
    return Path(root) / name


def tiny(**fields) -> GQNConfig:
    """The tiny preset, with `fields` changed: the model of every test that needs a small one."""
    return replace(PRESETS["tiny"], **fields)


def tiny_training(data, run_dir, **overrides):
    """The TrainConfig of a short CPU run of the tiny preset: batch 4, no worker processes, no
    evaluation, 3 steps; `overrides` change any field."""
    from gqn.train import TrainConfig

    settings = dict(config="tiny", batch_size=4, max_steps=3, workers=0, eval_every=0)
    return TrainConfig(data=str(data), run_dir=str(run_dir), **{**settings, **overrides})


def train_tiny(root, scenes_per_file: int, name="shepard_metzler_5_parts", model=None, **overrides):
    """A tiny model trained on a fresh random dataset `name` in `root`: (data folder, run folder).

    `model`: a GQNConfig to train instead of the tiny preset (written to `root/model.json`, the
    run's --config); `overrides`: fields of `tiny_training`'s TrainConfig.
    """
    from gqn.train import train

    data = str(make_dataset(root, name, files=(1, 1), scenes_per_file=scenes_per_file))
    run = Path(root) / "run"
    if model is not None:
        config = Path(root) / "model.json"
        config.write_text(json.dumps({"model": model.to_dict()}))
        overrides = {"config": str(config), **overrides}
    train(tiny_training(data, run, **overrides))
    return data, run


TRAINED_STEPS = 40  # of `trained_tiny`: enough for its predictions to follow the camera and the context
TRAINED_SCENES = 12  # of each split of its data


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """The tiny preset trained for TRAINED_STEPS steps, once per session, for every test that
    needs a trained model but not a particular training: (data folder, run folder), to read only
    (a test that trains on from it copies the run folder first)."""
    root = tmp_path_factory.mktemp("trained_tiny")
    with pytest.MonkeyPatch.context() as mp:  # session fixtures run before `_isolated`
        mp.setenv("GQN_CACHE_DIR", str(root / "cache"))
        return train_tiny(root, TRAINED_SCENES, max_steps=TRAINED_STEPS)


def free_port() -> int:
    """A TCP port of this machine that nothing listens on now (the system picks it), so that
    tests running side by side never ask for the same one."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@pytest.fixture
def dataset_dir(tmp_path):
    return make_dataset(tmp_path)


@pytest.fixture(scope="session")
def reference_file():
    assert REFERENCE_FILE.exists(), f"the reference scene is missing: {REFERENCE_FILE}"
    return str(REFERENCE_FILE)


def pytest_configure(config):
    os.environ.setdefault("OMP_NUM_THREADS", "2")


def assert_shepard_metzler_cameras(cameras: np.ndarray) -> None:
    """The convention measured on DeepMind's data (examples/reference/README.md), for every view:
    on the sphere of radius 10/3, the position formula, yaw k π/50 in [0, 2π), pitch k π/100 in
    [-0.45π, 0.48π]."""
    x, y, z, yaw, pitch = cameras.T.astype(np.float64)
    r = 10 / 3
    np.testing.assert_allclose(np.sqrt(x**2 + y**2 + z**2), r, atol=1e-5)
    np.testing.assert_allclose(x, -r * np.cos(pitch) * np.cos(yaw), atol=1e-5)
    np.testing.assert_allclose(y, r * np.cos(pitch) * np.sin(yaw), atol=1e-5)
    np.testing.assert_allclose(z, -r * np.sin(pitch), atol=1e-5)
    k_yaw, k_pitch = yaw / (np.pi / 50), pitch / (np.pi / 100)
    np.testing.assert_allclose(k_yaw, np.round(k_yaw), atol=1e-4)
    np.testing.assert_allclose(k_pitch, np.round(k_pitch), atol=1e-4)
    assert 0 <= yaw.min() and yaw.max() < 2 * np.pi
    assert -45 <= np.round(k_pitch).min() and np.round(k_pitch).max() <= 48
