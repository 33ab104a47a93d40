"""Writing files so that no half-written file is ever taken for a whole one.

    with atomic_write("out/scenes.tfrecord") as f:
        f.write(...)

writes to a temporary file in the same folder (same file system), flushes it to disk and renames
it over the target only when the block completes; on any error, or an interrupt, the temporary
file is removed and the target is left as it was. The file gets the usual permissions (0666
less the umask), not mkstemp's private 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(obj, path: str | os.PathLike) -> str:
    """`obj` as indented JSON with a final newline, written atomically; returns the path."""
    with atomic_write(path, "w") as f:
        f.write(json.dumps(obj, indent=2) + "\n")
    return str(path)
