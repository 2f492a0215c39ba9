"""The folder lock shared by the audit writer and the station (flock locks belong to open file descriptions,
so two FolderLocks in one process conflict like two processes do)."""

from __future__ import annotations

import os
from pathlib import Path

from inspector.files import FolderLock


def test_one_holder_at_a_time_and_the_holder_is_named(tmp_path: Path) -> None:
    first, second = FolderLock(tmp_path / "logs", ".x.lock"), FolderLock(tmp_path / "logs", ".x.lock")
    assert first.try_acquire() and first.held
    assert not second.try_acquire() and not second.held
    assert second.holder().startswith(f"pid {os.getpid()} on ")
    first.release()
    assert not first.held
    with second:
        assert second.try_acquire() and second.held  # free again once the first let go
    assert not second.held


def test_locks_of_different_names_do_not_conflict(tmp_path: Path) -> None:
    with FolderLock(tmp_path, ".a.lock") as a, FolderLock(tmp_path, ".b.lock") as b:
        assert a.try_acquire() and b.try_acquire()
