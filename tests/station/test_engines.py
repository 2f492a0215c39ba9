"""The engine cache: start-up steps a GUI can show (issue #16 item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.config import load_station_config
from inspector.station.engines import EngineCache, StartupProgress
from tests.station.conftest import write_handle_station


@pytest.fixture
def station_config(tmp_path: Path, text_cache_dir: Path) -> Path:
    return write_handle_station(tmp_path, text_cache_dir)


def test_startup_progress_snapshot() -> None:
    progress = StartupProgress()
    assert progress.snapshot() is None
    progress.begin(2, "preparing the engine")
    index, steps, what, seconds = progress.snapshot()
    assert (index, steps, what) == (2, StartupProgress.STEPS, "preparing the engine") and 0 <= seconds < 5
    progress.done()
    assert progress.snapshot() is None


def test_building_a_line_walks_the_steps_in_order(station_config: Path) -> None:
    config = load_station_config(station_config)
    cache = EngineCache(config)
    seen: list[tuple[int, str, tuple | None]] = []
    begin = cache.progress.begin

    def spy(index: int, what: str) -> None:
        begin(index, what)
        seen.append((index, what, cache.progress.snapshot()))

    cache.progress.begin = spy  # type: ignore[method-assign]
    line = config.lines[0].name
    cache.get(line)
    assert [i for i, _, _ in seen] == [1, 2, 3]
    assert "loading the backbone" in seen[0][1] and "fitting the few-shot samples" in seen[2][1]
    assert all(snap is not None and snap[0] == i for i, _, snap in seen)
    assert cache.progress.snapshot() is None  # built: nothing in progress
    seen.clear()
    cache.get(line)  # cached: no steps
    assert seen == []
    with pytest.raises(Exception, match="unknown line"):
        cache.get("no-such-line")
    assert cache.progress.snapshot() is None
