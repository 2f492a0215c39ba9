"""`inspector run` as a child process, watched line by line: acceptance scripts, benchmarks and tests.

With ``--plain`` the station prints one line per part once the part is *published* (answered and, with
logging on, written and flushed to the audit log), so what such a process printed is what the log must
hold after any crash.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

PART_LINE = re.compile(r"^seq=(\d+) part=(\S+) (OK|NG) ")


class StationProcess:
    """``inspector run --config CONFIG --headless --plain EXTRA...``; its published parts and stderr as they come.

    ``published`` maps seq -> (part id, verdict); ``first_part_at`` is the ``time.monotonic()`` of the first.
    A watchdog kills the process after ``max_life_s`` so a hung station cannot hang its caller.
    """

    def __init__(self, config: Path, *extra: str, cwd: Path | None = None, max_life_s: float = 600) -> None:
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(
            p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)}
        cmd = [sys.executable, "-c", "import sys; from inspector.cli import main; sys.exit(main())",
               "run", "--config", str(config), "--headless", "--plain", *extra]
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=cwd or root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.published: dict[int, tuple[str, str]] = {}
        self.first_part_at: float | None = None
        self.err: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        self._pumps = [threading.Thread(target=self._pump, args=(self.proc.stdout, True), daemon=True),
                       threading.Thread(target=self._pump, args=(self.proc.stderr, False), daemon=True)]
        for t in self._pumps:
            t.start()
        self._watchdog = threading.Timer(max_life_s, self.proc.kill)
        self._watchdog.daemon = True
        self._watchdog.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr_text(self) -> str:
        return "".join(self.err)

    def said(self, text: str) -> bool:
        """True once a stderr line contained ``text``."""
        return any(text in line for line in self.err)

    def _pump(self, stream: IO[str], is_out: bool) -> None:
        for line in stream:
            if is_out:
                m = PART_LINE.match(line)
                if m:
                    self.first_part_at = self.first_part_at or time.monotonic()
                    self.published[int(m.group(1))] = (m.group(2), m.group(3))
            else:
                self.err.append(line)
            self._lines.put(line)

    def wait(self, predicate: Callable[[], bool], timeout: float = 240, what: str = "condition") -> None:
        """Block until ``predicate()``; AssertionError (with the station's stderr) on exit or timeout."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None and self._lines.empty() and not any(t.is_alive() for t in self._pumps):
                msg = f"station exited {self.proc.returncode} before {what}: {self.stderr_text[-2000:]}"
                raise AssertionError(msg)
            try:
                self._lines.get(timeout=max(0.01, min(0.2, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() > deadline:
                    msg = f"no {what} within {timeout:g} s; stderr: {self.stderr_text[-2000:]}"
                    raise AssertionError(msg) from None

    def finish(self, sig: signal.Signals | None = None, timeout: float = 120) -> int:
        """Send ``sig`` (none: let it end by itself), wait, and return the exit code."""
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        for t in self._pumps:
            t.join(timeout=10)
        self._watchdog.cancel()
        return code

    def kill(self) -> None:
        """Make sure it is gone (cleanup paths)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish()


def kill_all(processes: Sequence[StationProcess | None]) -> None:
    for p in processes:
        if p is not None:
            p.kill()
