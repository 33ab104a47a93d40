"""The seven official GQN datasets (DeepMind's gqn-datasets, `data_reader.py`).

Counts are *files* per split. Files are named `{i:0N}-of-{n:0N}.tfrecord` with i from 1 and N the
number of digits of n, under `<root>/<name>/<split>/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gqn.cameras import CameraPath
from gqn.errors import GQNError

SPLITS = ("train", "test")

# The paths the datasets' cameras are turned along (gqn.cameras.CameraPath), by the names
# `gqn render --camera-path` takes.
SPHERE = CameraPath("sphere", radius=10 / 3)  # Shepard-Metzler: the radius measured on DeepMind's data
RING = CameraPath("ring", radius=3.0, height=1.0)  # the rooms' ring, as gqn data synth renders it
FREE = CameraPath("free")  # anywhere: the camera turns where it stands
CAMERA_PATHS = {path.name: path for path in (SPHERE, RING, FREE)}


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    image_size: int  # frames are image_size x image_size x 3
    views: int  # views (frames and cameras) per scene
    train_files: int
    test_files: int
    # The cameras' pinhole (gqn.cameras): field of view in degrees, and the depths between which
    # the scene lies from any camera; None where unknown. What is measured and what estimated is
    # in the README ("The cameras").
    fov: float | None = None
    near: float | None = None
    far: float | None = None
    camera: CameraPath = FREE  # the path `gqn render --orbit` and `gqn view` turn the camera along

    def files(self, split: str) -> int:
        return {"train": self.train_files, "test": self.test_files}[check_split(split)]

    def file_name(self, split: str, i: int) -> str:
        """Name of file i (from 1) of a split, e.g. `001-of-900.tfrecord`."""
        n = self.files(split)
        if not 1 <= i <= n:
            raise GQNError(f"{self.name}/{split} has files 1..{n}, not {i}")
        return file_name(i, n)

    def file_names(self, split: str) -> list[str]:
        return [self.file_name(split, i) for i in range(1, self.files(split) + 1)]


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("jaco", 64, 11, 3600, 400),
        DatasetInfo("mazes", 84, 300, 1080, 120),
        # rooms: 7 x 7, the ring camera 3 from the centre (gqn.synth.rooms); the free cameras
        # stand anywhere in the room, and are turned along the same ring
        DatasetInfo("rooms_free_camera_with_object_rotations", 128, 10, 2034, 226, 60.0, 0.1, 10.0, RING),
        DatasetInfo("rooms_ring_camera", 64, 10, 2160, 240, 60.0, 0.1, 7.0, RING),
        DatasetInfo("rooms_free_camera_no_object_rotations", 64, 10, 2160, 240, 60.0, 0.1, 10.0, RING),
        # Shepard-Metzler: cameras 10/3 from the centre, objects within 2.5 of it
        DatasetInfo("shepard_metzler_5_parts", 64, 15, 900, 100, 100.0, 0.8, 5.9, SPHERE),
        DatasetInfo("shepard_metzler_7_parts", 64, 15, 900, 100, 100.0, 0.8, 5.9, SPHERE),
    )
}

_FILE_RE = re.compile(r"^(\d+)-of-(\d+)\.tfrecord$")


def get_dataset(name: str) -> DatasetInfo:
    """The table entry for `name`; an unknown name is an error listing the valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise GQNError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}") from None


def camera_path(dataset: str) -> CameraPath:
    """The camera path of a dataset of the table; the free path for any other (data of one's own)."""
    return DATASETS[dataset].camera if dataset in DATASETS else FREE


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise GQNError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return split


def file_name(i: int, n: int) -> str:
    """Name of file i (from 1) of a set of n, `i-of-n.tfrecord` with both padded to n's digits."""
    digits = len(str(n))
    return f"{i:0{digits}d}-of-{n:0{digits}d}.tfrecord"


def parse_file_name(name: str) -> tuple[int, int] | None:
    """(i, n) of a file named `i-of-n.tfrecord`, or None if the name does not follow the layout."""
    m = _FILE_RE.match(name)
    if not m or len(m.group(1)) != len(m.group(2)):
        return None
    return int(m.group(1)), int(m.group(2))
