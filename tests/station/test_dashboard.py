"""The terminal dashboard renders every figure of a live loop (recorded console, no terminal needed)."""

from __future__ import annotations

import io

from rich.console import Console

from inspector.station.dashboard import UNTRAINED_BANNER, Dashboard, PlainReporter, summary_text
from inspector.station.loop import StationLoop
from tests.station.conftest import FlakySource, wait_for


def test_dashboard_shows_state_counts_faults_and_recent_parts(make_station, engines_for) -> None:
    source = FlakySource()
    station = make_station()
    loop = StationLoop(station, source=source, engines=engines_for(station))
    console = Console(record=True, width=140, file=io.StringIO())
    dashboard = Dashboard(loop, console, extras={"PLC": lambda: "connected"})
    stream = io.StringIO()
    PlainReporter(loop, stream)
    with loop:
        loop.trigger("D1").result(30)
        source.down.set()
        loop.trigger("D2").result(30)
        wait_for(lambda: len(stream.getvalue().splitlines()) == 2, what="two published parts")
        console.print(dashboard.render())
        source.down.clear()
    text = console.export_text()
    for fragment in ("test-station", "line ring", "FAULT", UNTRAINED_BANNER, "PLC connected", "parts", "yield",
                     "latency", "flaky camera: cable pulled", "D1", "D2", "reconnects"):
        assert fragment in text, fragment
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("seq=1 part=D1 ") and "fault='flaky camera: cable pulled'" in lines[1]
    closing = summary_text(loop.stats())
    assert "2 parts:" in closing and "1 FAULT" in closing and "audit log: 2 records" in closing
