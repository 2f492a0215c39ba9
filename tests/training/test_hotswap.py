"""Hot swap in a running loop: one thread inspects continuously while another promotes and rolls back."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from inspector.engine import Inspector
from inspector.training.deploy import DeploymentWatcher, apply_version
from inspector.training.errors import IncompatibleModelError
from inspector.training.registry import ModelRegistry
from tests.training.conftest import TrainedLine, fresh_parts


@pytest.fixture
def running(trained: TrainedLine, tmp_path: Path) -> tuple[Inspector, ModelRegistry]:
    station = trained.copy(tmp_path)
    registry = ModelRegistry(tmp_path / "models", "ring")
    registry.rollback(who="test")  # start on the base heads; v1 is registered
    return Inspector.from_config(station), registry


def test_every_frame_is_judged_by_one_whole_version(running: tuple[Inspector, ModelRegistry]) -> None:
    inspector, registry = running
    frames = fresh_parts(4)[0]
    results: list = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def line() -> None:
        i = 0
        while not stop.is_set():
            try:
                results.append(inspector.inspect(frames[i % len(frames)]))
            except BaseException as exc:  # the test fails on any
                errors.append(exc)
            i += 1

    worker = threading.Thread(target=line, daemon=True)
    worker.start()
    swaps = 0
    deadline = time.monotonic() + 20
    while swaps < 12 and time.monotonic() < deadline:
        apply_version(inspector, registry, "v1" if swaps % 2 == 0 else "base")
        swaps += 1
        time.sleep(0.05)
    time.sleep(0.1)
    stop.set()
    worker.join(timeout=10)
    assert not errors, errors[:3]
    assert swaps == 12 and len(results) >= swaps
    versions = {r.model_version for r in results}
    assert versions <= {"base", "v1"}
    # A frame judged with the adapter says v1; one without says base: never a mix.
    for r in results:
        assert ("adapter" in r.head_scores) == (r.model_version == "v1")
    assert versions == {"base", "v1"} or len(results) < 4


def test_watcher_follows_the_registry(running: tuple[Inspector, ModelRegistry]) -> None:
    inspector, registry = running
    swaps: list[tuple[str, str]] = []
    watcher = DeploymentWatcher(inspector, registry, interval_s=0.05, on_swap=lambda a, b: swaps.append((a, b)))
    watcher.check()
    assert inspector.model_version == "base"
    registry.promote("v1", who="test")  # as `inspector models promote` would, from another process
    with watcher:
        deadline = time.monotonic() + 10
        while inspector.model_version != "v1" and time.monotonic() < deadline:
            time.sleep(0.02)
    assert inspector.model_version == "v1" and swaps == [("base", "v1")]
    registry.rollback(who="test")
    watcher.check()
    assert inspector.model_version == "base"
    base_threshold = inspector.calibration.threshold if inspector.calibration else None
    assert inspector.threshold == pytest.approx(base_threshold)


def test_an_adapter_for_another_backbone_is_refused(running: tuple[Inspector, ModelRegistry],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    inspector, registry = running
    monkeypatch.setattr(Inspector, "model_key", property(lambda _i: "ViT-B-16|other"))
    with pytest.raises(IncompatibleModelError, match="retrain the line"):
        apply_version(inspector, registry, "v1")
    assert inspector.model_version == "base"


def test_a_running_station_follows_promotions_made_elsewhere(trained: TrainedLine, tmp_path: Path) -> None:
    """`inspector models promote | rollback` (another process) reaches a running StationLoop between frames."""
    from inspector.audit.h5log import log_files
    from inspector.audit.reader import AuditReader
    from inspector.station.loop import StationLoop
    from inspector.station.sources import SyntheticSource

    station = trained.copy(tmp_path)
    registry = ModelRegistry(tmp_path / "models", "ring")
    assert registry.deployed() == "v1"
    loop = StationLoop(station, source=SyntheticSource(), trigger_mode="software", log_dir=tmp_path / "logs")
    with loop:
        assert loop.inspector.model_version == "v1"  # the deployed version from the first part
        loop.trigger().result(timeout=60)
        registry.rollback(who="test")  # as `inspector models rollback` does, from another process
        deadline = time.monotonic() + 15
        while loop.inspector.model_version != "base" and time.monotonic() < deadline:
            time.sleep(0.05)
        loop.trigger().result(timeout=60)
        registry.promote("v1", who="test")
        deadline = time.monotonic() + 15
        while loop.inspector.model_version != "v1" and time.monotonic() < deadline:
            time.sleep(0.05)
        loop.trigger().result(timeout=60)
    (path,) = log_files(tmp_path / "logs")
    with AuditReader(path) as reader:
        swaps = [(e["old"], e["new"]) for e in reader.events() if e["kind"] == "model_swap"]
        whos = [e["who"] for e in reader.events() if e["kind"] == "model_swap"]
        versions = [r["model_version"] for r in reader.records()]
    assert swaps == [("base", "v1"), ("v1", "base"), ("base", "v1")]  # at start, then each change
    assert versions == ["v1", "base", "v1"]  # every logged result names the version that judged it
    assert whos[1:] == ["test", "test"]  # who rolled back / promoted, from the registry's history
