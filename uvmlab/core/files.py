"""The mode of the files uvmlab writes, and reading the small files it is given.

Atomic writes go through a temporary file from ``tempfile.mkstemp``, which is private (0600);
the final file gets the mode a plain ``open()`` would give it (0644 under the usual umask 022),
or keeps the mode of the file it replaces. Inputs named by the user (parameter files, cost
profiles, policy files) are read with ``read_regular``: only regular files, never a FIFO.
"""

from __future__ import annotations

import os
import stat

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


def read_regular(
    path: str | os.PathLike[str],
    error: type[Exception],
    *,
    what: str = "file",
    max_bytes: int = 1 << 30,
) -> bytes:
    """The bytes of a regular file, or ``error`` naming the problem (missing, unreadable, too
    large, or not a regular file). A FIFO would block the read forever and a device may never
    end: neither is opened for reading beyond a non-blocking open that checks what it is."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{p}: the {what} is not a regular file")
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise error(f"{p}: {what} not found") from None
    except OSError as e:
        raise error(f"{p}: cannot read the {what} ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)  # what was opened, in case the path changed since the check
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{p}: the {what} is not a regular file")
        if st.st_size > max_bytes:
            raise error(f"{p}: the {what} is {st.st_size} bytes (at most {max_bytes})")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise error(f"{p}: cannot read the {what} ({e.strerror or e})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error(f"{p}: the {what} is over {max_bytes} bytes")
    return data
