"""Operator screen on the real station: verdicts appear, counters add up, start / stop, changeover."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from inspector.audit.h5log import log_files
from inspector.audit.reader import AuditReader
from inspector.station.handle import StationHandle
from tests.conftest import audit_events
from tests.gui.conftest import make_window, wait_parts, wait_running


def test_verdicts_appear_and_counters_add_up(window, qtbot):
    wait_running(qtbot, window)
    wait_parts(qtbot, window, 6)
    op = window.operator
    qtbot.waitUntil(lambda: op.banner.verdict in ("OK", "NG", "FAULT"), timeout=10_000)
    assert op.banner.word.text() == op.banner.verdict
    assert op.banner.part.text().startswith("Part ")
    assert "threshold" in op.banner.score.text() or op.banner.verdict == "FAULT"
    assert op.view.has_frame()
    # Heatmap and boxes toggle on the live view.
    op.heat_box.setChecked(False)
    op.boxes_box.setChecked(False)
    assert not op.view.show_heatmap and not op.view.show_boxes

    qtbot.mouseClick(op.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.handle.running and not window.busy, timeout=30_000)
    window.poller.poke()
    qtbot.waitUntil(lambda: window.last_snapshot is not None and not window.last_snapshot.running, timeout=5_000)
    qtbot.waitUntil(lambda: op.counters.total.value.text() == f"{window.handle.counts().parts:,}", timeout=5_000)

    counts = window.handle.counts()
    stats = window.handle.stats()
    assert counts.parts == stats.parts >= 6
    assert counts.parts == counts.ok + counts.ng + counts.faults
    assert int(op.counters.ok.value.text().replace(",", "")) == counts.ok
    assert int(op.counters.ng.value.text().replace(",", "")) == counts.ng
    expected_yield = f"{100.0 * counts.ok / counts.inspected:.1f} %" if counts.inspected else "-"
    assert op.counters.yield_.value.text() == expected_yield
    # Every part the GUI was told about is in the log; the display may skip frames, the log never.
    assert window.feed.pushed == counts.parts
    assert stats.log.published == counts.parts
    assert not any("not logged" in reason for reason in stats.drops)
    # NG parts land in the strip and open enlarged.
    if counts.ng:
        qtbot.waitUntil(lambda: op.ng_strip.count() > 0, timeout=5_000)
        op.ng_strip.opened.emit(op.ng_strip.part(0))
        assert op.dialog is not None and op.dialog.isVisible()
        op.dialog.close()
    assert op.start_button.isEnabled() and not op.stop_button.isEnabled()

    # Start again: counters continue over the new run (a stopped loop cannot restart; the handle makes a new one).
    qtbot.mouseClick(op.start_button, Qt.MouseButton.LeftButton)
    wait_running(qtbot, window)
    qtbot.waitUntil(lambda: window.handle.counts().parts > counts.parts, timeout=30_000)


def test_changeover_from_the_line_selector(window, qtbot):
    wait_running(qtbot, window)
    wait_parts(qtbot, window, 2)
    combo = window.line_combo
    combo.setCurrentText("ring2")
    combo.activated.emit(combo.currentIndex())
    qtbot.waitUntil(lambda: window.handle.line == "ring2" and not window.busy, timeout=60_000)
    assert window.handle.loop is not None and window.handle.loop.line == "ring2"
    seen = window.feed.pushed
    qtbot.waitUntil(lambda: window.feed.pushed > seen + 1, timeout=30_000)
    qtbot.waitUntil(lambda: op_line(window) == "ring2", timeout=10_000)
    assert combo.currentText() == "ring2"
    window.shutdown()
    changeovers = [e for e in audit_events(window.handle.log_dir) if e["kind"] == "changeover"]
    assert changeovers and changeovers[-1]["who"] == "operator" and "ring2" in changeovers[-1]["what"]
    assert StationHandle(window.handle.config_path).line == "ring2"  # a restarted GUI resumes the line it ran


def op_line(window) -> str:
    item = window.operator.last_item
    return item.line if item is not None else ""


def test_plc_status_light_follows_the_link(qtbot, station_config, pins):
    from gui.main_window import MainWindow
    from inspector.station.handle import StationHandle

    handle = StationHandle(station_config, trigger_mode="plc")  # plc: default spec, pyserial loop:// port
    win = MainWindow(handle, pins, confirm_changeover=False, poll_s=0.2)
    qtbot.addWidget(win)
    try:
        qtbot.waitUntil(lambda: handle.running and handle.link is not None, timeout=60_000)
        qtbot.waitUntil(lambda: win.plc_light.text in ("CONNECTED", "SILENT"), timeout=10_000)
        assert win.plc_light.state in ("ok", "warn")
    finally:
        win.shutdown()
    assert handle.link is None  # stopped with the window


@pytest.mark.slow
def test_part_ids_continue_after_a_restart_of_the_app(station_config, pins, qtbot):
    """Issue #17 item 3: the demo camera numbered parts from P000001 again after each restart (duplicate ids)."""
    for _run in range(2):
        win = make_window(qtbot, station_config, pins)
        try:
            wait_running(qtbot, win)
            wait_parts(qtbot, win, 3)
        finally:
            win.shutdown()
    ids: list[str] = []
    for path in log_files(station_config.parent / "logs"):
        with AuditReader(path) as reader:
            ids += [r["part_id"] for r in reader.records()]
    assert len(ids) >= 6 and len(set(ids)) == len(ids), sorted(ids)


def test_stop_keeps_the_counters_and_shows_no_verdict(window, qtbot):
    """Issue #17 item 5: STOP flashed the counters to 0 and left the last part's big OK on screen."""
    import threading

    wait_running(qtbot, window)
    wait_parts(qtbot, window, 3)
    seen: list[int] = []
    done = threading.Event()

    def sample() -> None:  # what the poller would read, as often as it can, while the station stops
        while not done.is_set():
            seen.append(window.handle.counts().parts)

    sampler = threading.Thread(target=sample, name="count-sampler")
    sampler.start()
    try:
        qtbot.mouseClick(window.operator.stop_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not window.handle.running and not window.busy, timeout=30_000)
    finally:
        done.set()
        sampler.join()
    assert seen and min(seen) >= 3 and seen == sorted(seen)
    window.poller.poke()
    qtbot.waitUntil(lambda: window.last_snapshot is not None and not window.last_snapshot.running, timeout=5_000)
    banner = window.operator.banner
    assert banner.verdict == "" and banner.word.text() == "—"
    assert banner.part.text().startswith("station stopped · last part ")
    assert window.operator.counters.total.value.text() == f"{window.handle.counts().parts:,}"


@pytest.mark.slow
def test_a_second_gui_on_the_same_log_folder_is_visibly_refused(window, station_config, pins, qtbot):
    """Issue #17 item 4: the second window looked healthy (green START); the refusal was a status-bar line
    advising --standby, which `inspector gui` does not accept."""
    wait_running(qtbot, window)
    second = make_window(qtbot, station_config, pins)
    try:
        qtbot.waitUntil(lambda: not second.busy and bool(second.operator.blocked), timeout=60_000)
        second.poller.poke()
        qtbot.waitUntil(lambda: second.station_light.state == "fault", timeout=5_000)
        assert second.station_light.text == "NOT RUNNING"
        banner = second.operator.banner
        assert banner.word.text() == "NOT RUNNING" and "Another station is already running" in banner.part.text()
        assert "--standby" not in second.operator.blocked and "--log-dir" in second.operator.blocked
        assert not second.handle.running and window.handle.running  # the first station is untouched
    finally:
        second.shutdown()


def test_a_start_shows_that_it_moves(idle_window, qtbot):
    """Issue #17 item 7: a first start showed nothing moving for minutes."""
    import re

    win = idle_window
    banner = win.operator.banner
    win.start_station()
    texts: set[str] = set()
    qtbot.waitUntil(lambda: texts.add(banner.part.text()) or (win.handle.running and not win.busy), timeout=60_000)
    step = r"^step \d/3: (loading the backbone|preparing the engine|fitting the few-shot samples)"
    starting = [t for t in texts if re.search(step, t) or t.endswith((": opening the log", ": starting"))]
    assert starting, texts
    assert win.clock.isVisible() and win.stack.currentIndex() == 0


def test_a_start_names_its_step(idle_window):
    """Issue #16 item 4: the banner names each start-up step the engine cache is in, with its seconds."""
    win = idle_window
    win._set_busy(True, "starting")
    win._starting_since = 0.0
    try:
        win.handle.engines.progress.begin(3, "fitting the few-shot samples")
        win._tick()
        banner = win.operator.banner
        assert banner.word.text() == "STARTING"
        assert banner.part.text() == "step 3/3: fitting the few-shot samples", banner.part.text()
        assert banner.score.text() == "0 s"
        win.handle.engines.progress.done()
        win._tick()
        after = "opening the log" if win.handle.engines.cached("ring") is not None else "starting"
        assert banner.part.text() == f"line ring: {after}"
    finally:
        win.handle.engines.progress.done()
        win._set_busy(False)
