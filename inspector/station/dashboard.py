"""Terminal views of a running station: a live rich dashboard, and plain lines for logs and pipes.

Both are observers: they see a part once it is published (in the audit log), and they only
read :meth:`StationLoop.stats` snapshots, never the engine.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from inspector.plc.port import StationState
from inspector.station.loop import StationLoop
from inspector.station.results import StationResult
from inspector.station.stats import LoopStats

UNTRAINED_BANNER = "untrained backbone: shows the station, not its accuracy"
_STATE_STYLE = {StationState.READY: "bold green", StationState.BUSY: "bold yellow", StationState.FAULT: "bold red"}


@dataclass(frozen=True)
class _Row:
    seq: int
    clock: str
    part_id: str
    verdict: str
    score: float
    defect: str
    fault: str
    total_ms: float


def _row(sr: StationResult) -> _Row:
    v = sr.verdict
    return _Row(sr.seq, time.strftime("%H:%M:%S", time.localtime(sr.time_ns / 1e9)), sr.part_id, v.verdict, v.score,
                v.defect or "", v.fault or "", sr.timings_ms.get("total", float("nan")))


def _fmt_ms(values: dict[str, float]) -> str:
    if not values:
        return "-"
    return " / ".join(f"{values[k]:.0f}" for k in ("p50", "p95", "max") if k in values) + " ms"


class Dashboard:
    """Live rich view: state, counts, yield, rates, latency, drops, faults and the last parts."""

    def __init__(self, loop: StationLoop, console: Console | None = None, recent: int = 12,
                 extras: dict[str, Callable[[], str]] | None = None) -> None:
        self.loop = loop
        self.console = console or Console()
        self.extras = extras or {}  # more status lines, e.g. {"PLC": lambda: link.state}
        self._recent: deque[_Row] = deque(maxlen=recent)
        self._lock = threading.Lock()
        loop.add_observer(self._on_result, name="dashboard", queue_size=64)

    def _on_result(self, sr: StationResult) -> None:
        with self._lock:
            self._recent.append(_row(sr))

    def render(self, stats: LoopStats | None = None) -> RenderableType:
        s = stats or self.loop.stats()
        head = Text()
        head.append(f"{s.station}", style="bold")
        head.append(f"  line {s.line}  ")
        head.append(s.state.value, style=_STATE_STYLE[s.state])
        if s.detail:
            head.append(f"  {s.detail}", style=_STATE_STYLE[s.state] if s.state is not StationState.READY else "")
        head.append(f"\nmodel {s.model} ({s.model_version})   trigger {s.trigger_mode}   camera {s.camera.label}")
        if s.untrained:
            head.append(f"\n{UNTRAINED_BANNER}", style="bold yellow")
        head.append(f"\nlog {s.log.path if s.log.enabled else 'off'}", style="dim")
        for label, fn in self.extras.items():
            try:
                head.append(f"\n{label} {fn()}")
            except Exception as exc:
                head.append(f"\n{label} unavailable ({exc})", style="red")

        figures = Table.grid(padding=(0, 2))
        for _ in range(4):
            figures.add_column(justify="right", style="dim")
            figures.add_column(justify="left")
        yield_txt = f"{s.yield_pct:.1f} %" if s.yield_pct is not None else "-"
        figures.add_row("parts", str(s.parts), "OK", f"[green]{s.ok}", "NG", f"[red]{s.ng}", "FAULT",
                        f"[bold red]{s.faults}" if s.faults else "0")
        figures.add_row("yield", yield_txt, "rate", f"{s.rate_fps:.2f} parts/s", "latency", _fmt_ms(s.latency_ms),
                        "uptime", f"{s.uptime_s:.0f} s")
        log_txt = f"{s.log.published} logged, {s.log.write_ms_p50:.1f} ms/record" if s.log.enabled else "off"
        if s.log.failed:
            log_txt = f"[bold red]FAILING: {s.log.failed}"
        cam = s.camera
        cam_txt = "connected" if cam.connected else f"[bold red]down ({cam.last_error})"
        figures.add_row("camera", cam_txt, "bad frames", str(cam.bad_frames), "reconnects", str(cam.reconnects),
                        "log", log_txt)
        drops = ", ".join(f"{k}: {v}" for k, v in s.drops.items()) or "none"
        rejected = ", ".join(f"{k}: {v}" for k, v in s.rejected.items()) or "none"
        figures.add_row("drops", f"[yellow]{drops}" if s.drops else drops, "rejected", rejected, "", "", "", "")
        stages = Text("stage ms  ", style="dim")
        stages.append("  ".join(f"{k} {v:.1f}" for k, v in s.stage_ms.items()) or "-")

        recent = Table(expand=True, show_edge=False, pad_edge=False)
        for col, justify in (("seq", "right"), ("time", "left"), ("part", "left"), ("verdict", "left"),
                             ("score", "right"), ("defect / fault", "left"), ("ms", "right")):
            recent.add_column(col, justify=justify)  # type: ignore[arg-type]
        with self._lock:
            rows = list(self._recent)
        for r in reversed(rows):
            colour = "green" if r.verdict == "OK" else "red"
            label = f"FAULT: {r.fault}" if r.fault else r.defect
            recent.add_row(str(r.seq), r.clock, r.part_id, f"[{colour}]{r.verdict}",
                           "-" if r.score != r.score else f"{r.score:.3f}", label, f"{r.total_ms:.0f}")
        border = {"READY": "green", "BUSY": "yellow", "FAULT": "red"}[s.state.value]
        return Panel(Group(head, Text(""), figures, stages, Text(""), recent), title="inspection station",
                     border_style=border)

    def run(self, until: Callable[[], bool], refresh_hz: float = 4.0) -> None:
        """Redraw until ``until()`` is true (Ctrl-C propagates to the caller)."""
        from rich.live import Live

        with Live(self.render(), console=self.console, refresh_per_second=refresh_hz, transient=False) as live:
            while not until():
                time.sleep(1.0 / refresh_hz)
                live.update(self.render())
            live.update(self.render())


class PlainReporter:
    """One line per published part (for pipes, service logs and scripts)."""

    def __init__(self, loop: StationLoop, stream: TextIO) -> None:
        self.stream = stream
        loop.add_observer(self._on_result, name="plain", queue_size=1024, policy="block")

    def _on_result(self, sr: StationResult) -> None:
        r = _row(sr)
        score = "nan" if r.score != r.score else f"{r.score:.4f}"
        extra = f" fault={r.fault!r}" if r.fault else (f" defect={r.defect}" if r.defect else "")
        self.stream.write(f"seq={r.seq} part={r.part_id} {r.verdict} score={score}{extra} ms={r.total_ms:.0f}\n")
        self.stream.flush()

    def run(self, until: Callable[[], bool], poll_s: float = 0.2) -> None:
        while not until():
            time.sleep(poll_s)


def summary_text(s: LoopStats) -> str:
    """A few closing lines for the terminal."""
    yield_txt = f"{s.yield_pct:.1f} %" if s.yield_pct is not None else "-"
    lines = [f"{s.parts} parts: {s.ok} OK, {s.ng} NG, {s.faults} FAULT (yield {yield_txt}), "
             f"latency {_fmt_ms(s.latency_ms)}"]
    if s.drops:
        lines.append("drops: " + ", ".join(f"{k}: {v}" for k, v in s.drops.items()))
    if s.log.enabled:
        where = ", ".join(s.log.files) or s.log.path
        lines.append(f"audit log: {s.log.published} records in {where}"
                     + (f"  [FAILED: {s.log.failed}]" if s.log.failed else ""))
    if s.untrained:
        lines.append(f"note: {UNTRAINED_BANNER}")
    return "\n".join(lines)
