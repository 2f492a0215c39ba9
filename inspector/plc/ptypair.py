"""Virtual serial ports on POSIX pseudo-terminals, for tests, demos and benchmarks without hardware.

:class:`VirtualNullModem` is a Python ``socat pty,link=A,raw,echo=0 pty,link=B,raw,echo=0``: two
pseudo-terminals whose masters are bridged, reachable as stable paths (symlinks). ``unplug()`` closes
the terminals and removes the paths, as pulling a USB adapter does; ``replug()`` brings new ones back
under the same paths.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import tty
from pathlib import Path
from types import TracebackType
from typing import Self

_logger = logging.getLogger(__name__)


class PtyPort:
    """One pseudo-terminal: the slave is reachable at ``path`` (a symlink); the master fd is the far end."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.master = -1
        self._slave = -1

    def open(self) -> Self:
        master, slave = os.openpty()
        tty.setraw(slave)  # raw and no echo before anyone opens it (termios belongs to the terminal)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.path)
        self.master, self._slave = master, slave  # keeping a slave fd open: no hangup when the user closes
        return self

    def close(self) -> None:
        """Remove the path and close the terminal: whoever has it open gets an I/O error."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        for fd in (self.master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self._slave = -1

    @property
    def is_open(self) -> bool:
        return self.master >= 0

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class VirtualNullModem:
    """Two linked pseudo-terminals at ``path_a`` and ``path_b``; bytes written to one are read from the other."""

    def __init__(self, path_a: str | os.PathLike[str], path_b: str | os.PathLike[str]) -> None:
        self.a = PtyPort(path_a)
        self.b = PtyPort(path_b)
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1

    @property
    def paths(self) -> tuple[str, str]:
        return str(self.a.path), str(self.b.path)

    def start(self) -> Self:
        self.a.open()
        self.b.open()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._relay, args=(self.a.master, self.b.master, self._wake_r),
                                        name="null-modem", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(timeout=5)
            self._thread = None
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            self._wake_r = self._wake_w = -1
        self.a.close()
        self.b.close()

    def unplug(self) -> None:
        """Both ports vanish (paths removed, open handles get I/O errors)."""
        self.stop()

    def replug(self) -> None:
        """New terminals appear under the same paths."""
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @staticmethod
    def _relay(fd_a: int, fd_b: int, wake: int) -> None:
        peer = {fd_a: fd_b, fd_b: fd_a}
        while True:
            try:
                ready, _, _ = select.select([fd_a, fd_b, wake], [], [])
            except (OSError, ValueError):
                return
            if wake in ready:
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue  # EIO while nobody has that end open: nothing to forward
                if data:
                    _write_all(peer[fd], data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], 0.1)
            continue
        except OSError:
            return
        view = view[written:]
