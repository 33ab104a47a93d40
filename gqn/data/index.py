"""Per-file index of record offsets, built once by reading only the record headers, then cached.

The cache lives in `$GQN_CACHE_DIR/index` (default `~/.cache/gqn/index`), not beside the data, so
read-only dataset copies work. An index is keyed by the file's absolute path and is rebuilt when
the file's size or modification time changes. It is a plain int64 `.npy` array (loaded with
`allow_pickle=False`): row 0 holds (size, mtime_ns), each further row (offset, length).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from gqn.data.tfrecord import scan_records
from gqn.errors import DataError
from gqn.files import atomic_write


def cache_dir() -> str:
    root = os.environ.get("GQN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gqn"
    )
    return root


def _index_path(path: str) -> str:
    key = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:20]
    return os.path.join(cache_dir(), "index", f"{key}.npy")


def build_index(path: str) -> np.ndarray:
    """(N, 2) int64 array of (offset, data length) for every record of a TFRecord file."""
    try:
        with open(path, "rb", buffering=0) as f:
            rows = list(scan_records(f, path))
    except OSError as e:
        raise DataError(path, f"cannot read: {e.strerror}") from None
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def record_index(path: str | os.PathLike) -> np.ndarray:
    """The cached (N, 2) index of `path`, rebuilt if the file changed since it was built."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise DataError(path, f"cannot read: {e.strerror}") from None
    stamp = np.array([[st.st_size, st.st_mtime_ns]], dtype=np.int64)
    cached = _index_path(path)
    try:
        table = np.load(cached, allow_pickle=False)
        if table.ndim == 2 and table.shape[1] == 2 and (table[0] == stamp[0]).all():
            return table[1:]
    except (OSError, ValueError):
        pass  # no cache yet, or an unreadable one: rebuild it
    index = build_index(path)
    _save_atomic(cached, np.concatenate([stamp, index]))
    return index


def _save_atomic(path: str, array: np.ndarray) -> None:
    """Write an index so that a reader never sees half of it; a cache we cannot write is skipped."""
    try:
        with atomic_write(path) as f:
            np.save(f, array, allow_pickle=False)
    except OSError:
        pass
