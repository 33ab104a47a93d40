"""Writing files so that no half-written file is ever taken for a whole one, and a failed write
says why in one line.

    with atomic_write("out/scenes.tfrecord") as f:
        f.write(...)

writes to a temporary file in the same folder (same file system), flushes it to disk and renames
it over the target only when the block completes; on any error, or an interrupt, the temporary
file is removed and the target is left as it was. The file gets the usual permissions (0666
less the umask), not mkstemp's private 0600. A write that fails (a full disk, a read-only
folder) is a `GQNError` naming the target: "PATH: no space left on the device (0 bytes free)",
whatever the writer made of the OSError (torch.save turns it into an "unexpected pos").

    writable_folder("runs/gqn")   # before the work, not after it: a folder we cannot write to
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from gqn.errors import GQNError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_error(path: str | os.PathLike, e: OSError) -> GQNError:
    """The one line for a write to `path` that failed with `e`: a full disk says so."""
    if e.errno in DISK_FULL:
        folder = Path(path).parent
        free = shutil.disk_usage(folder).free if folder.exists() else 0
        return GQNError(f"{path}: no space left on the device ({free} bytes free); free some and run again")
    return GQNError(f"{path}: cannot write: {e.strerror or e}")


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Any OSError in the block becomes `write_error(path, ...)`."""
    try:
        yield
    except OSError as e:
        raise write_error(path, e) from None


def writable_folder(folder: str | os.PathLike) -> Path:
    """`folder`, created if need be, once a file could be made in it; else a GQNError naming it."""
    folder = Path(folder)
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    return folder


class _Watched:
    """A file whose failed writes are remembered: some writers report them as something else
    (torch.save as "unexpected pos"), and the OSError is what says why."""

    def __init__(self, f: IO):
        self._f = f
        self.error: OSError | None = None

    def write(self, data):
        return self._watch(self._f.write, data)

    def flush(self):
        return self._watch(self._f.flush)

    def _watch(self, method, *args):
        try:
            return method(*args)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    f = _Watched(os.fdopen(fd, mode))
    try:
        with f._f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        full = e if isinstance(e, OSError) and e.errno in DISK_FULL else None  # a flush on close
        if f.error or full:
            raise write_error(path, f.error or full) from None
        raise


def write_json(obj, path: str | os.PathLike) -> str:
    """`obj` as indented JSON with a final newline, written atomically; returns the path."""
    with atomic_write(path, "w") as f:
        f.write(json.dumps(obj, indent=2) + "\n")
    return str(path)
