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
