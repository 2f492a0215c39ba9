"""Operator feedback closes the loop (issue #17 item 8): a part marked by the operator becomes a few-shot
candidate, the engineer accepts it into the set, both steps audited with who."""

from __future__ import annotations

from PySide6.QtCore import Qt

from gui.views.engineer.samples import PROPOSED
from inspector.tuning.samples import CANDIDATES
from tests.conftest import audit_events
from tests.gui.conftest import login, wait_parts, wait_running


def test_operator_feedback_becomes_a_candidate_the_engineer_accepts(window, qtbot):
    wait_running(qtbot, window)
    wait_parts(qtbot, window, 1)
    bar = window.operator.feedback
    qtbot.waitUntil(lambda: bar.item is not None and bar.item.verdict in ("OK", "NG"), timeout=30_000)
    item = bar.item
    folder = window.engineer.ctx.sample_folder()
    before = {p.name for p in folder.rglob("*.png")}
    # A real defect on this part (an escape if it was judged OK), as the operator on shift: no PIN.
    bar.defect_class.setCurrentText("crack")
    qtbot.mouseClick(bar.defect_button, Qt.MouseButton.LeftButton)
    (proposed,) = (folder / CANDIDATES / "defect" / "crack").glob("*.png")
    assert item.part_id in proposed.name
    assert {p.name for p in folder.rglob("*.png") if CANDIDATES not in p.parts} == before  # not in the set yet
    assert "thanks" in window.footer.text()

    login(window)
    samples = window.engineer.samples
    window.engineer.tabs.setCurrentWidget(samples)
    samples.refresh()
    assert "1 proposed by operators" in samples.count_label.text()
    samples.filter.setCurrentText(PROPOSED)
    assert samples.list.count() == 1 and samples.accept_button.isEnabled()
    samples.list.item(0).setSelected(True)
    assert samples.accept_selected() == 1
    assert (folder / "defect" / "crack" / proposed.name).exists() and not proposed.exists()
    assert any(s.label == "crack" for s in samples.samples) and samples.proposals == []
    window.shutdown()
    events = {e["kind"]: e for e in audit_events(window.handle.log_dir)}
    fb = events["operator_feedback"]
    assert fb["who"] == "operator" and item.part_id in fb["what"] and "real defect crack" in fb["what"]
    assert events["sample_accept"]["who"] == "Dana"


def test_false_reject_is_offered_on_ng_parts_only(window, qtbot):
    wait_running(qtbot, window)
    bar = window.operator.feedback
    qtbot.waitUntil(lambda: bar.item is not None and bar.item.verdict == "NG", timeout=60_000)
    window.feed.updated.disconnect(window._on_feed)  # hold the NG part on screen
    assert bar.good_button.isEnabled()
    qtbot.mouseClick(bar.good_button, Qt.MouseButton.LeftButton)
    folder = window.engineer.ctx.sample_folder()
    assert len(list((folder / CANDIDATES / "good").glob("*.png"))) == 1
    window.shutdown()
    (event,) = [e for e in audit_events(window.handle.log_dir) if e["kind"] == "operator_feedback"]
    assert "not a defect (false reject)" in event["what"]
    bar.set_part(None)  # no part on screen: nothing to speak about
    assert not bar.good_button.isEnabled() and not bar.defect_button.isEnabled()
