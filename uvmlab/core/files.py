"""The mode of the files uvmlab writes.

Atomic writes go through a temporary file from ``tempfile.mkstemp``, which is private (0600);
the final file gets the mode a plain ``open()`` would give it (0644 under the usual umask 022),
or keeps the mode of the file it replaces.
"""

from __future__ import annotations

import os

#: the plot formats matplotlib writes that uvmlab accepts (by file suffix)
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def new_file_mode(path: str | os.PathLike[str] | None = None) -> int:
    """The mode for a file about to be written at ``path``."""
    if path is not None:
        try:
            return os.stat(path).st_mode & 0o777  # replacing a file keeps its mode
        except OSError:
            pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask
