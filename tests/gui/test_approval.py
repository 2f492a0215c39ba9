"""The approval dialog (issue #17 item 9): shows now vs after, confirms only with a reason."""

from __future__ import annotations

from gui.widgets.approval import ApprovalDialog


def test_confirm_needs_a_reason(qtbot):
    dialog = ApprovalDialog("Approve model v2", [("version", "v1", "v2"), ("escape %", "4.1", "1.2")], "goes live")
    qtbot.addWidget(dialog)
    assert dialog.table.rowCount() == 2 and dialog.table.item(1, 2).text() == "1.2"
    assert not dialog.ok_button.isEnabled()
    dialog.reason.setText("   ")
    assert not dialog.ok_button.isEnabled()
    dialog.reason.setText("fewer escapes on the new dents")
    assert dialog.ok_button.isEnabled() and dialog.reason_text() == "fewer escapes on the new dents"


def test_side_by_side_with_the_confusion_counts_fits_a_line_panel(qtbot):
    """Eleven rows (threshold with its source, held-out figures, confusion counts) on a 1280 x 800 panel; a long
    cell wraps instead of being cut."""
    source = "1.583 (model v7's calibration, by Dana 2026-12-06 15:37:56, target 1.0 %, expected 0.2-3.1 %)"
    rows = [("version", "v6", "v7"), ("live threshold", "1.42", source), ("AUROC", "0.91", "0.94"),
            ("false reject %", "2.5", "1.25"), ("escape %", "12.5", "0"), ("held-out parts", "80 good / 8 defect",
                                                                         "80 good / 8 defect"),
            ("good judged OK", "78", "79"), ("good judged NG (false rejects)", "2", "1"),
            ("defect judged NG", "7", "8"), ("defect judged OK (escapes)", "1", "0")]
    dialog = ApprovalDialog("Approve model v7", rows, "Counts on v7's held-out parts ... " * 4)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    assert dialog.width() <= 1280 and dialog.height() <= 800
    table = dialog.table
    assert table.item(1, 2).toolTip() == source
    assert table.rowHeight(1) > table.rowHeight(0)  # wrapped onto a second line, not cut
    assert table.horizontalScrollBar().maximum() == 0 and table.verticalScrollBar().maximum() == 0
