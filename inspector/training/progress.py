"""Progress events and cancellation of a training run (what the CLI bar and the GUI subscribe to).

A run calls its observers synchronously from the training thread; an observer must be quick
(a GUI forwards the event through a Qt signal). An observer that raises is logged and dropped
for the rest of the run: a broken progress display never stops a training.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_logger = logging.getLogger(__name__)

# load -> synthesize -> encode -> train (per head, per fold, per epoch) -> evaluate -> register -> gate -> promote
STAGES = ("load", "synthesize", "encode", "train", "evaluate", "register", "gate", "promote", "done")


@dataclass(frozen=True)
class TrainingEvent:
    """One step of a training run."""

    stage: str  # one of STAGES
    message: str
    done: int = 0  # units done in this stage (images encoded, epochs trained, ...)
    total: int = 0  # units in this stage (0 = unknown)
    head: str | None = None
    fold: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


Observer = Callable[[TrainingEvent], None]


class CancelToken:
    """Set from any thread (GUI button, Ctrl-C handler); the run stops at its next check."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class Emitter:
    """Fans events out to observers, dropping any observer that raises."""

    def __init__(self, observers: list[Observer] | None = None) -> None:
        self._observers = list(observers or [])

    def __call__(self, event: TrainingEvent) -> None:
        _logger.debug("%s: %s", event.stage, event.message)
        for observer in list(self._observers):
            try:
                observer(event)
            except Exception:
                _logger.exception("progress observer %r failed; it gets no more events of this run", observer)
                self._observers.remove(observer)
