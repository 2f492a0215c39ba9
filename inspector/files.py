"""File helpers shared by the core: atomic replacement of small files, one advisory folder lock, file digests."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock
    fcntl = None  # type: ignore[assignment]

_logger = logging.getLogger(__name__)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)  # (POSIX: a child process such as a camera helper never inherits a lock)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see either the old or the new content, never a half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if hasattr(os, "fchmod"):  # mkstemp creates 0600: keep the file's mode (a service may read it)
                os.fchmod(fh.fileno(), _mode_of(path))
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _mode_of(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class FolderLock:
    """Exclusive advisory lock on ``folder/name`` (POSIX ``flock``); the holder writes its pid and host into it.

    The kernel releases the lock when the descriptor closes, however the process ends. Where there is
    no ``flock`` (Windows) :meth:`try_acquire` succeeds with a warning (no protection against a second
    process) and :meth:`acquire` refuses. Creating the lock file raises OSError.
    """

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _CLOEXEC, 0o644)
        self.held = False

    def holder(self) -> str:
        """What the current holder wrote (``pid 123 on host``), or "another process"."""
        with contextlib.suppress(OSError, AttributeError):  # (no pread on Windows)
            text = os.pread(self._fd, 200, 0).decode(errors="replace").strip()
            if text:
                return text
        return "another process"

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False when another process holds it."""
        if fcntl is None:  # pragma: no cover - Windows
            _logger.warning("no file locking on this platform: run one station per log folder")
            self.held = True
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self._claim()
        return True

    def claim(self, refusal: Callable[[str], Exception]) -> FolderLock:
        """Take the lock now, or release the descriptor and raise ``refusal(holder)`` naming who has it."""
        if not self.try_acquire():
            holder = self.holder()
            self.release()
            raise refusal(holder)
        return self

    def acquire(self) -> None:
        """Block until this process holds the lock (Ctrl-C / SIGTERM interrupt the wait)."""
        if fcntl is None:  # pragma: no cover - Windows
            raise OSError(errno.ENOLCK, "waiting for a lock needs POSIX file locks (flock)", str(self.path))
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._claim()

    def release(self) -> None:
        """Give the lock up (closing the descriptor releases it; so does the process ending)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.held = False

    def _claim(self) -> None:
        self.held = True
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read now (integrity checks: never from a memo)."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
