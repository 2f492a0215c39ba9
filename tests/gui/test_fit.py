"""The window fits a line panel: at 1280 x 800 up to 1920 x 1080 every control is on screen and nothing overlaps.

Each view (operator, engineer locked, every engineer tab, history) is opened at each size on a running station,
with long status texts in the header; a view fails when the window cannot shrink to the panel (its minimum size is
larger), when a visible widget lies outside its parent or the window, when two widgets of one layout overlap, or
when a button, label or tab is squeezed below the size its text needs.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QRect
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QLabel,
    QLayout,
    QLineEdit,
    QPushButton,
    QTabBar,
    QWidget,
)

from tests.gui.conftest import login, wait_parts, wait_running

PANELS = [(1280, 800), (1366, 768), (1600, 1000), (1920, 1080)]
TOUCH_PX = 40  # the smallest control a gloved finger hits reliably (issue #17 item 11)
TOUCH_CONTROLS = (QPushButton, QCheckBox, QComboBox, QLineEdit, QAbstractSpinBox)
TOUCH_EXEMPT = {"qt_spinbox_lineedit"}  # the text inside a spin box / date edit: the box itself is checked


def _layout_widgets(layout: QLayout) -> list[QWidget]:
    """The widgets one layout places, nested layouts included (they share the parent's area)."""
    out: list[QWidget] = []
    for i in range(layout.count()):
        item = layout.itemAt(i)
        if item.widget() is not None:
            out.append(item.widget())
        elif item.layout() is not None:
            out.extend(_layout_widgets(item.layout()))
    return out


def _rect_in(widget: QWidget, window: QWidget) -> QRect:
    return QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())


def layout_problems(window: QWidget) -> list[str]:
    """Everything that does not fit, in words (empty when the window is clean)."""
    problems: list[str] = []
    whole = window.rect()
    widgets = [w for w in window.findChildren(QWidget) if not w.isWindow() and w.isVisibleTo(window)]
    for w in widgets:
        text = w.text() if isinstance(w, (QLabel, QAbstractButton)) else ""
        name = f"{type(w).__name__}({w.objectName() or text[:30]!r})"
        r = _rect_in(w, window)
        if not whole.contains(r):
            problems.append(f"{name} at {r.getRect()} is outside the window {whole.getRect()}")
            continue
        parent = w.parentWidget()
        if parent is not None and not parent.isWindow() and not parent.rect().contains(w.geometry()):
            problems.append(f"{name} at {w.geometry().getRect()} sticks out of its parent {type(parent).__name__}")
        squeezable = isinstance(w, (QAbstractButton, QComboBox)) or (isinstance(w, QLabel) and not w.wordWrap())
        hint = w.minimumSizeHint()
        if squeezable and hint.isValid() and (w.width() < hint.width() - 1 or w.height() < hint.height() - 1):
            problems.append(f"{name} squeezed to {w.size().toTuple()} < {hint.toTuple()}")
        if isinstance(w, TOUCH_CONTROLS) and w.height() < TOUCH_PX and w.objectName() not in TOUCH_EXEMPT:
            problems.append(f"{name} is {w.height()} px high: under {TOUCH_PX} px, hard to hit on a touch panel")
        if isinstance(w, QTabBar):
            for i in range(w.count()):
                if w.tabRect(i).width() < w.tabSizeHint(i).width() - 1 or not w.tabRect(i).intersects(w.rect()):
                    problems.append(f"tab {w.tabText(i)!r} is cut")
    for parent in [window, *widgets]:
        lay = parent.layout()
        if lay is None:
            continue
        shown = [w for w in _layout_widgets(lay) if w.isVisibleTo(window)]
        for i, a in enumerate(shown):
            for b in shown[i + 1:]:
                if a.geometry().intersects(b.geometry()):
                    problems.append(f"{type(a).__name__} and {type(b).__name__} overlap in {type(parent).__name__}")
    return problems


def _screens(window):
    """Switch through every screen; yield its name once it shows."""
    window.show_screen(0)
    yield "operator"
    window.show_screen(2)
    yield "history"
    window.show_screen(1)
    if not window.session.active:
        yield "engineer (locked)"
        return
    tabs = window.engineer.tabs
    for i in range(tabs.count()):
        tabs.setCurrentIndex(i)
        yield f"engineer / {tabs.tabText(i)}"


@pytest.fixture
def themed(qapp):
    """The station's look (fonts, paddings: what sizes the widgets), as `inspector gui` installs it."""
    from gui import theme

    style, font, palette = qapp.styleSheet(), qapp.font(), qapp.palette()
    theme.apply(qapp)
    yield qapp
    qapp.setStyleSheet(style)
    qapp.setFont(font)
    qapp.setPalette(palette)


@pytest.mark.slow
def test_every_view_fits_every_line_panel(themed, window, qtbot):
    wait_running(qtbot, window)
    wait_parts(qtbot, window, 3)
    # The longest words the header shows, so a later status cannot push the layout wider.
    window.camera_light.set_state("warn", "CONNECTING", "")
    window.plc_light.set_state("warn", "CONNECTING", "")
    window.model_light.set_caption("Model · v20261206-153000-retrain")
    from inspector.station.plant_links import LinkState

    # Every plant link at its widest words (the status bar's labels, issue #15).
    window.links.set_states([LinkState("MQTT", "fault", "down · 100000 waiting", ""),
                             LinkState("OPC UA", "ok", "listening", ""),
                             LinkState("Database", "warn", "connecting · 100000 waiting", "")])
    window.notify("changeover to a line with a rather long name: loading and fitting the model ... " * 3)
    failures: dict[str, list[str]] = {}
    for unlocked in (False, True):
        if unlocked:
            login(window)
            qtbot.waitUntil(lambda: window.session.active, timeout=5_000)
            prompts = window.engineer.prompts  # with its preview texts, the widest state of the prompts tab
            window.engineer.tabs.setCurrentWidget(prompts)
            qtbot.waitUntil(lambda p=prompts: p.preview is not None and p._worker is None, timeout=60_000)
        for size in PANELS:
            window.resize(*size)
            for screen in _screens(window):
                qtbot.wait(30)  # layouts settle in the event loop
                got = window.size().toTuple()
                key = f"{size[0]}x{size[1]} {screen}"
                if got != size:
                    failures[key] = [f"the window cannot shrink to {size}: it stays {got} "
                                     f"(minimum {window.minimumSizeHint().toTuple()})"]
                    continue
                problems = layout_problems(window)
                if problems:
                    failures[key] = problems[:6]
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())


def test_model_versions_table_never_scrolls_sideways(themed, idle_window, qtbot):
    """Issue #17: the model versions on the Retrain tab fit half a 1280 / 1366 px panel: no sideways scroll bar,
    no column cut below its content; a gate refusal is the version's colour and tooltip, not a wider cell."""
    from inspector.training.registry import ModelRegistry
    from tests.training.conftest import tiny_adapter

    window = idle_window
    handle = window.handle
    registry = ModelRegistry(handle.registry_dir, handle.line)
    for k in range(12):
        passed = k % 3 != 1
        gate = {"passed": passed, "compared_to": "base", "reasons": [] if passed else [
            "escape_rate 0.375 (3 of 8 defects passed as OK at its operating threshold) is above the line limit "
            "training.gate.max_escape = 0.2 (auroc 0.688)"]}
        new = {"auroc": 0.6875 + k / 100, "threshold": 1.58342 + k, "false_reject_rate": 0.375, "escape_rate": 0.125,
               "n_good": 8, "n_defect": 8, "tp": 7, "fp": 3, "tn": 5, "fn": 1}
        registry.register(tiny_adapter(), {"gate": gate, "new": new, "deployment": {"threshold": 1.5}},
                          {"backbone": {"key": "tiny|random"}, "heads": ["patch"]})
    login(window)
    qtbot.waitUntil(lambda: window.session.active, timeout=5_000)
    window.show_screen(1)
    panel = window.engineer.retrain
    window.engineer.tabs.setCurrentWidget(panel)
    panel.refresh()
    table = panel.versions
    assert table.rowCount() == 13
    refused = table.item([r.version for r in panel.rows].index("v11"), 0)
    assert refused.text() == "⚠ v11" and "gate refused: escape_rate 0.375" in refused.toolTip()
    for size in ((1280, 800), (1366, 768)):
        window.resize(*size)
        qtbot.wait(50)
        assert window.size().toTuple() == size
        bar = table.horizontalScrollBar()
        assert bar.maximum() == 0 and not bar.isVisible(), f"{size}: the versions table scrolls sideways"
        widths = [table.columnWidth(c) for c in range(table.columnCount())]
        assert sum(widths) <= table.viewport().width()
        cut = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())
               if widths[c] < table.sizeHintForColumn(c) or widths[c] < table.horizontalHeader().sectionSizeHint(c)]
        assert not cut, f"{size}: columns narrower than their content: {cut}"
        assert not layout_problems(window)
