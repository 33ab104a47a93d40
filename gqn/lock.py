"""A folder has one writer: the process that claims it, for as long as it runs.

    with claim("runs/gqn"):     # gqn train, gqn demo (its --out) and gqn export (its --out)
        ...                     # a second writer of runs/gqn is refused at once, in one line

The claim is an OS lock (`fcntl.flock`) on FOLDER/.lock, into which the holder writes
"pid@host" for the refusal to name: "runs/gqn: another gqn is writing into it (process
4242@box); ...". The lock lives and dies with its holder: one killed with SIGKILL leaves at most
its note, which the next claim replaces, so nothing a dead process left ever blocks a resume. A
claim that ends in order removes the file. Forked children (DataLoader workers) close their copy
of it, so the lock goes with the holder, not with its last worker. Readers (eval, render, view,
plot) take no claim. On NFS, Linux takes flock as a lock of the whole file on the server.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from gqn.errors import GQNError
from gqn.files import writable_folder, writing

NAME = ".lock"
_held: set[int] = set()  # the descriptors of this process's claims, closed in a forked child


@contextlib.contextmanager
def claim(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold `folder` (created if need be) for the block; yields its lock file. A folder another
    process holds is a GQNError naming it and the holder; one that cannot be written to, a
    GQNError naming it (`gqn.files.writable_folder`)."""
    path = writable_folder(folder) / NAME
    fd, pid = _lock(path), os.getpid()
    _held.add(fd)
    try:
        with writing(path):  # a stale note of a killed holder is replaced
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{pid}@{socket.gethostname()}\n".encode(), 0)
        yield path
    finally:
        if os.getpid() == pid:  # not a forked child leaving the block: its copy is closed already
            _held.discard(fd)
            with contextlib.suppress(OSError):
                path.unlink()  # while still locked, so the next claim makes and locks a new file
            os.close(fd)


def _lock(path: Path) -> int:
    """A descriptor of `path`, locked, and still the file at `path`."""
    while True:
        with writing(path.parent):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            note = _note(fd)
            os.close(fd)
            raise GQNError(
                f"{path.parent}: another gqn is writing into it (process {note}); "
                "wait for it to end or stop it, or use another folder"
            ) from None
        except OSError as e:
            os.close(fd)
            raise GQNError(f"{path}: cannot lock: {e.strerror or e}") from None
        # A holder that let go as we opened removed the file: ours is then not the one a third
        # process would find and lock. Lock the file that is there.
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        os.close(fd)


def _note(fd: int) -> str:
    """The holder's "pid@host" in the lock file `fd`."""
    for _ in range(20):  # a holder locks first and writes its note just after
        note = os.pread(fd, 256, 0).decode(errors="replace").strip()
        if note:
            return note
        time.sleep(0.05)
    return "that has not written its pid"


def _close_inherited() -> None:
    for fd in _held:
        with contextlib.suppress(OSError):
            os.close(fd)  # this copy only: the lock stays with the parent's
    _held.clear()


os.register_at_fork(after_in_child=_close_inherited)
