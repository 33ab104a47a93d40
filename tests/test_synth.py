"""`gqn data synth`: rendered datasets in the official format, with the real data's conventions."""

import math

import numpy as np
import pytest
from conftest import assert_shepard_metzler_cameras

from gqn.cli import main
from gqn.data import SceneDataset, read_scenes
from gqn.errors import GQNError
from gqn.synth import make_family, synthesize
from gqn.synth.gl import choose_gl

SM_ARGS = {"train_scenes": 30, "test_scenes": 10, "seed": 3, "scenes_per_file": 20, "progress": False}


@pytest.fixture(scope="module")
def sm_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthesize("shepard_metzler_5_parts", root, workers=2, **SM_ARGS)
    return root


def all_scenes(folder):
    return [s for f in sorted(folder.glob("*.tfrecord")) for s in read_scenes(f)]


def test_layout_and_counts(sm_root):
    train = sorted(p.name for p in (sm_root / "shepard_metzler_5_parts" / "train").iterdir())
    assert train == ["1-of-2.tfrecord", "2-of-2.tfrecord"]
    ds = SceneDataset(sm_root / "shepard_metzler_5_parts", split="test")
    assert len(ds) == 10 and ds.views == 15 and ds.stored_size == 64


def test_shepard_metzler_cameras_follow_the_real_convention(sm_root):
    cameras = np.concatenate([s.cameras for s in all_scenes(sm_root / "shepard_metzler_5_parts" / "train")])
    assert_shepard_metzler_cameras(cameras)
    k_yaw = cameras[:, 3] / (math.pi / 50)
    assert len(np.unique(np.round(k_yaw))) > 50  # the whole circle is used


def test_shepard_metzler_frames_show_the_whole_object_on_black(sm_root):
    frames = np.stack([s.frames for s in all_scenes(sm_root / "shepard_metzler_5_parts" / "train")])
    bright = frames.max(-1) > 40  # (scenes, views, H, W); JPEG noise stays well below 40
    assert bright.any((2, 3)).all()  # every view shows the object
    border = np.concatenate(
        [bright[..., 0, :], bright[..., -1, :], bright[..., :, 0], bright[..., :, -1]], -1
    )
    assert not border.any()  # and all of it: nothing touches the frame's edge
    assert frames[..., :3, :3, :].max() < 20  # black background
    coverage = bright.mean()
    assert 0.05 < coverage < 0.2  # the real reference scene: 0.10


def test_same_seed_same_bytes_whatever_the_workers(sm_root, tmp_path):
    synthesize("shepard_metzler_5_parts", tmp_path, workers=1, **SM_ARGS)
    for split in ("train", "test"):
        for ours in sorted((tmp_path / "shepard_metzler_5_parts" / split).iterdir()):
            assert ours.read_bytes() == (sm_root / "shepard_metzler_5_parts" / split / ours.name).read_bytes()
    other = tmp_path / "other"
    synthesize(
        "shepard_metzler_5_parts", other, train_scenes=0, test_scenes=10, seed=4, workers=1, progress=False
    )
    assert (other / "shepard_metzler_5_parts/test/1-of-1.tfrecord").read_bytes() != (
        tmp_path / "shepard_metzler_5_parts/test/1-of-1.tfrecord"
    ).read_bytes()


def test_files_pass_verify(sm_root, capsys):
    assert main(["data", "verify", str(sm_root), "--workers", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("3 files, 40 scenes, ")


@pytest.mark.parametrize(
    "dataset",
    ["rooms_ring_camera", "rooms_free_camera_no_object_rotations", "rooms_free_camera_with_object_rotations"],
)
def test_rooms_frames_show_floor_and_walls(dataset):
    choose_gl()
    family = make_family(dataset)
    try:
        for seed in range(3):
            scene = family.scene(np.random.default_rng(seed))
            assert scene.frames.shape[:2] == (10, 128 if "with_object" in dataset else 64)
            ids = family.renderer.segment(scene.cameras)
            floor = (ids == family.floor_geom).mean((1, 2))
            walls = np.isin(ids, family.wall_geoms).mean((1, 2))
            assert (floor > 0.01).all() and (walls > 0.01).all(), (
                floor,
                walls,
            )  # at least 40 pixels of 64x64
            objects = [g for gs in family.object_geoms.values() for g in gs]
            assert np.isin(ids, objects).any()  # some view sees an object
            if "ring" in dataset:
                np.testing.assert_allclose(np.hypot(scene.cameras[:, 0], scene.cameras[:, 1]), 3.0, atol=1e-5)
    finally:
        family.close()


def test_out_of_scope_and_unknown_datasets(tmp_path):
    with pytest.raises(GQNError, match="jaco cannot be synthesized: jaco and mazes are out of scope"):
        synthesize("jaco", tmp_path)
    with pytest.raises(GQNError, match="unknown dataset 'rooms'"):
        synthesize("rooms", tmp_path)


def test_missing_opengl_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "nonexistent")
    with pytest.raises(GQNError, match=r"no headless OpenGL for MuJoCo .*apt-get install libosmesa6"):
        choose_gl()


def test_cli_synth_and_compare(tmp_path, reference_file, capsys):
    out = tmp_path / "data"
    assert (
        main(
            [
                "data",
                "synth",
                "shepard_metzler_7_parts",
                "--out",
                str(out),
                "--train-scenes",
                "0",
                "--test-scenes",
                "3",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert "shepard_metzler_7_parts: 3 scenes in 1 files" in capsys.readouterr().out
    sheet = tmp_path / "compare.png"
    assert (
        main(
            [
                "data",
                "compare",
                str(out / "shepard_metzler_7_parts"),
                "--reference",
                reference_file,
                "--out",
                str(sheet),
                "--scenes",
                "3",
            ]
        )
        == 0
    )
    from PIL import Image

    assert Image.open(sheet).size == (8 * (128 + 2) + 2, 4 * (128 + 2) + 2)
