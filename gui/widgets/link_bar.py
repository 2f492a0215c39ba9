"""The plant links in the status bar: one short label per configured link ("● MQTT connected").

Fed with :class:`inspector.station.plant_links.LinkState` values (the handle's ``link_states()``); the dot has
the status lights' colours (green ok, amber connecting, red down or failed, grey stopped), the whole story
(where, why, how many messages wait and where) is in the tooltip. Hidden when the station has no plant link.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from gui import theme
from inspector.station.plant_links import LinkState


class LinkBar(QWidget):
    """``set_states([LinkState, ...])``: a label per link, created on first sight, updated in place."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._row = QHBoxLayout(self)
        self._row.setContentsMargins(0, 0, 0, 0)
        self._row.setSpacing(18)
        self.labels: dict[str, QLabel] = {}
        self.states: dict[str, LinkState] = {}
        self.setVisible(False)

    def set_states(self, states: Sequence[LinkState]) -> None:
        for state in states:
            label = self.labels.get(state.name)
            if label is None:
                label = QLabel()
                label.setObjectName(f"link-{state.name.lower().replace(' ', '')}")
                self._row.addWidget(label)
                self.labels[state.name] = label
            if self.states.get(state.name) == state:
                continue
            self.states[state.name] = state
            colour = theme.LIGHT_COLOURS.get(state.level, theme.IDLE)
            word = theme.TEXT if state.level in ("ok", "off") else colour
            label.setText(f"<span style='color:{colour}'>●</span> <span style='color:{theme.MUTED}'>"
                          f"{escape(state.name)}</span> <b style='color:{word}'>{escape(state.text)}</b>")
            label.setToolTip(state.detail)
        self.setVisible(bool(self.labels))

    def text(self, name: str) -> str:
        """What the label of link ``name`` says, as plain words ("MQTT down · 3 waiting"); "" when absent."""
        state = self.states.get(name)
        return f"{state.name} {state.text}" if state is not None else ""
