"""Fixtures for the PLC tests: real pseudo-terminals, a simulated station, leak checks."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inspector.config.plc import PlcSpec
from inspector.plc import protocol as proto
from inspector.plc.ascii_server import AsciiServer
from inspector.plc.base import LinkState
from inspector.plc.ptypair import PtyPort, VirtualNullModem
from inspector.plc.simstation import SimulatedStation

_OUR_THREADS = ("plc", "sim-station", "null-modem")


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Every test must stop what it started: no PLC, station or relay thread may outlive it."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 3
    while True:
        leaked = [t for t in threading.enumerate()
                  if t not in before and t.is_alive() and t.name.startswith(_OUR_THREADS)]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short folder for pty symlinks (tmp_path names are long and unreadable in failure messages)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="plc-") as tmp:
        yield Path(tmp)


@pytest.fixture
def station() -> Iterator[SimulatedStation]:
    with SimulatedStation(lines=("ring", "gear"), latency_s=0.001, queue_size=16) as sim:
        yield sim


@pytest.fixture
def pty(short_dir: Path) -> Iterator[PtyPort]:
    port = PtyPort(short_dir / "station").open()
    yield port
    port.close()


@pytest.fixture
def modem(short_dir: Path) -> Iterator[VirtualNullModem]:
    with VirtualNullModem(short_dir / "station", short_dir / "plc") as pair:
        yield pair


class PlcEnd:
    """The PLC's end of a pty: raw writes and line reads on the master fd, with timeouts."""

    def __init__(self, port: PtyPort) -> None:
        self.port = port
        self._buf = b""

    def send(self, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        os.write(self.port.master, raw)

    def line(self, timeout: float = 10.0) -> bytes:
        """Next line without its CR LF; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.port.master], [], [], max(0.0, left))
            if not ready:
                msg = f"no line from the station within {timeout} s (buffer {self._buf!r})"
                raise AssertionError(msg)
            self._buf += os.read(self.port.master, 4096)
        line, _, self._buf = self._buf.partition(b"\n")
        assert line.endswith(b"\r"), f"line not CR LF terminated: {line!r}"
        return line[:-1]

    def lines(self, count: int, timeout: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        return [self.line(max(0.01, deadline - time.monotonic())) for _ in range(count)]

    def ask(self, data: bytes | str, timeout: float = 10.0) -> bytes:
        """Send one line (CR LF added if missing) and return the next line received."""
        raw = data.encode() if isinstance(data, str) else data
        self.send(raw if raw.endswith(b"\n") else raw + b"\r\n")
        return self.line(timeout)

    def quiet(self, seconds: float = 0.05) -> bool:
        """True if nothing (not even a partial line) arrives within ``seconds``."""
        if self._buf:
            return False
        ready, _, _ = select.select([self.port.master], [], [], seconds)
        return not ready


@pytest.fixture
def plc(pty: PtyPort) -> PlcEnd:
    return PlcEnd(pty)


def fast_spec(port: str | Path, **overrides: object) -> PlcSpec:
    """Spec tuned for tests: quick reconnects, watchdog off unless asked for."""
    values: dict = {"port": str(port), "reconnect_min_s": 0.02, "reconnect_max_s": 0.2, "plc_silence_s": 0,
                    "result_timeout_ms": 2000}
    values.update(overrides)
    return PlcSpec(**values)


@pytest.fixture
def ascii_server(pty: PtyPort, station: SimulatedStation) -> Iterator[Callable[..., AsciiServer]]:
    """Factory: an AsciiServer on the pty for ``station``, started and connected; stopped at teardown."""
    servers: list[AsciiServer] = []

    def make(**overrides: object) -> AsciiServer:
        server = AsciiServer(fast_spec(pty.path, **overrides), station)
        servers.append(server)
        server.start()
        assert server.wait_for_state(LinkState.CONNECTED, timeout=5), server.detail
        return server

    yield make
    for server in servers:
        server.stop()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.005) -> bool:
    """Poll ``predicate`` until it holds (for counters that have no event of their own)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def feed_in_chunks(data: bytes, cuts: list[int],
                   splitter: proto.LineSplitter | None = None) -> list[bytes | proto.Overlong]:
    """What one LineSplitter yields for ``data`` read in pieces of the given sizes (then the rest)."""
    splitter = splitter or proto.LineSplitter()
    items: list[bytes | proto.Overlong] = []
    pos = 0
    for cut in [*cuts, len(data)]:
        items += splitter.feed(data[pos:pos + cut])
        pos += cut
    return items
