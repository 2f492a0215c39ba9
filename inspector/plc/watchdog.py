"""PLC-silence watchdog: notices when the PLC stops talking (cable pulled at its end, PLC in STOP)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

_logger = logging.getLogger(__name__)


class SilenceWatchdog:
    """Calls ``on_change(True)`` once the PLC was silent for ``silence_s``, ``on_change(False)`` when it speaks.

    ``touch()`` is called for every byte / request received and is cheap (one clock read, one attribute).
    ``silence_s <= 0`` disables the watchdog (it then never reports silence).
    """

    def __init__(self, silence_s: float, on_change: Callable[[bool], None], name: str = "plc") -> None:
        self.silence_s = silence_s
        self._on_change = on_change
        self._name = name
        self._last = time.monotonic()
        self._silent = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def silent(self) -> bool:
        return self._silent

    def touch(self) -> None:
        self._last = time.monotonic()
        if self._silent:
            with self._lock:
                changed, self._silent = self._silent, False
            if changed:
                _logger.info("PLC is talking again")
                self._notify(False)

    def reset(self) -> None:
        """Restart the silence clock (after the port was (re)opened) without reporting anything."""
        self._last = time.monotonic()

    def start(self) -> None:
        if self.silence_s <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self.reset()
        self._thread = threading.Thread(target=self._run, name=f"{self._name}-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            quiet = time.monotonic() - self._last
            if quiet >= self.silence_s and not self._silent:
                with self._lock:
                    self._silent = True
                _logger.warning("PLC silent for %.1f s", quiet)
                self._notify(True)
            wait = self.silence_s - quiet if quiet < self.silence_s else min(self.silence_s, 1.0)
            self._stop.wait(max(wait, 0.01))

    def _notify(self, silent: bool) -> None:
        try:
            self._on_change(silent)
        except Exception:
            _logger.exception("PLC-silence callback failed")
