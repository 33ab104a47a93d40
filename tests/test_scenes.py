"""read_scenes / write_scenes: round trips, the real reference scene, files written by TensorFlow."""

import os

import numpy as np
import pytest
from conftest import FIXTURES, assert_shepard_metzler_cameras, random_scene

from gqn.data import Scene, read_scenes, write_scenes
from gqn.data.table import DATASETS

TF_CASES = sorted(p.stem for p in (FIXTURES / "tensorflow").glob("*.tfrecord"))


def test_reference_scene_reads_as_15_views_on_the_sphere(reference_file):
    (scene,) = list(read_scenes(reference_file))
    assert scene.frames.shape == (15, 64, 64, 3) and scene.frames.dtype == np.uint8
    assert scene.cameras.shape == (15, 5) and scene.cameras.dtype == np.float32
    assert_shepard_metzler_cameras(scene.cameras)
    # The background is black: the corners of every view.
    assert scene.frames[:, :4, :4].max() < 20


def test_write_then_read_arrays(tmp_path):
    rng = np.random.default_rng(1)
    scenes = [random_scene(rng, views=7, size=32) for _ in range(3)]
    assert write_scenes(tmp_path / "s.tfrecord", scenes) == 3
    back = list(read_scenes(tmp_path / "s.tfrecord"))
    assert len(back) == 3
    for a, b in zip(scenes, back):
        np.testing.assert_array_equal(a.cameras, b.cameras)
        assert b.frames.shape == (7, 32, 32, 3)
        # JPEG at quality 95 of flat blocks: close, not exact.
        assert np.abs(a.frames.astype(int) - b.frames).mean() < 2.0


def test_write_jpeg_bytes_as_given(tmp_path, reference_file):
    (encoded,) = list(read_scenes(reference_file, decode=False))
    write_scenes(tmp_path / "copy.tfrecord", [Scene([bytes(j) for j in encoded.jpegs], encoded.cameras)])
    assert (tmp_path / "copy.tfrecord").read_bytes() == open(reference_file, "rb").read()


def test_write_is_atomic(tmp_path):
    def scenes():
        yield random_scene(np.random.default_rng(0))
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError):
        write_scenes(tmp_path / "s.tfrecord", scenes())
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one


def test_write_rejects_mismatched_cameras(tmp_path):
    scene = random_scene(np.random.default_rng(0), views=4)
    with pytest.raises(ValueError, match=r"cameras must be \(4, 5\)"):
        write_scenes(tmp_path / "s.tfrecord", [Scene(scene.frames, scene.cameras[:3])])


def test_fixtures_cover_every_frame_size_and_view_count():
    sizes = {(d.image_size, d.views) for d in DATASETS.values()}
    covered = {(DATASETS[n].image_size, DATASETS[n].views) for n in TF_CASES}
    # rooms_free_camera_no_object_rotations shares (64, 10) with rooms_ring_camera,
    # shepard_metzler_7_parts shares (64, 15) with the 5-part dataset.
    assert {s for s, _ in sizes} == {s for s, _ in covered}
    assert {v for _, v in sizes} == {v for _, v in covered}


@pytest.mark.parametrize("name", TF_CASES)
def test_files_written_by_tensorflow(name, tmp_path):
    """Files from tf.io.TFRecordWriter read with TF's cameras and pixels, and we write them alike."""
    path = FIXTURES / "tensorflow" / f"{name}.tfrecord"
    expected = np.load(FIXTURES / "tensorflow" / f"{name}.npz", allow_pickle=False)
    scenes = list(read_scenes(path))
    info = DATASETS[name]
    assert len(scenes) == len(expected["cameras"])
    for scene, cameras, tf_frames in zip(scenes, expected["cameras"], expected["frames"]):
        assert scene.frames.shape == (info.views, info.image_size, info.image_size, 3)
        np.testing.assert_array_equal(scene.cameras, cameras)
        # Both are libjpeg-turbo with TensorFlow's default fast integer DCT: the same pixels.
        np.testing.assert_array_equal(scene.frames[: len(tf_frames)], tf_frames)
    encoded = list(read_scenes(path, decode=False))
    write_scenes(tmp_path / "again.tfrecord", encoded)
    assert (tmp_path / "again.tfrecord").read_bytes() == path.read_bytes()


def test_written_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    write_scenes(tmp_path / "s.tfrecord", [random_scene(np.random.default_rng(0), views=2, size=16)])
    assert (tmp_path / "s.tfrecord").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
