"""Checking GQN TFRecord files completely: every CRC, every Example, every camera (finite), every
JPEG; a file without a scene is a problem too.

    report = verify_file("shepard_metzler_5_parts/train/001-of-900.tfrecord")
    report.scenes, report.errors

Reading goes on past a record whose data fails its CRC or does not decode (its header still says
where the next record starts); a corrupt header or a truncated record ends the file's check.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

from gqn.data.scenes import read_scenes
from gqn.errors import DataError


@dataclass
class FileReport:
    path: str
    bytes: int = 0
    scenes: int = 0  # sound scenes
    views: set[int] = field(default_factory=set)  # distinct views-per-scene counts seen
    sizes: set[tuple[int, int]] = field(default_factory=set)  # distinct (H, W) frame sizes seen
    errors: list[str] = field(default_factory=list)  # one line each: file, byte offset, what


def verify_file(path: str) -> FileReport:
    """Read a whole file, checking framing, CRCs and Examples and decoding every frame."""
    report = FileReport(path)
    reader = read_scenes(path, skip_corrupt=True)  # its .skipped are this report's errors
    try:
        report.bytes = os.path.getsize(path)
        with warnings.catch_warnings():  # the report lists every skipped record already
            warnings.simplefilter("ignore")
            for scene in reader:
                report.scenes += 1
                report.views.add(scene.frames.shape[0])
                report.sizes.add(scene.frames.shape[1:3])
    except DataError as e:
        report.errors.append(str(e))
    except OSError as e:
        report.errors.append(str(DataError(path, f"cannot read: {e.strerror}")))
    report.errors[:0] = [str(e) for e in reader.skipped]
    if not report.scenes and not report.errors:
        report.errors.append(str(DataError(path, f"no scenes in {report.bytes} bytes")))
    return report
