"""Engineer mode on the real station: PIN lockout, prompt preview and apply, threshold, capture, retrain."""

from __future__ import annotations

import json

import pytest
import yaml
from PySide6.QtCore import Qt

from gui import theme
from gui.pin import PinStore
from inspector.training.registry import ModelRegistry
from tests.conftest import audit_events
from tests.gui.conftest import PIN, login, make_window, wait_parts, wait_running
from tests.station.conftest import write_trained_station
from tests.training.conftest import trained  # noqa: F401 (the trained-line fixture)


def test_pin_lockout_and_audit(idle_window, qtbot, monkeypatch):
    from gui.widgets.pin_dialog import LoginDialog

    win = idle_window
    store = win.session.store
    text = store.path.read_text()
    assert PIN not in text and json.loads(text)["kdf"] == "scrypt"  # the hash, never the PIN

    dialog = LoginDialog(win.session.check, "", win)
    qtbot.addWidget(dialog)
    dialog.try_login()
    assert "name" in dialog.message.text()  # a change must be attributable
    dialog.name.setText("Mallory")
    results = []
    for _ in range(3):
        dialog.pin.setText("0000")
        qtbot.mouseClick(dialog.login_button, Qt.MouseButton.LeftButton)
        results.append(dialog.message.text())
    assert "2 attempt(s) left" in results[0] and "locked" in results[2]
    dialog.pin.setText(PIN)  # the right PIN is refused too while locked
    result = dialog.try_login()
    assert result is not None and result.locked and not win.session.active
    # The lockout survives a restart of the GUI (it is kept in the PIN file).
    assert PinStore(store.path, max_failures=3, lockout_s=120).verify(PIN).locked
    # ... and ends after its time.
    later = PinStore(store.path, max_failures=3, lockout_s=120, clock=lambda: 10**12)
    monkeypatch.setattr(win.session, "store", later)
    assert win.session.check("Dana", PIN).ok and win.session.active
    assert win.stack.currentIndex() == 1 and win.engineer.currentIndex() == 1
    win.session.logout()
    assert win.engineer.currentIndex() == 0

    kinds = [(e["kind"], e["who"]) for e in audit_events(win.handle.log_dir)]
    assert kinds.count(("pin_failed", "Mallory")) == 2
    assert ("pin_lockout", "Mallory") in kinds and ("pin_refused", "Mallory") in kinds
    assert ("engineer_login", "Dana") in kinds and ("engineer_logout", "Dana") in kinds


def test_prompt_edit_changes_the_score_and_is_applied(window, qtbot):
    wait_running(qtbot, window)
    wait_parts(qtbot, window, 2)
    panel = window.engineer.prompts
    with qtbot.waitSignal(panel.previewed, timeout=60_000):
        login(window)
    first = panel.preview
    assert first.frame is not None and abs(first.frame.after - first.frame.before) < 1e-6  # unchanged draft
    assert {s.kind for s in first.samples} == {"good", "scratch"}

    panel.normal_states.setPlainText("shiny {}\nimmaculate {} straight from the lathe")
    with qtbot.waitSignal(panel.previewed, timeout=60_000):
        panel.defects.item(0, 1).setText("a long deep scratch across the polished ring face")
    after = panel.preview
    assert after.frame is not None
    assert abs(after.frame.after - after.frame.before) > 1e-6  # the edit changes the score
    assert any(abs(s.after - s.before) > 1e-6 for s in after.samples)
    assert panel.view.has_frame()

    with qtbot.waitSignal(panel.applied, timeout=120_000):
        qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    saved = yaml.safe_load(window.handle.config_path.read_text())["lines"][0]
    assert saved["prompts"]["normal_states"] == ["shiny {}", "immaculate {} straight from the lathe"]
    assert window.handle.config_path.read_text().startswith("# test station")  # comments kept
    assert window.handle.running and window.handle.inspector.line.prompts.defects["scratch"].startswith("a long")
    window.shutdown()
    events = [e for e in audit_events(window.handle.log_dir) if e["kind"] == "prompts"]
    assert events and events[0]["who"] == "Dana" and "lathe" in events[0]["new"] and "flawless" in events[0]["old"]


def test_threshold_slider_estimates_and_apply(window, qtbot):
    wait_running(qtbot, window)
    login(window)
    panel = window.engineer.threshold
    window.engineer.tabs.setCurrentWidget(panel)
    live = window.handle.inspector.threshold
    assert panel.estimate is not None and panel.estimate.threshold == live
    panel.slider.setValue(0)
    low = panel.estimate
    panel.slider.setValue(panel.slider.maximum())
    high = panel.estimate
    assert low.false_reject == 1.0 and high.false_reject == 0.0  # every good sample NG / OK at the ends
    assert high.escape == 1.0 and low.escape == 0.0
    assert panel.false_reject.value.text() == "0.0 %"
    panel.slider.setValue(panel.slider.maximum() // 2)
    proposal = round(panel.proposal(), 6)
    asked: list[list] = []
    panel.ask_reason = lambda _t, rows, _n: asked.append(rows)  # cancelled: nothing changes
    qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    assert window.handle.inspector.threshold == live
    assert asked[0][0] == ("threshold", f"{live:.4f}", f"{proposal:.4f}")  # live vs proposed, side by side
    assert [r[0] for r in asked[0][1:]] == ["false reject (good → NG)", "escape (defect → OK)"]
    panel.ask_reason = lambda *_a: "tighter for the new supplier"
    with qtbot.waitSignal(panel.applied, timeout=30_000):
        qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    assert window.handle.inspector.threshold == proposal  # live on the line
    saved = yaml.safe_load(window.handle.config_path.read_text())["lines"][0]["decision"]["threshold"]
    assert saved == proposal
    # The next part painted carries the new threshold (painting is throttled: wait for the paint, not the push).
    seen = window.feed.shown
    qtbot.waitUntil(lambda: window.feed.shown > seen + 1 and window.operator.last_item.threshold == proposal,
                    timeout=30_000)
    window.shutdown()
    # One path (issue #12): a GUI apply is a `threshold_change` event with who, old -> new.
    events = [e for e in audit_events(window.handle.log_dir) if e["kind"] == "threshold_change"]
    assert events and events[-1]["who"] == "Dana" and json.loads(events[-1]["new"])["value"] == proposal
    assert "tighter for the new supplier" in events[-1]["what"]


def test_capture_adds_a_sample_file(window, qtbot):
    wait_running(qtbot, window)
    wait_parts(qtbot, window, 1)
    login(window)
    panel = window.engineer.samples
    window.engineer.tabs.setCurrentWidget(panel)
    panel.refresh_frame()
    folder = window.handle.config.resolve("fewshot")
    good_before = len(list((folder / "good").glob("*.png")))
    qtbot.mouseClick(panel.good_button, Qt.MouseButton.LeftButton)
    assert panel.captured is not None and panel.captured.parent == folder / "good"
    assert len(list((folder / "good").glob("*.png"))) == good_before + 1
    panel.defect_class.setCurrentText("dent")
    qtbot.mouseClick(panel.defect_button, Qt.MouseButton.LeftButton)
    assert (folder / "defect" / "dent").is_dir() and len(list((folder / "defect" / "dent").glob("*.png"))) == 1
    assert panel.list.count() == good_before + 1 + 1 + 1  # + the scratch sample
    # Browse and delete: the file leaves the fit set but is kept under .deleted/.
    dent = panel.captured
    panel.confirm_delete = False
    panel.filter.setCurrentText("dent")
    panel.list.item(0).setSelected(True)
    assert panel.delete_selected() == 1
    assert not dent.exists() and (folder / ".deleted" / "defect" / "dent" / dent.name).exists()
    window.shutdown()
    kinds = [(e["kind"], e["who"]) for e in audit_events(window.handle.log_dir)]
    assert kinds.count(("sample_add", "Dana")) == 2 and ("sample_delete", "Dana") in kinds


def test_retrain_runs_to_completion_then_approve_and_rollback(window, qtbot):
    wait_running(qtbot, window)
    login(window)
    panel = window.engineer.retrain
    panel.confirm_force = False  # a gate refusal on 5 random-weight samples is forced (and logged as such)
    asked: list[tuple[str, list]] = []
    answers = iter([None, "better escape on the new scratches", "line reported false rejects"])
    panel.ask_reason = lambda title, rows, _note: asked.append((title, rows)) or next(answers)
    window.engineer.tabs.setCurrentWidget(panel)
    assert [r.version for r in panel.rows if r.status == "active"] == ["base"]
    parts_before = window.handle.counts().parts
    with qtbot.waitSignal(panel.finished_run, timeout=180_000) as done:
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    version = done.args[0]
    assert version is not None, panel.stage.text()
    assert [r.status for r in panel.rows if r.version == version] == ["candidate"]
    fractions = [e.fraction for e in panel.events]
    assert len(fractions) >= 4 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert panel.progress.value() == 100 and "threshold" in panel.events[-1].metrics
    # live training metrics per head and epoch
    assert any(e.stage == "train" and any("loss" in k for k in e.metrics) for e in panel.events)
    assert (window.handle.registry_dir / "ring" / version).is_dir()
    assert window.handle.counts().parts > parts_before  # the line kept inspecting meanwhile

    # Issue #17 item 9: approving shows active vs candidate and needs a reason; cancelled, nothing changes.
    panel.versions.selectRow([r.version for r in panel.rows].index(version))
    qtbot.mouseClick(panel.approve_button, Qt.MouseButton.LeftButton)
    assert window.handle.inspector.model_version == "base"
    title, rows = asked[0]
    assert title == f"Approve model {version}" and rows[0] == ("version", "base", version)
    assert [r[0] for r in rows[1:6]] == ["live threshold", "AUROC", "false reject %", "escape %", "held-out parts"]
    assert rows[1][1] != "-" and rows[1][2].split()[0] != "-"  # what is live now, and what will be
    # The confusion counts on the candidate's held-out parts, base judged on the same parts (issue #17 item 9).
    counts = {r[0]: r[1:] for r in rows}
    assert counts["held-out parts"][0] == counts["held-out parts"][1] != "not recorded"
    for label in ("good judged OK", "good judged NG (false rejects)", "defect judged NG", "defect judged OK (escapes)"):
        assert all(c.isdigit() for c in counts[label]), (label, counts[label])
    with qtbot.waitSignal(panel.version_changed, timeout=60_000):
        panel.versions.selectRow([r.version for r in panel.rows].index(version))
        qtbot.mouseClick(panel.approve_button, Qt.MouseButton.LeftButton)
    assert window.handle.inspector.model_version == version
    assert [r.status for r in panel.rows if r.version == version] == ["active"]
    qtbot.waitUntil(lambda: window.operator.last_item is not None
                    and window.operator.last_item.model_version == version, timeout=30_000)
    with qtbot.waitSignal(panel.version_changed, timeout=60_000):
        qtbot.mouseClick(panel.rollback_button, Qt.MouseButton.LeftButton)
    assert window.handle.inspector.model_version == "base"
    assert [r.status for r in panel.rows if r.version == version] == ["rejected"]
    window.shutdown()
    events = [e for e in audit_events(window.handle.log_dir) if e["who"] == "Dana"]
    kinds = [e["kind"] for e in events]
    assert "retrain_start" in kinds and "retrain_done" in kinds and "model_rollback" in kinds
    assert "model_promote" in kinds or "model_promote_forced" in kinds
    promote = next(e for e in events if e["kind"].startswith("model_promote"))
    assert "better escape on the new scratches" in promote["what"]
    assert "line reported false rejects" in next(e for e in events if e["kind"] == "model_rollback")["what"]


@pytest.mark.slow  # trains a line once per session (tests.training's ``trained``) and fits it twice
def test_threshold_sequence_through_the_widgets(trained, qtbot, tmp_path, pins):  # noqa: F811
    """Issue #12 through the engineer's widgets: apply, approve, roll back, prompt apply, restart - one live
    threshold at each step, shown with where it came from, each change one `threshold_change` event."""
    config = write_trained_station(tmp_path, trained)
    v1_threshold = ModelRegistry(tmp_path / "models", "ring").load("v1").threshold
    window = make_window(qtbot, config, pins)
    wait_running(qtbot, window)
    login(window)
    panel, retrain, prompts = window.engineer.threshold, window.engineer.retrain, window.engineer.prompts

    def live(value: float, version: str, source: str) -> None:
        record = window.handle.threshold_record()
        assert record.value == pytest.approx(value) and record.version == version
        assert window.handle.inspector.threshold == pytest.approx(value)
        text = panel.live_label.text()
        assert f"model {version}: {value:.4f}" in text and source in text, text

    window.engineer.tabs.setCurrentWidget(panel)
    panel.ask_reason = lambda *_a: "threshold sequence test"
    fitted = window.handle.inspector.threshold
    panel.slider.setValue(panel.slider.maximum() // 3)
    applied = round(panel.proposal(), 6)
    with qtbot.waitSignal(panel.applied, timeout=30_000):
        qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    live(applied, "base", "set by hand, by Dana")
    retrain.confirm_force = False
    retrain.ask_reason = lambda *_a: "threshold sequence test"
    window.engineer.tabs.setCurrentWidget(retrain)
    with qtbot.waitSignal(retrain.version_changed, timeout=60_000):
        retrain.versions.selectRow([r.version for r in retrain.rows].index("v1"))
        qtbot.mouseClick(retrain.approve_button, Qt.MouseButton.LeftButton)
    live(v1_threshold, "v1", "model v1's calibration")
    assert "used by the base heads only" in panel.live_label.text()  # the YAML's value is shown, and what for
    with qtbot.waitSignal(retrain.version_changed, timeout=60_000):
        qtbot.mouseClick(retrain.rollback_button, Qt.MouseButton.LeftButton)
    live(applied, "base", "set by hand, by Dana")
    window.engineer.tabs.setCurrentWidget(prompts)
    with qtbot.waitSignal(prompts.applied, timeout=120_000):
        prompts.normal_states.setPlainText("flawless {}\nclean {} from the lathe")
        qtbot.mouseClick(prompts.apply_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.handle.running and not window.busy, timeout=60_000)
    live(applied, "base", "set by hand, by Dana")  # the refit kept the live threshold
    window.shutdown()
    window = make_window(qtbot, config, pins)  # restart
    try:
        wait_running(qtbot, window)
        login(window)
        panel = window.engineer.threshold
        window.engineer.tabs.setCurrentWidget(panel)
        panel.refresh()
        live(applied, "base", "set by hand, by Dana")
    finally:
        window.shutdown()
    changes = [e for e in audit_events(window.handle.log_dir) if e["kind"] == "threshold_change"]
    assert [(json.loads(e["old"])["value"], json.loads(e["new"])["value"], e["who"]) for e in changes] == [
        (pytest.approx(fitted), applied, "Dana"), (applied, pytest.approx(v1_threshold), "Dana"),
        (pytest.approx(v1_threshold), applied, "Dana")]


def test_production_proposal_shown_applied_and_dismissed(window, qtbot):
    """The threshold tab shows the station's production check (now -> proposed); Apply is the one threshold path."""
    from inspector.station.recalibration import ProposalBook, ThresholdProposal

    wait_running(qtbot, window)
    login(window)
    panel = window.engineer.threshold
    box = panel.production
    window.engineer.tabs.setCurrentWidget(panel)
    assert "No production check yet" in box.summary.text() and not box.apply_button.isEnabled()
    handle = window.handle
    proposal = ThresholdProposal(handle.line, handle.inspector.model_version, handle.inspector.threshold,
                                 round(handle.inspector.threshold * 0.8, 6), 0.01, (0.006, 0.016), 0.001,
                                 (0.0005, 0.002), 1000, 950, 20, 0, handle.inspector.threshold - 0.5,
                                 "2026-12-06T10:00:00+00:00")
    book = ProposalBook(handle.log_dir)
    book.update(handle.line, proposal=proposal.to_json())
    panel.refresh()
    summary = box.summary.text()
    assert box.apply_button.isEnabled() and "PROPOSAL" in summary and "950 OK with margin" in summary
    assert f"PROPOSED: {proposal.proposed:.4f}" in box.after.text() and "1.0 %" in box.after.text()
    qtbot.mouseClick(box.preview_button, Qt.MouseButton.LeftButton)
    assert panel.proposal() == pytest.approx(proposal.proposed, abs=(panel.hi - panel.lo) / 1000)
    asked = []
    box.ask_reason = lambda _t, rows, _n: asked.append(rows)  # cancelled: nothing changes
    qtbot.mouseClick(box.apply_button, Qt.MouseButton.LeftButton)
    assert asked and asked[0][0] == ("threshold", f"{proposal.live:.4f}", f"{proposal.proposed:.4f}")
    assert box.proposal.actionable and handle.inspector.threshold == proposal.live
    box.ask_reason = lambda *_a: "shift's rejects checked"
    with qtbot.waitSignal(box.applied, timeout=30_000):
        qtbot.mouseClick(box.apply_button, Qt.MouseButton.LeftButton)
    assert handle.inspector.threshold == proposal.proposed and handle.threshold_record().method == "production"
    assert "shift's rejects checked" in handle.threshold_record().why
    assert "APPLIED by Dana" in box.summary.text() and not box.apply_button.isEnabled()
    assert "recalibrated from production parts" in panel.live_label.text()
    book.update(handle.line, proposal={**proposal.to_json(), "live": proposal.proposed, "proposed": 1.5})
    box.refresh()
    box.dismiss("a special batch runs today")
    qtbot.waitUntil(lambda: "DISMISSED" in box.summary.text(), timeout=30_000)
    assert handle.inspector.threshold == proposal.proposed
    window.shutdown()
    kinds = [e["kind"] for e in audit_events(handle.log_dir) if e["kind"].startswith("threshold")]
    assert kinds[-2:] == ["threshold_change", "threshold_proposal_dismissed"]


@pytest.mark.slow
def test_retrain_with_a_new_one_sample_defect_class(station_config, pins, qtbot):
    """Issue #17 item 2: type a new class, add one sample as DEFECT, retrain - it used to crash at 88 % (the
    probe of a fold without the new class has one class column fewer)."""
    data = yaml.safe_load(station_config.read_text())
    for line in data["lines"]:
        line["heads"]["probe"] = 1.0
    station_config.write_text(yaml.safe_dump(data, sort_keys=False))
    window = make_window(qtbot, station_config, pins)
    try:
        _retrain_one_sample_class(window, qtbot)
    finally:
        window.shutdown()


def _retrain_one_sample_class(window, qtbot) -> None:
    wait_running(qtbot, window)
    wait_parts(qtbot, window, 1)
    qtbot.waitUntil(lambda: window.operator.last_item is not None, timeout=10_000)  # painted: capture takes it
    login(window)
    samples = window.engineer.samples
    window.engineer.tabs.setCurrentWidget(samples)
    samples.refresh_frame()
    for name in ("dent", "crack"):  # three classes with scratch: a fold without one has fewer class columns
        samples.defect_class.setCurrentText(name)
        qtbot.mouseClick(samples.defect_button, Qt.MouseButton.LeftButton)
    crack = window.handle.config.resolve("fewshot") / "defect" / "crack"
    assert len(list(crack.glob("*.png"))) == 1, window.footer.text()
    panel = window.engineer.retrain
    panel.confirm_force = False
    window.engineer.tabs.setCurrentWidget(panel)
    with qtbot.waitSignal(panel.finished_run, timeout=240_000) as done:
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    assert done.args[0] is not None, panel.stage.text()
    assert panel.progress.value() == 100 and "failed" not in panel.stage.text()


def test_cancelled_retrain_is_not_a_failure(window, qtbot):
    """Issue #17 item 5: a cancelled retrain showed red "TrainingCancelledError", a full bar and "retrain failed"."""
    wait_running(qtbot, window)
    login(window)
    panel = window.engineer.retrain
    window.engineer.tabs.setCurrentWidget(panel)
    panel.progressed.connect(lambda _e: panel.cancel())  # cancel at the first report
    with qtbot.waitSignal(panel.finished_run, timeout=120_000) as done:
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    assert done.args[0] is None
    assert panel.stage.text().startswith("cancelled") and theme.NG not in panel.stage.styleSheet()
    assert panel.progress.value() == 0 and "failed" not in window.footer.text()
    assert [r.version for r in panel.rows if r.status == "active"] == ["base"]
    window.shutdown()
    kinds = [e["kind"] for e in audit_events(window.handle.log_dir) if e["who"] == "Dana"]
    assert "retrain_cancelled" in kinds and "retrain_failed" not in kinds
