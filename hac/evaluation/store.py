"""The append-only result store of an evaluation run: one JSON line per image per cell.

Why JSON lines and not SQLite: the file is readable with any tool (``grep``,
``jq``, pandas), diffs and merges as text, and the kill-safety we need is
simple to get and to test: every unit of work (one cell on one batch) is
appended as *one* ``write`` of whole lines, its per-image ``row`` lines
followed by one ``commit`` line, then ``fsync``-ed. A unit counts as done only
when its commit line is present. What a kill (even ``kill -9`` or a power cut)
can leave behind is at most one unfinished unit at the end of the file: a torn
last line, or rows without their commit. On opening, that tail is dropped and
the file truncated back to the last complete unit, so a resumed run appends to
a clean file, recomputes only the unfinished unit, and never duplicates a row.

Line kinds (``kind``):

- ``header`` (first line): store version, the config hash, the config and image ids;
- ``row``: one image in one cell (``cell`` id, ``batch``, ``image`` id, ``label``, correctness and metrics);
- ``commit``: ``cell`` on ``batch`` is complete (``n`` images, seed, seconds, counters);
- ``skip``: ``image`` could not be read (``reason``).

A file whose header carries another config hash is refused: one out dir, one config. Files of store
version 1 used short keys (``c``, ``b``, ``i``, ``y``, ``def``, ``cdef``, ``cbpp``, ``cpsnr``, ``cmsssim``);
they are read with :data:`LEGACY_KEYS` and continued in today's names.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable

from ..core.files import atomic_write_bytes

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

__all__ = ["ResultStore", "StoreError", "STORE_FILENAME", "STORE_VERSION", "LEGACY_KEYS"]

logger = logging.getLogger(__name__)

STORE_FILENAME = "rows.jsonl"
STORE_VERSION = 2
LEGACY_KEYS = {
    "c": "cell", "b": "batch", "i": "image", "y": "label", "def": "defended", "cdef": "clean_defended",
    "cbpp": "clean_bpp", "cpsnr": "clean_psnr", "cmsssim": "clean_msssim",
}
"""Store version 1's short record keys -> their names since version 2."""


class StoreError(ValueError):
    """The store cannot be used: another config's results, corruption, or another writer."""


def _readable_keys(record: dict) -> dict:
    """A record with version 1's short keys (:data:`LEGACY_KEYS`) renamed; other records unchanged."""
    return {LEGACY_KEYS.get(key, key): value for key, value in record.items()}


def _encode(records: Iterable[dict]) -> bytes:
    return b"".join(json.dumps(record, separators=(",", ":"), allow_nan=False).encode() + b"\n" for record in records)


class ResultStore:
    """The rows, commits and skipped images of one run, on disk (``path``) or in memory (``path=None``).

    Args:
        path: the JSONL file (created if absent), or None for an in-memory store.
        config_hash: identity of the config; an existing file must carry the same.
        header: extra header fields written when the file is created (config, image ids).

    Attributes:
        rows: committed per-image records, in file order, one per (cell, image).
        commits: (cell id, batch) -> its commit record.
        skipped: image id -> why it could not be read.
        repaired_bytes: bytes of an unfinished tail dropped on opening.

    Raises:
        StoreError: another config's store, a corrupt line before the end, or
            another process writing to it.
    """

    def __init__(self, path: str | Path | None, config_hash: str, header: dict | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.config_hash = config_hash
        self.rows: list[dict] = []
        self.commits: dict[tuple[str, int], dict] = {}
        self.skipped: dict[str, str] = {}
        self.repaired_bytes = 0
        self._seen: set[tuple[str, str]] = set()
        self._fd: int | None = None
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self._create({"kind": "header", "version": STORE_VERSION, "config_hash": config_hash, **(header or {})})
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        try:
            self._lock()
            self._load()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening

    def _create(self, header: dict) -> None:
        atomic_write_bytes(self.path, _encode([header]))

    def _lock(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"another evaluation is writing to {self.path}; wait for it or use another out dir") from None

    def _load(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline; else a torn last line
        offset = good_end = 0
        pending: dict[tuple[str, int], list[dict]] = {}
        for number, raw in enumerate(lines, 1):
            offset += len(raw) + 1
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise StoreError(
                    f"{self.path} line {number} is corrupt (not a torn last line, which is repaired automatically); "
                    "move the file away to start this run afresh"
                ) from None
            kind = record.get("kind") if isinstance(record, dict) else None
            if kind in ("row", "commit", "skip"):
                record = _readable_keys(record)
            if number == 1:
                self._check_header(record)
                good_end = offset
            elif kind == "row":
                pending.setdefault((record["cell"], record["batch"]), []).append(record)
            elif kind == "commit":
                self._accept(pending.pop((record["cell"], record["batch"]), []), record)
                good_end = offset
            elif kind == "skip":
                self.skipped[record["image"]] = record["reason"]
                good_end = offset
            else:
                raise StoreError(f"{self.path} line {number} has an unknown record kind {kind!r}")
        if not lines:
            raise StoreError(f"{self.path} has no header line; move the file away to start afresh")
        if good_end < len(data):
            self.repaired_bytes = len(data) - good_end
            logger.warning(
                "%s: dropping %d bytes of an unfinished write at the end (%s); that work is recomputed",
                self.path, self.repaired_bytes, "torn last line" if tail else "rows without their commit",
            )
            os.ftruncate(self._fd, good_end)
            os.fsync(self._fd)

    def _check_header(self, record: object) -> None:
        if not isinstance(record, dict) or record.get("kind") != "header":
            raise StoreError(f"{self.path} does not start with a result-store header; is it an evaluation store?")
        if record.get("config_hash") != self.config_hash:
            raise StoreError(
                f"{self.path.parent} already holds results of another configuration (config hash "
                f"{record.get('config_hash')}, this one {self.config_hash}: the grid, seeds, batch size or image ids "
                "differ); use a new out dir, or delete that one to start over"
            )

    def _accept(self, rows: list[dict], commit: dict) -> None:
        for row in rows:
            key = (row["cell"], row["image"])
            if key not in self._seen:
                self._seen.add(key)
                self.rows.append(row)
        self.commits[commit["cell"], commit["batch"]] = commit

    # ------------------------------------------------------------------ writing

    def _append(self, records: list[dict]) -> None:
        if self._fd is None:
            if self.path is not None:
                raise StoreError(f"{self.path} is closed")
            return
        data = memoryview(_encode(records))
        while data:
            written = os.write(self._fd, data)
            data = data[written:]
        os.fsync(self._fd)

    def commit(self, rows: list[dict], commit: dict) -> None:
        """Append one unit of work (its rows, then its commit line) durably, then record it."""
        rows = [{"kind": "row", **row} for row in rows]
        commit = {"kind": "commit", **commit}
        self._append([*rows, commit])
        self._accept(rows, commit)

    def skip(self, skipped: dict[str, str]) -> None:
        """Record images that could not be read (already recorded ones are left alone)."""
        new = {image: reason for image, reason in skipped.items() if image not in self.skipped}
        if new:
            self._append([{"kind": "skip", "image": image, "reason": reason} for image, reason in new.items()])
            self.skipped.update(new)

    def is_done(self, cell_id: str, batch: int) -> bool:
        return (cell_id, batch) in self.commits

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # also releases the lock
            self._fd = None

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
