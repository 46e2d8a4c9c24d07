"""Atomic file writes: a reader sees the old file or the whole new one, never half of one.

Every writer goes to a temporary file in the destination's folder (same file system, so the
final ``os.replace`` is atomic), which is flushed and ``fsync``-ed before it replaces the
destination; the folder is ``fsync``-ed after, so the rename survives a power cut. A writer
that raises leaves the destination untouched and removes its temporary file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

__all__ = ["atomic_path", "atomic_write", "atomic_write_bytes", "atomic_write_text", "fsync_dir"]


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk, where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows, which cannot open folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, mode: int | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that takes a file name; moved onto ``path`` on success.

    For writers that open the file themselves (``safetensors.torch.save_file``, ``savefig``)::

        with atomic_path(out) as tmp:
            save_file(state, str(tmp))

    Args:
        path: the destination; its folder must exist.
        mode: permission bits of the result (default: 0o666 less the umask, as ``open`` gives).
    """
    path = Path(path)
    tmp = _create_temporary(path)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], mode: int | None = None) -> None:
    """Call ``write(handle)`` on a binary file handle, then move the file onto ``path`` atomically.

    For writers that take an open file (``torch.save``, ``pickle.dump``)::

        atomic_write(out, lambda handle: torch.save(checkpoint, handle))
    """
    with atomic_path(path, mode) as tmp, open(tmp, "wb") as handle:
        write(handle)


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda handle: handle.write(data), mode)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8", mode: int | None = None) -> None:
    """Write ``text`` to ``path`` atomically (``encoding``, newlines as given)."""
    atomic_write_bytes(path, text.encode(encoding), mode)


def _create_temporary(path: Path) -> Path:
    """A new empty file beside ``path`` with a name no other writer uses (``open``'s permissions, unlike ``mkstemp``)."""
    for _ in range(100):
        # the suffix stays last: writers such as ``savefig`` pick the format from it
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.tmp{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")
