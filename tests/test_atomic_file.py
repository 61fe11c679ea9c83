"""A write that fails halfway must leave the old file as it was and no temporary beside it."""

import pytest

from sw.atomic_file import atomic_path, write_atomic


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.safetensors"
    write_atomic(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.safetensors"]


def test_successful_write_replaces_and_creates_parents(tmp_path):
    path = tmp_path / "new" / "results.md"
    write_atomic(path, b"one")
    write_atomic(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in path.parent.iterdir()] == ["results.md"]
