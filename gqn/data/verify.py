"""Checking GQN TFRecord files completely: every CRC, every Example, every JPEG.

    report = verify_file("shepard_metzler_5_parts/train/001-of-900.tfrecord")
    report.scenes, report.errors

Reading goes on past a record whose data fails its CRC or does not decode (its header still says
where the next record starts); a corrupt header or a truncated record ends the file's check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from gqn.data.scenes import parse_scene
from gqn.data.tfrecord import read_records
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
    try:
        report.bytes = os.path.getsize(path)
        with open(path, "rb") as f:
            for offset, data in read_records(f, path, yield_bad_data=True):
                try:
                    if isinstance(data, DataError):
                        raise data
                    frames = parse_scene(data, path, offset).decode()
                except DataError as e:
                    report.errors.append(str(e))
                    continue
                report.scenes += 1
                report.views.add(frames.shape[0])
                report.sizes.add(frames.shape[1:3])
    except DataError as e:
        report.errors.append(str(e))
    except OSError as e:
        report.errors.append(str(DataError(path, f"cannot read: {e.strerror}")))
    return report
