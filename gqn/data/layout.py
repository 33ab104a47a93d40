"""Finding the TFRecord files of the official layout `<root>/<dataset>/<split>/NNN-of-NNN.tfrecord`.

`discover(path)` accepts any level of that layout (the root, a dataset folder, a split folder or
one file) and returns its splits with their files in order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gqn.data.table import DATASETS, SPLITS, DatasetInfo, parse_file_name
from gqn.errors import DataError

LAYOUT = "<root>/<dataset>/{train,test}/NNN-of-NNN.tfrecord"


@dataclass
class Split:
    dataset: str  # folder name of the dataset (a table name for the official ones)
    split: str  # folder name of the split ('train' or 'test' in the official layout)
    files: list[str]  # TFRecord files, in order

    @property
    def info(self) -> DatasetInfo | None:
        return DATASETS.get(self.dataset)

    def layout_problems(self) -> list[str]:
        """How the file names differ from a complete `i-of-n` set and from the official count."""
        names = [os.path.basename(f) for f in self.files]
        parsed = [parse_file_name(n) for n in names]
        problems = [f"{n}: not named i-of-n.tfrecord" for n, p in zip(names, parsed) if p is None]
        totals = {p[1] for p in parsed if p}
        if len(totals) > 1:
            problems.append(f"files say different totals: {sorted(totals)}")
        elif totals:
            (n,) = totals
            missing = n - len({p[0] for p in parsed if p})
            if missing:
                problems.append(f"{missing} of {n} files missing (a partial copy reads fine)")
            info = self.info
            if info is not None and self.split in SPLITS and n != info.files(self.split):
                problems.append(
                    f"{n} files where the official set has {info.files(self.split)} (synthetic or re-sharded)"
                )
        return problems


def _tfrecords(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, n)
        for n in os.listdir(folder)
        if n.endswith(".tfrecord") and os.path.isfile(os.path.join(folder, n))
    )


def _file_order(path: str) -> tuple:
    parsed = parse_file_name(os.path.basename(path))
    return (0, parsed[0], "") if parsed else (1, 0, os.path.basename(path))


def discover(path: str | os.PathLike) -> list[Split]:
    """The splits under `path` (root, dataset, split folder or file), each with its files."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isfile(path):
        split_dir = os.path.dirname(path)
        return [Split(os.path.basename(os.path.dirname(split_dir)), os.path.basename(split_dir), [path])]
    if not os.path.isdir(path):
        raise DataError(path, "no such file or folder")
    files = _tfrecords(path)
    if files:
        return [
            Split(
                os.path.basename(os.path.dirname(path)),
                os.path.basename(path),
                sorted(files, key=_file_order),
            )
        ]
    subdirs = sorted(n for n in os.listdir(path) if os.path.isdir(os.path.join(path, n)))
    if any(s in SPLITS for s in subdirs):
        splits = [
            Split(os.path.basename(path), s, sorted(_tfrecords(os.path.join(path, s)), key=_file_order))
            for s in SPLITS
            if s in subdirs
        ]
        empty = [s for s in splits if not s.files]
        if empty:
            raise DataError(os.path.join(path, empty[0].split), f"no .tfrecord files (expected {LAYOUT})")
        return splits
    splits = []
    for name in subdirs:
        sub = os.path.join(path, name)
        if any(os.path.isdir(os.path.join(sub, s)) for s in SPLITS):
            splits += discover(sub)
    if not splits:
        found = ", ".join(sorted(os.listdir(path))[:8]) or "nothing"
        raise DataError(path, f"no GQN data here (found: {found}); expected {LAYOUT}")
    return splits


def find_split(path: str | os.PathLike, split: str = "train") -> Split:
    """The one split to read: `path` itself if it is a split folder or a file, else its `split`."""
    splits = discover(path)
    pointed_at_split = os.path.isfile(path) or bool(_tfrecords(os.fspath(path)))
    if pointed_at_split:
        return splits[0]
    matching = [s for s in splits if s.split == split]
    if len(matching) != 1:
        found = ", ".join(f"{s.dataset}/{s.split}" for s in splits)
        raise DataError(path, f"expected one dataset with a {split!r} split, found: {found}")
    return matching[0]
