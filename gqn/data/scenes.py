"""GQN scenes: one `tf.train.Example` per scene, S JPEG frames and S cameras.

Shapes: V views per scene, H x W frames.
  frames  (V, H, W, 3) uint8
  cameras (V, 5) float32 = (x, y, z, yaw, pitch), angles in radians

    for scene in gqn.data.read_scenes("shepard_metzler_5_parts/test/001-of-100.tfrecord"):
        scene.frames, scene.cameras

    gqn.data.write_scenes("out.tfrecord", scenes)  # frames as arrays (encoded) or JPEG bytes
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from gqn.data.tfrecord import decode_example, encode_example, frame_record, read_records
from gqn.errors import DataError
from gqn.files import atomic_write

try:  # libjpeg-turbo through simplejpeg: several times faster than Pillow on small frames
    import simplejpeg
except ImportError:  # pragma: no cover - exercised only where simplejpeg has no wheel
    simplejpeg = None

JPEG_QUALITY = 95


@dataclass
class Scene:
    """A decoded scene: frames (V, H, W, 3) uint8 and cameras (V, 5) float32."""

    frames: np.ndarray
    cameras: np.ndarray


def decode_jpeg(data: bytes | memoryview) -> np.ndarray:
    """(H, W, 3) uint8 RGB from JPEG bytes; ValueError if they are not a decodable JPEG.

    Decodes as `tf.io.decode_jpeg` does by default (libjpeg-turbo's fast integer DCT, smooth
    chroma upsampling), so pixels equal those DeepMind's reader gives. The Pillow fallback uses
    the accurate DCT and differs by a few levels.
    """
    if simplejpeg is not None:
        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=False)
        except Exception as e:  # simplejpeg raises its own ValueError/RuntimeError variants
            raise ValueError(str(e)) from None
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(bytes(data))) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:
        raise ValueError(str(e)) from None


def encode_jpeg(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 RGB frame."""
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    if simplejpeg is not None:
        return simplejpeg.encode_jpeg(frame, quality=quality, colorspace="RGB")
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@dataclass
class EncodedScene:
    """A scene as stored: JPEG bytes per view, decoded on demand (only the views asked for)."""

    jpegs: Sequence[bytes | memoryview]
    cameras: np.ndarray  # (V, 5) float32
    path: str = "<memory>"
    offset: int | None = None  # byte offset of the record in `path`

    @property
    def views(self) -> int:
        return len(self.jpegs)

    def decode(self, views: Sequence[int] | None = None) -> np.ndarray:
        """Frames (len(views), H, W, 3) uint8 of the given views (all by default)."""
        views = range(self.views) if views is None else views
        frames = []
        for i in views:
            try:
                frame = decode_jpeg(self.jpegs[i])
            except ValueError as e:
                raise DataError(self.path, f"undecodable JPEG in view {i}: {e}", self.offset) from None
            if frames and frame.shape != frames[0].shape:
                raise DataError(
                    self.path,
                    f"view {i} is {frame.shape[1]}x{frame.shape[0]}, "
                    f"view {views[0]} is {frames[0].shape[1]}x{frames[0].shape[0]}",
                    self.offset,
                )
            frames.append(frame)
        return np.stack(frames)

    def to_scene(self) -> Scene:
        return Scene(self.decode(), self.cameras.copy())


def parse_scene(data: bytes | memoryview, path: str = "<memory>", offset: int | None = None) -> EncodedScene:
    """Check that a record is a GQN Example and return its views, still encoded."""
    try:
        features = decode_example(data)
    except ValueError as e:
        raise DataError(path, f"record is not a tf.train.Example: {e}", offset) from None
    for key in ("frames", "cameras"):
        if key not in features:
            found = ", ".join(repr(k) for k in features) or "none"
            raise DataError(
                path, f"record is not a GQN scene: no {key!r} feature (features: {found})", offset
            )
    # decode_example gives bytes lists as lists of memoryviews, float lists as float32 arrays.
    frames = features["frames"]
    if isinstance(frames, np.ndarray) or (frames and not isinstance(frames[0], memoryview)):
        raise DataError(path, "record is not a GQN scene: 'frames' is not a bytes list", offset)
    if not isinstance(features["cameras"], np.ndarray):
        raise DataError(path, "record is not a GQN scene: 'cameras' is not a float list", offset)
    jpegs, cameras = features["frames"], features["cameras"]
    if not jpegs:
        raise DataError(path, "record is not a GQN scene: 'frames' is empty", offset)
    if cameras.size != 5 * len(jpegs):
        raise DataError(
            path,
            f"record is not a GQN scene: {len(jpegs)} frames but {cameras.size} camera values "
            f"(expected {5 * len(jpegs)} = 5 per frame)",
            offset,
        )
    cameras = cameras.reshape(len(jpegs), 5)
    finite = np.isfinite(cameras).all(1)
    if not finite.all():
        view = int(np.argmin(finite))
        raise DataError(
            path,
            f"camera of view {view} is not finite: {cameras[view].tolist()} (x, y, z, yaw, pitch)",
            offset,
        )
    return EncodedScene(jpegs, cameras, path, offset)


def scene_record(scene) -> bytes:
    """The serialized Example of a scene whose `.frames` are arrays or JPEG bytes (or an EncodedScene)."""
    cameras = np.asarray(scene.cameras, dtype=np.float32)
    frames = scene.jpegs if isinstance(scene, EncodedScene) else scene.frames
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (V, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        jpegs = [encode_jpeg(f) for f in frames]
    else:
        jpegs = [bytes(f) for f in frames]
    if cameras.shape != (len(jpegs), 5):
        raise ValueError(f"cameras must be ({len(jpegs)}, 5) for {len(jpegs)} frames, got {cameras.shape}")
    return encode_example({"frames": jpegs, "cameras": cameras.reshape(-1)})


class SceneReader:
    """Iterates the scenes of one TFRecord file; see `read_scenes`."""

    def __init__(self, path: str | os.PathLike, skip_corrupt: bool = False, decode: bool = True):
        self.path = os.fspath(path)
        self.skip_corrupt = skip_corrupt
        self.decode = decode
        self.skipped: list[DataError] = []  # records passed over with skip_corrupt, in order

    def __iter__(self) -> Iterator[Scene | EncodedScene]:
        self.skipped = []
        try:
            f = open(self.path, "rb")
        except OSError as e:
            raise DataError(self.path, f"cannot open: {e.strerror}") from None
        with f:
            try:
                for offset, data in read_records(f, self.path, yield_bad_data=self.skip_corrupt):
                    try:
                        if isinstance(data, DataError):
                            raise data
                        scene = parse_scene(data, self.path, offset)
                        yield scene.to_scene() if self.decode else scene
                    except DataError as e:
                        if not self.skip_corrupt:
                            raise
                        self.skipped.append(e)
            except DataError as e:  # a bad header or truncation: nothing after it can be read
                if not self.skip_corrupt:
                    raise
                self.skipped.append(e)
        if self.skipped:
            warnings.warn(f"{self.path}: skipped {len(self.skipped)} corrupt record(s)", stacklevel=2)


def read_scenes(path: str | os.PathLike, skip_corrupt: bool = False, decode: bool = True) -> SceneReader:
    """Iterate the scenes of one TFRecord file, every CRC checked.

    Yields `Scene`s (frames decoded), or `EncodedScene`s with `decode=False`. A corrupt record is a
    `DataError` naming the file and byte offset; with `skip_corrupt=True` it is skipped instead,
    recorded in the reader's `.skipped` list and counted in a warning at the end.
    """
    return SceneReader(path, skip_corrupt, decode)


def write_scenes(path: str | os.PathLike, scenes: Iterable) -> int:
    """Write scenes to a TFRecord file, atomically; returns the number written.

    Each scene has `.frames`, a (V, H, W, 3) uint8 array (encoded as JPEG) or a list of JPEG
    bytes (written as given), and `.cameras` (V, 5). The file appears only once complete: it is
    written to a temporary name beside it and renamed.
    """
    count = 0
    with atomic_write(path) as f:
        for scene in scenes:
            f.write(frame_record(scene_record(scene)))
            count += 1
    return count
