"""Output paths: checked before the work, written atomically, never replacing what is not a file.

Rules (docs/security.md, "Output paths"):

* ``-`` is stdout, for outputs that may go there;
* an existing regular file is replaced atomically (temp file in its directory, then rename) and
  keeps its permission bits;
* a symlink is resolved: the file it points to is replaced, the link stays;
* a directory, device, FIFO or socket is refused, as is a path under a regular file, a name
  longer than the file system allows, or a place that cannot be written;
* a missing parent directory is created when the output is written.

``check_output`` runs the checks only (the CLI calls it for every output before it starts);
``write_atomic`` runs them again and writes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from uvmlab.core.errors import UvmlabError
from uvmlab.core.files import new_file_mode

STDOUT = "-"
_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)
_TMP_RESERVE = 24  # ".NAME.XXXXXXXX.tmp": the temp file's name is this much longer


class OutputError(UvmlabError):
    """An output path uvmlab will not write."""


def _kind(mode: int) -> str | None:
    for test, name in _KINDS:
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def _name_max(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_output(
    path: str | os.PathLike[str],
    *,
    what: str = "output",
    stdout: bool = False,
    directory: bool = False,
    parents: bool = True,
) -> Path | None:
    """The file (or, with ``directory``, the directory) that writing ``path`` will replace, with
    symlinks resolved; None for stdout. Raises OutputError naming the problem."""
    p = os.fspath(path)
    if p == STDOUT and not directory:
        if not stdout:
            raise OutputError(f"{what}: cannot be written to stdout ('-'); give a file name")
        return None
    if not p or "\0" in p:
        raise OutputError(f"{what}: {p!r} is not a path")
    target = Path(os.path.realpath(p))  # symlinks resolved, dangling ones to their target
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise OutputError(f"{what}: {p}: {_why(e)}") from None
    if st is not None:
        kind = _kind(st.st_mode)
        if directory:
            if not stat.S_ISDIR(st.st_mode):
                raise OutputError(f"{what}: {p} exists and is {kind or 'a regular file'}, not a directory")
        elif kind is not None:
            raise OutputError(
                f"{what}: {p} is {kind}; uvmlab writes only regular files "
                f"(use '-' for stdout where a command allows it)"
            )
        if not os.access(target if directory else target.parent, os.W_OK):
            raise OutputError(f"{what}: {p}: permission denied")
        return target
    # missing: the nearest existing ancestor must be a directory we may write into
    limit = _name_max(target.parent) if target.parent.is_dir() else 255
    for part in target.parts[1:]:
        if len(os.fsencode(part)) > limit - (0 if directory else _TMP_RESERVE):
            raise OutputError(
                f"{what}: the file name {part[:40]!r}... is too long (at most {limit - _TMP_RESERVE} bytes)"
            )
    anc = target.parent
    if not parents and not anc.is_dir():
        raise OutputError(f"{what}: cannot write {p}: directory {anc} does not exist")
    while not anc.exists():
        if anc.is_symlink():
            raise OutputError(f"{what}: {p}: {anc} is a dangling symlink")
        anc = anc.parent
    if not anc.is_dir():
        raise OutputError(f"{what}: {p}: {anc} is not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutputError(f"{what}: {p}: permission denied in {anc}")
    return target


def _why(e: OSError) -> str:
    if e.errno == errno.ENAMETOOLONG:
        return "a name in the path is too long"
    return e.strerror or str(e)


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes | Iterable[bytes],
    *,
    what: str = "output",
    stdout: bool = False,
    parents: bool = True,
) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one (or to
    stdout for ``-`` where ``stdout`` allows it); ``parents``: create missing directories."""
    chunks = [data] if isinstance(data, bytes | bytearray | memoryview) else data
    with open_atomic(path, what=what, stdout=stdout, parents=parents, text=False) as f:
        for c in chunks:
            f.write(c)


@contextlib.contextmanager
def open_atomic(
    path: str | os.PathLike[str],
    *,
    what: str = "output",
    stdout: bool = False,
    text: bool = True,
    parents: bool = True,
) -> Iterator[IO[Any]]:
    """A file to write into, renamed over ``path`` when the ``with`` block ends without an
    error (stdout for ``-`` where ``stdout`` allows): for writers that stream."""
    target = check_output(path, what=what, stdout=stdout, parents=parents)
    if target is None:
        out: IO[Any] = sys.stdout if text else sys.stdout.buffer
        yield out
        out.flush()
        return
    fd, tmp = _temp_beside(target, path, what, ".tmp")
    with _replacing(tmp, target, path, what):
        os.fchmod(fd, new_file_mode(target))  # mkstemp makes 0600; keep what a plain open gives
        f: IO[Any] = os.fdopen(fd, "w", encoding="utf-8") if text else os.fdopen(fd, "wb")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_via(path: str | os.PathLike[str], save: object, *, what: str = "output", suffix: str = "") -> None:
    """Atomic write for a library that wants a file name (``save(tmp_path)``: matplotlib)."""
    target = check_output(path, what=what)
    assert target is not None
    fd, tmp = _temp_beside(target, path, what, suffix or target.suffix or ".tmp")
    os.close(fd)
    with _replacing(tmp, target, path, what):
        save(tmp)  # type: ignore[operator]
        os.chmod(tmp, new_file_mode(target))


def _temp_beside(target: Path, path: str | os.PathLike[str], what: str, suffix: str) -> tuple[int, str]:
    """A private temporary file in ``target``'s directory (made if missing), for the rename."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:100]}.", suffix=suffix)
    except OSError as e:
        raise OutputError(f"{what}: cannot write {os.fspath(path)}: {_why(e)}") from None


@contextlib.contextmanager
def _replacing(tmp: str, target: Path, path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Fill ``tmp`` in the ``with`` block, then rename it over ``target`` (checked again: the
    target may have changed meanwhile); on any failure the temporary file is removed."""
    try:
        yield
        check_output(target, what=what)
        os.replace(tmp, target)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"{what}: cannot write {os.fspath(path)}: {_why(e)}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
