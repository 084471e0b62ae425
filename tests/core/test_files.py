"""Atomic writes: a reader never sees half a file, an interrupted write never destroys a good one."""

import hashlib

import pytest

from rd_edge.core.files import atomic_path, remove_stale_temps, sha256_file, write_text_atomic


def test_sha256_of_a_file(tmp_path):
    path = tmp_path / "m.bin"
    path.write_bytes(b"x" * (3 << 20))
    assert sha256_file(path) == hashlib.sha256(b"x" * (3 << 20)).hexdigest()


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = write_text_atomic(tmp_path / "a" / "t.json", "good")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "good" and sorted(p.name for p in target.parent.iterdir()) == ["t.json"]
    with atomic_path(target, keep_failed=tmp_path / "failed.json") as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_stale_temporaries_of_a_killed_write_are_found_and_removed(tmp_path):
    target = tmp_path / "m.pt"
    stale = tmp_path / ".m.pt.abc123.tmp"
    stale.write_bytes(b"partial")
    assert remove_stale_temps(target) == [stale] and not stale.exists()
