"""Operator screen on a real station whose line runs the mutual head: its warm-up, then "on"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.gui.conftest import make_window, wait_running
from tests.station.conftest import write_handle_station


def _mutual_station(tmp_path: Path, fitted_cache: Path) -> Path:
    path = write_handle_station(tmp_path, fitted_cache)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    line = config["lines"][0]
    line["heads"]["mutual"] = 1.0
    line["mutual"] = {"buffer": 20, "min_parts": 12, "tokens_per_part": 8}
    line["decision"] = {"threshold": 1e6}  # every part OK: the buffer fills at the camera's pace
    config["camera"]["synthetic"]["defect_rate"] = 0.0
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.slow
def test_the_mutual_warm_up_is_shown_then_the_head_on(qtbot, tmp_path: Path, fitted_cache: Path, pins) -> None:
    window = make_window(qtbot, _mutual_station(tmp_path, fitted_cache), pins)
    try:
        note = window.operator.mutual_note
        wait_running(qtbot, window)
        qtbot.waitUntil(lambda: note.isVisible() and note.text().startswith("Mutual head warming up"), timeout=30_000)
        warming = re.fullmatch(r"Mutual head warming up: (\d+)/12 OK parts buffered", note.text())
        assert warming is not None and int(warming.group(1)) < 12
        qtbot.waitUntil(lambda: note.text().startswith("Mutual head on"), timeout=60_000)
        assert re.fullmatch(r"Mutual head on: (1[2-9]|20)/20 OK parts buffered", note.text())
        assert window.handle.stats().mutual.startswith("mutual head on")  # the core's figure, as shown
        window.operator.set_mutual("")  # a line without the head, or a stopped station: nothing shown
        assert not note.isVisible()
    finally:
        window.shutdown()
