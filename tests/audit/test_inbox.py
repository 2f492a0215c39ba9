"""Events handed to the running station through its log folder's inbox: durable, ordered, never silently lost."""

from __future__ import annotations

from pathlib import Path

from inspector.audit import inbox
from inspector.audit.records import AuditEvent


def test_post_pending_done_in_order(tmp_path: Path) -> None:
    first = inbox.post(tmp_path, AuditEvent("model_promote", "anna", "v1", "base", "v1", time_ns=2_000))
    second = inbox.post(tmp_path, AuditEvent("model_rollback", "omar", "back", "v1", "base", time_ns=3_000))
    (tmp_path / "inbox" / ".half-written.json.tmp").write_text("{")  # a poster that died mid-write: not seen
    got = inbox.pending(tmp_path)
    assert [p for p, _ in got] == [first, second]
    assert got[0][1] == AuditEvent("model_promote", "anna", "v1", "base", "v1", time_ns=2_000)
    inbox.done([first])
    assert [e.kind for _, e in inbox.pending(tmp_path)] == ["model_rollback"]


def test_unreadable_file_is_kept_and_reported_once(tmp_path: Path) -> None:
    box = tmp_path / "inbox"
    box.mkdir()
    (box / "00000000000000000001-1-aaaa.json").write_text('{"kind": "x"}')  # fields missing
    ((path, event),) = inbox.pending(tmp_path)
    assert event.kind == "log_inbox_error" and path.name.endswith(".bad") and path.exists()
    inbox.done([path])
    assert path.exists()  # kept for QA
    assert inbox.pending(tmp_path) == []  # reported once


def test_no_inbox_is_nothing_pending(tmp_path: Path) -> None:
    assert inbox.pending(tmp_path / "never-created") == []
