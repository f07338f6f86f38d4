"""Reading and writing files with errors a user can act on.

Writes are atomic: a temporary file in the target's folder, renamed into place when
complete, so a reader (or a crash) never sees a half-written stream, image, weights file
or checkpoint. Reads turn the usual OS errors into one-line attncomp errors.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import AttncompError


def read_bytes(path, error: type[AttncompError] = AttncompError, check_start: Callable[[bytes], None] | None = None,
               start: int = 0) -> bytes:
    """The bytes of ``path``; a missing, unreadable or directory path raises ``error`` with one line.

    ``check_start`` (which raises if they are wrong) sees the first ``start`` bytes before the rest is read:
    a large file that is not what was asked for is refused without reading it whole.
    """
    try:
        with open(path, "rb") as f:
            return read_all(f, check_start, start)
    except FileNotFoundError:
        raise error(f"no such file: {path}") from None
    except IsADirectoryError:
        raise error(f"{path} is a directory, not a file") from None
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None


def read_all(f: BinaryIO, check_start: Callable[[bytes], None] | None = None, start: int = 0) -> bytes:
    """The rest of ``f``, as :func:`read_bytes` reads a file (``check_start`` first sees ``start`` bytes)."""
    if check_start is None:
        return f.read()
    head = f.read(start)
    check_start(head)
    if f.seekable():  # back and read it in one piece: a large stream is not copied again to join the head
        f.seek(-len(head), os.SEEK_CUR)
        return f.read()
    return head + f.read()


def atomic_write(path, write: Callable[[BinaryIO], None], overwrite: bool = True) -> None:
    """Call ``write(file)`` on a temporary file, fsync it, then rename it to ``path``.

    An unwritable folder or a full disk raises a one-line ``AttncompError`` and leaves nothing behind.
    ``overwrite=False`` refuses a ``path`` that exists when the file is complete, e.g. one another process
    wrote while this one was coding (an earlier check alone would miss it).
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            if overwrite:
                os.replace(tmp, path)
            else:
                _move_unless_there(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise AttncompError(f"cannot write {path}: {exc.strerror or exc}") from None


def _move_unless_there(tmp: str, path: Path) -> None:
    """Rename ``tmp`` to ``path`` only if ``path`` does not exist, in one step where the file system links."""
    there = AttncompError(f"{path} exists (written meanwhile); use --force to overwrite it")
    try:
        os.link(tmp, path)  # fails if path exists, atomically
    except FileExistsError:
        raise there from None
    except OSError:  # no hard links here (e.g. FAT): check, then rename
        if path.exists():
            raise there from None
        os.replace(tmp, path)
    else:
        os.unlink(tmp)
