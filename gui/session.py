"""Who is logged in as engineer; PIN checks, lockouts and logins go to the audit log."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer, Signal

from gui.pin import PinCheck, PinStore
from inspector.station.handle import StationHandle

_logger = logging.getLogger(__name__)


class EngineerSession(QObject):
    """Engineer login state; logs out by itself after ``idle_s`` without engineer activity."""

    changed = Signal(str)  # the engineer's name, "" when logged out

    def __init__(self, store: PinStore, handle: StationHandle, idle_s: float = 600.0,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.handle = handle
        self.who = ""
        self.last_name = ""
        self._idle = QTimer(self)
        self._idle.setSingleShot(True)
        self._idle.setInterval(int(idle_s * 1000))
        self._idle.timeout.connect(lambda: self.logout("idle timeout"))

    @property
    def active(self) -> bool:
        return bool(self.who)

    def check(self, name: str, pin: str) -> PinCheck:
        """One login attempt (the LoginDialog's callback); logs failures, lockouts and logins."""
        self.last_name = name
        result = self.store.verify(pin)
        if result.ok:
            self.who = name
            self._log("engineer_login", name, f"{name} entered engineer mode")
            self._idle.start()
            self.changed.emit(name)
        elif result.just_locked:
            self._log("pin_lockout", name, f"engineer mode locked for {self.store.lockout_s:.0f} s after "
                                           f"{self.store.max_failures} wrong PINs")
        elif result.locked:
            self._log("pin_refused", name, f"PIN attempt while locked ({result.locked_for_s:.0f} s left)")
        else:
            self._log("pin_failed", name, f"wrong engineer PIN ({result.attempts_left} attempt(s) left)")
        return result

    def pin_set(self, who: str) -> None:
        self._log("pin_set", who, f"engineer PIN set by {who} (scrypt hash in {self.store.path.name})")

    def touch(self) -> None:
        """Engineer activity: restart the idle timer."""
        if self.who:
            self._idle.start()

    def logout(self, reason: str = "logged out") -> None:
        if not self.who:
            return
        who, self.who = self.who, ""
        self._idle.stop()
        self._log("engineer_logout", who, f"{who} left engineer mode ({reason})")
        self.changed.emit("")

    def _log(self, kind: str, who: str, what: str) -> None:
        try:
            self.handle.log_event(kind, who, what)
        except Exception:  # a log problem must not lock the engineer out; the station shows log faults
            _logger.exception("could not log %s", kind)
