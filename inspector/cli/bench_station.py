"""`inspector bench --station`: the backbone inside the full station against the bare backbone, in one process.

The bare figure is the line's own backbone pass (``Inspector.encode_tensor`` on one prepared frame,
on a worker thread like the station's inspect thread), timed before and after the station run; the
station figure is the ``backbone`` stage of every part the real :class:`StationLoop` inspected
(synthetic camera, audit log on, free run faster than the engine, so it runs at the engine's pace).
Their quotient is what the station's other threads (capture, rendering, log writer, sinks) cost the
backbone: 1.0 is no self-inflicted slowdown.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _p50(values: list[float]) -> float:
    return float(np.percentile(np.asarray(values), 50)) if values else float("nan")


def bare_backbone_ms(inspector: Any, frame: np.ndarray, n: int) -> list[float]:
    """``n`` timed backbone passes on one prepared frame, on a worker thread (as the station's inspect thread)."""
    import torch

    batch = inspector.prepare([frame])
    times: list[float] = []

    def work() -> None:
        with torch.inference_mode():
            inspector.encode_tensor(batch)  # warm
            for _ in range(n):
                t = time.perf_counter()
                inspector.encode_tensor(batch)
                times.append((time.perf_counter() - t) * 1000.0)

    worker = threading.Thread(target=work, name="bench-backbone")
    worker.start()
    worker.join()
    return times


def run_station_bench(config: Path, line: str | None, *, parts: int = 20, warmup: int = 2, rate_hz: float = 20.0,
                      backend: str | None = None, precision: str | None = None, bare_frames: int = 10,
                      say: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Time the bare backbone, run the station for ``warmup + parts`` parts, time the bare backbone again."""
    import torch

    from inspector.config import CameraSpec, TriggerSpec, load_station_config
    from inspector.demo.parts import PartGenerator
    from inspector.station.engines import EngineCache
    from inspector.station.loop import StationLoop

    station = load_station_config(config)
    name = line or station.default_line or station.lines[0].name
    update = {k: v for k, v in (("backend", backend), ("precision", precision)) if v is not None}
    if update:
        from inspector.config import ModelSpec

        lines = [ln.model_copy(update={"model": ModelSpec.model_validate({**ln.model.model_dump(), **update})})
                 if ln.name == name else ln for ln in station.lines]
        station = station.model_copy(update={"lines": lines})
    camera = station.camera if station.camera.kind == "synthetic" else CameraSpec(kind="synthetic")
    log_dir = Path(tempfile.mkdtemp(prefix="inspector-bench-station-"))
    station = station.model_copy(update={
        "camera": camera, "trigger": TriggerSpec(mode="free_run", rate_hz=rate_hz),
        "log": station.log.model_copy(update={"enabled": True, "folder": log_dir})})
    engines = EngineCache(station)
    say(f"loading line {name} (backbone, prompts, few-shot fit)")
    inspector = engines.get(name)
    frame = PartGenerator(size=tuple(camera.synthetic.size), seed=5).good().image

    say(f"bare backbone: {bare_frames} passes")
    bare = bare_backbone_ms(inspector, frame, bare_frames)
    stage: list[float] = []
    done_at: list[float] = []  # when each part reached the sinks

    def collect(result: Any) -> None:
        done_at.append(time.perf_counter())
        if len(done_at) > warmup and "backbone" in result.timings_ms:
            stage.append(result.timings_ms["backbone"])

    say(f"station: synthetic camera, audit log on, free run at {rate_hz:g} Hz, {warmup} + {parts} parts")
    loop = StationLoop(station, line=name, engines=engines, log=True, log_dir=log_dir, max_parts=warmup + parts)
    loop.add_sink(collect, name="bench", queue_size=4096, policy="block")
    loop.start()
    try:
        if not loop.wait_done(600 + 30 * (warmup + parts)):
            msg = "the station did not finish the bench run in time (see the station log)"
            raise RuntimeError(msg)
        stats = loop.stats()
    finally:
        loop.stop()
        shutil.rmtree(log_dir, ignore_errors=True)
    say(f"bare backbone again: {bare_frames} passes")
    bare += bare_backbone_ms(inspector, frame, bare_frames)
    b50, s50 = _p50(bare), _p50(stage)
    return {
        "mode": "station", "config": str(config), "line": name, **inspector.backend_record(),
        "model": inspector.line.model.name, "image_size": inspector.extractor.image_size[0],
        "parts": len(stage), "warmup_parts": warmup, "free_run_hz": rate_hz,
        "backbone_p50_ms": b50, "station_backbone_p50_ms": s50, "station_backbone_ratio": s50 / b50,
        # Steady state: from the last warm-up part to the last part (start-up and warm-up excluded).
        "parts_per_s": (len(done_at) - warmup) / max(done_at[-1] - done_at[warmup - 1], 1e-9)
        if warmup >= 1 and len(done_at) > warmup else float("nan"),
        "inspect_p50_ms": stats.stage_ms.get("inspect", float("nan")),
        "drops": dict(stats.drops), "faults": stats.faults,
        "torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "load_avg": list(os.getloadavg()),
    }
