"""History screen: filters over a real audit log, detail view, CSV export, CLIP search by text and example."""

from __future__ import annotations

import csv
import datetime as dt

import numpy as np
from PySide6.QtCore import QDateTime

from inspector.audit.history import ALL
from tests.audit.test_history import T0, write_log


def test_history_filters_export_and_clip_search(idle_window, qtbot, tmp_path):
    win = idle_window
    inspector = win.handle.engines.get("ring")  # the line's engine (fitted from the session cache)
    dim = int(inspector.text.normal.shape[-1])
    embeddings = write_log(win.handle.log_dir, inspector.backbone.identity.label(), dim)
    view = win.history
    with qtbot.waitSignal(view.loaded, timeout=30_000):
        win.nav_buttons["HISTORY"].click()
    assert win.stack.currentWidget() is view
    assert view.model.rowCount() == 12
    assert view.model.row_at(0).record["part_id"] == "P0011"  # newest first

    view.verdict.setCurrentText("NG")
    assert {r.verdict_class for r in view.shown_rows()} == {"NG"} and len(view.shown_rows()) == 4
    view.verdict.setCurrentText("FAULT")
    assert [r.record["part_id"] for r in view.shown_rows()] == ["P0011"]
    view.verdict.setCurrentText(ALL)
    view.line.setCurrentText("ring2")
    assert {r.record["line"] for r in view.shown_rows()} == {"ring2"} and len(view.shown_rows()) == 4
    view.line.setCurrentText(ALL)
    view.defect.setCurrentText("scratch")
    assert {r.record["part_id"] for r in view.shown_rows()} == {"P0000", "P0006"}
    view.defect.setCurrentText(ALL)
    # Time: only the first three hours.
    start = dt.datetime.fromtimestamp(T0 / 1e9)
    view.start.setDateTime(QDateTime.fromSecsSinceEpoch(int(start.timestamp())))
    view.end.setDateTime(QDateTime.fromSecsSinceEpoch(int(start.timestamp()) + 2 * 3600 + 60))
    assert [r.record["part_id"] for r in view.shown_rows()] == ["P0002", "P0001", "P0000"]

    # Detail: image and heatmap of the selected record.
    view.table.selectRow(2)
    assert view.view.has_frame() and "P0000" in view.detail.text()
    # Operator feedback on a logged part (issue #17 item 8): P0000 was judged NG, the operator says it is good.
    assert view.feedback.good_button.isEnabled()
    view.feedback.good_button.click()
    (_proposed,) = (win.engineer.ctx.sample_folder() / ".candidates" / "good").glob("*P0000*.png")
    assert "P0000 marked not a defect" in win.footer.text()
    view.verdict.setCurrentText("OK")  # P0000 is NG: the record pane must not keep a record the filter removed
    assert view.detail.text() == "" and not view.view.has_frame()
    view.verdict.setCurrentText(ALL)

    # Export writes what is shown.
    out = tmp_path / "export.csv"
    assert view.export(out) == 3
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["part_id"] for r in rows] == ["P0002", "P0001", "P0000"] and rows[0]["verdict"] == "OK"

    # CLIP search by example: the selected part ranks itself first (cosine 1), within the filter.
    view.start.setDateTime(QDateTime.fromSecsSinceEpoch(int(start.timestamp()) - 60))
    view.end.setDateTime(QDateTime.fromSecsSinceEpoch(int(start.timestamp()) + 13 * 3600))
    view.verdict.setCurrentText("NG")
    view.table.selectRow(1)
    picked = view.model.row_at(1).record["part_id"]
    view.query.setText("scratch")
    with qtbot.waitSignal(view.searched, timeout=30_000):
        view.like_button.click()
    assert view.query.text() == "" and f"similarity to parts like {picked}" in view.summary.text()
    shown = view.shown_rows()
    assert shown[0].record["part_id"] == picked and view.model.data(view.model.index(0, 8)) == "1.000"
    assert {r.verdict_class for r in shown} == {"NG"}
    # By text: ranked by cosine to the text embedding, best first, over every inspected record.
    view.verdict.setCurrentText(ALL)
    view.query.setText("scratch near the hole")
    with qtbot.waitSignal(view.searched, timeout=30_000) as hit:
        view.text_button.click()
    sims = [s for _, s in hit.args[0].ranked]
    assert len(sims) == 11 and sims == sorted(sims, reverse=True)  # the FAULT has no embedding
    from inspector.tuning.search import query_embedding

    q = query_embedding(inspector, "scratch near the hole")
    best = int(np.argmax(embeddings[:11] @ q / np.linalg.norm(embeddings[:11], axis=1)))
    assert view.shown_rows()[0].record["part_id"] == f"P{best:04d}"
    view.clear_button.click()
    assert view.model.data(view.model.index(0, 8)) == ""
    # A failed search says so where it said "searching ...".
    view.search_image_file(tmp_path / "no-such-image.png")
    qtbot.waitUntil(lambda: view._worker is None and "failed" in view.summary.text(), timeout=30_000)
    assert "no-such-image.png" in view.summary.text()


def test_history_pages_through_the_index(idle_window, qtbot):
    """450 records: the table holds one page (200) at first and loads the next ones as it scrolls."""
    from inspector.audit.browse import PAGE_ROWS
    from inspector.audit.h5log import AuditWriter
    from inspector.config.log import LogSpec
    from tests.audit.conftest import make_record

    win = idle_window
    with AuditWriter(win.handle.log_dir, LogSpec(rotate="size", heatmap_px=8), embedding_dim=16) as writer:
        writer.write([make_record(s, verdict="NG" if s % 5 == 0 else "OK") for s in range(1, 451)])
    view = win.history
    with qtbot.waitSignal(view.loaded, timeout=30_000):
        win.nav_buttons["HISTORY"].click()
    assert view.model.rowCount() == PAGE_ROWS and view.model.canFetchMore()
    assert view.model.row_at(0).record["part_id"] == "P000450"
    assert view.summary.text().startswith("450 of 450 records · 360 OK · 90 NG")
    view.table.scrollToBottom()
    qtbot.wait_until(lambda: view.model.rowCount() > PAGE_ROWS, timeout=5_000)
    while view.model.canFetchMore():
        view.model.fetchMore()
    seqs = [r.record["seq"] for r in view.shown_rows()]
    assert seqs == list(range(450, 0, -1))  # every record once, newest first
    view.verdict.setCurrentText("NG")
    assert view.model.rowCount() == 90 and not view.model.canFetchMore()
