"""hac.core.files: atomic writes leave the old file or the whole new one, and no temporary file."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from hac.core.files import atomic_path, atomic_write, atomic_write_bytes, atomic_write_text


def test_text_and_bytes_replace_the_file_and_leave_nothing_beside_it(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    atomic_write_text(path, "néw\n")
    assert path.read_text(encoding="utf-8") == "néw\n"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_failing_writer_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"old checkpoint")

    def half_then_crash(handle):
        handle.write(b"half a")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_crash)
    assert path.read_bytes() == b"old checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_a_writer_that_takes_a_file_name_sees_the_destination_suffix(tmp_path):
    path = tmp_path / "plot.png"
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != path
        tmp.write_bytes(b"png")
        assert not path.exists()  # nothing is visible until the writer is done
    assert path.read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


def test_torch_save_round_trips_and_modes_follow_the_umask_or_the_argument(tmp_path):
    path = tmp_path / "state.pt"
    atomic_write(path, lambda handle: torch.save({"w": torch.arange(3)}, handle))
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "a")
        atomic_write_text(tmp_path / "b.txt", "b", mode=0o600)
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o600
