"""What every engineer panel needs: the station, the logged-in engineer, the current frame, a notifier."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gui.session import EngineerSession
from gui.workers import DisplayItem
from inspector.station.handle import StationHandle
from inspector.tuning.samples import SampleStore


@dataclass
class EngineerContext:
    handle: StationHandle
    session: EngineerSession
    current_frame: Callable[[], DisplayItem | None]
    notify: Callable[[str, str], None]

    @property
    def who(self) -> str:
        return self.session.who or "engineer"

    def sample_folder(self) -> Path:
        """The current line's few-shot folder (``fewshot/<line>`` next to the config when none is set)."""
        line = self.handle.line_config()
        config = self.handle.config
        folder = line.fewshot.folder if line.fewshot.folder is not None else Path("fewshot") / line.name
        return config.resolve(folder)

    def samples(self) -> SampleStore:
        return SampleStore(self.sample_folder())
