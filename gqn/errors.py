"""The one exception a user of `gqn` acts on.

Every error caused by input (a corrupt file, a wrong flag, missing data, a checkpoint from another
config) is a `GQNError` whose message is one line saying what is wrong and where. The CLI prints
that line and exits non-zero; it never shows a traceback for such errors.
"""

from __future__ import annotations

import os


class GQNError(Exception):
    """An error in the user's input, with a one-line message naming what and where."""


class DataError(GQNError):
    """A data file that is not what it should be.

    `path` and `offset` (byte offset in the file, or None) locate the problem; `what` says it.
    """

    def __init__(self, path: str | os.PathLike, what: str, offset: int | None = None):
        self.path = os.fspath(path)
        self.offset = offset
        self.what = what
        where = self.path if offset is None else f"{self.path} at byte {offset}"
        super().__init__(f"{where}: {what}")

    def __reduce__(self):  # from a DataLoader worker to the main process, whole
        return DataError, (self.path, self.what, self.offset)
