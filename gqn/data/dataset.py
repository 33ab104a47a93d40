"""Random access to the scenes of one split, read in place from the TFRecord files.

Shapes: B batch, V views taken from each scene, H x W frames.

    ds = SceneDataset("data/shepard_metzler_5_parts", split="train")
    ds[12]                    # Scene with all views, decoded
    ds[(12, (3, 7, 0))]       # Scene with views 3, 7 and 0 only (only those JPEGs are decoded)
    ds.get_views(specs)       # a batch: {"frames": (B, V, H, W, 3) uint8, "cameras": (B, V, 5)}

File handles are opened lazily in the process that reads (so each DataLoader worker has its own),
record offsets come from the cached per-file index (`gqn.data.index`), and every record's data CRC
is checked as it is read.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gqn.data.index import record_index
from gqn.data.layout import find_split
from gqn.data.scenes import EncodedScene, Scene, parse_scene
from gqn.data.tfrecord import FOOTER_BYTES, HEADER_BYTES, check_data
from gqn.errors import DataError

ViewSpec = tuple[int, Sequence[int]]  # (scene index, view indices)


class SceneDataset(torch.utils.data.Dataset):
    """The scenes of one split of a GQN dataset in the official layout.

    path: the dataset folder (`<root>/<dataset>`, with `train/` and `test/`), a split folder or
        one TFRecord file.
    image_size: resize frames to image_size x image_size (None keeps the stored size).
    skip_corrupt: a corrupt record is replaced by the next sound scene, with a warning, instead
        of stopping with a `DataError`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        image_size: int | None = None,
        skip_corrupt: bool = False,
    ):
        self.source = find_split(path, split)
        self.files = self.source.files
        indexes = [record_index(f) for f in self.files]
        counts = [len(ix) for ix in indexes]
        if sum(counts) == 0:
            raise DataError(os.fspath(path), f"no scenes in {len(self.files)} file(s)")
        self.file_of = np.repeat(np.arange(len(self.files)), counts)
        self.records = np.concatenate([ix for ix in indexes if len(ix)])  # (N, 2) offset, length
        self.image_size = image_size
        self.skip_corrupt = skip_corrupt
        self.skipped = 0  # records replaced in this process (each worker counts its own)
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()
        first = self.encoded(0)
        self.views = first.views  # views per scene: every scene of a split has as many as the first
        self.stored_size = first.decode([0]).shape[1]
        self._check_views(self.encoded(len(self) - 1))  # a first scene unlike the rest shows here

    @property
    def dataset_name(self) -> str:
        return self.source.dataset

    def __len__(self) -> int:
        return len(self.records)

    def _fd(self, file: int) -> int:
        if os.getpid() != self._pid:  # a forked worker: never share the parent's descriptors
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(file)
        if fd is None:
            try:
                fd = self._fds[file] = os.open(self.files[file], os.O_RDONLY)
            except OSError as e:
                raise DataError(self.files[file], f"cannot open: {e.strerror}") from None
        return fd

    def encoded(self, index: int) -> EncodedScene:
        """Scene `index` as stored (JPEG bytes and cameras), its data CRC checked."""
        file = int(self.file_of[index])
        offset, length = (int(x) for x in self.records[index])
        path = self.files[file]
        blob = os.pread(self._fd(file), HEADER_BYTES + length + FOOTER_BYTES, offset)
        if len(blob) < HEADER_BYTES or struct.unpack_from("<Q", blob)[0] != length:
            raise DataError(path, "file changed since it was indexed; run again to re-index", offset)
        data = blob[HEADER_BYTES : HEADER_BYTES + length]
        check_data(path, offset, data, blob[HEADER_BYTES + length :], length)
        return parse_scene(data, path, offset)

    def _check_views(self, scene: EncodedScene) -> None:
        if scene.views != self.views:
            raise DataError(
                scene.path,
                f"scene has {scene.views} views where the split's first scene "
                f"({self.files[self.file_of[0]]} at byte {self.records[0][0]}) has {self.views}",
                scene.offset,
            )

    def _read(self, index: int, views: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
        scene = self.encoded(index)
        self._check_views(scene)
        if views is None:
            views = range(scene.views)
        elif max(views) >= scene.views:
            raise DataError(
                scene.path,
                f"scene has {scene.views} views, view {max(views)} was asked for",
                scene.offset,
            )
        return scene.decode(views), scene.cameras[list(views)]

    def read(self, index: int, views: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(frames (V, H, W, 3) uint8, cameras (V, 5)) of a scene, skipping corrupt ones if asked."""
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            try:
                return self._read(i, views)
            except DataError as e:
                if not self.skip_corrupt:
                    raise
                self.skipped += 1
                warnings.warn(f"skipping corrupt scene {i}: {e}", stacklevel=2)
        raise DataError(self.files[0], "every scene is corrupt")

    def __getitem__(self, item: int | ViewSpec) -> Scene:
        index, views = (item, None) if isinstance(item, (int, np.integer)) else item
        frames, cameras = self.read(int(index), views)
        if self.image_size is not None and frames.shape[1] != self.image_size:
            frames = resize(torch.from_numpy(frames)[None], self.image_size)[0].numpy()
        return Scene(frames, cameras)

    def get_views(self, specs: Sequence[ViewSpec]) -> dict[str, torch.Tensor]:
        """A batch: frames (B, V, H, W, 3) uint8 and cameras (B, V, 5) float32."""
        read = [self.read(int(i), views) for i, views in specs]
        frames = torch.from_numpy(np.stack([f for f, _ in read]))
        cameras = torch.from_numpy(np.stack([c for _, c in read]))
        if self.image_size is not None and frames.shape[2] != self.image_size:
            frames = resize(frames, self.image_size)
        return {"frames": frames, "cameras": cameras}

    __getitems__ = get_views  # what DataLoader calls for a batch

    def __del__(self):
        if os.getpid() == getattr(self, "_pid", None):
            for fd in self._fds.values():
                os.close(fd)


def resize(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 frames (B, V, H, W, 3) to (B, V, size, size, 3): area-averaged when shrinking."""
    b, v, h, w, c = frames.shape
    x = frames.reshape(b * v, h, w, c).permute(0, 3, 1, 2).float()
    mode = "area" if size < h else "bilinear"
    x = F.interpolate(x, size=(size, size), mode=mode, **({} if mode == "area" else {"align_corners": False}))
    x = x.round_().clamp_(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).reshape(b, v, size, size, c)
