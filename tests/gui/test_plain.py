"""Validation messages in plain words (issue #17 item 12), on the prompt editor as the engineer types."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gui.plain import plain_errors
from inspector.config.line import PromptSpec
from tests.gui.conftest import login


def test_pydantic_wording_becomes_what_to_do() -> None:
    with pytest.raises(ValidationError) as info:
        PromptSpec.model_validate({"normal_states": [], "defects": {"dent": " "}, "temperature": -1})
    assert plain_errors(info.value) == ["Normal states: add at least one",
                                        "Defect classes: defect 'dent' needs a description",
                                        "Temperature: must be above 0"]


def test_prompt_editor_shows_plain_messages(idle_window, qtbot) -> None:
    win = idle_window
    login(win)
    panel = win.engineer.prompts
    win.engineer.tabs.setCurrentWidget(panel)
    panel.refresh()
    panel.normal_states.setPlainText("")
    assert panel._validated() is None
    assert panel.error.text() == "Normal states: add at least one"
    panel.normal_states.setPlainText("flawless")
    panel.object_name.setText("")
    assert panel._validated() is None
    lines = panel.error.text().splitlines()
    assert lines[0] == "Object name: must not be blank"
    assert lines[1] == "Normal states: 'flawless' must contain exactly one '{}' placeholder for the object/state"
    assert "validation error" not in panel.error.text() and "List should" not in panel.error.text()
