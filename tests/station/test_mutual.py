"""The mutual head's buffer at the station: OK parts only, warm-up, switch-on event, restart, changeover."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from inspector.config import parse_station_config
from inspector.decision.result import InspectionResult
from inspector.demo.parts import PartGenerator
from inspector.engine import Inspector
from inspector.station.engines import EngineCache
from inspector.station.loop import StationLoop
from inspector.station.mutual import MutualBuffers
from inspector.station.results import ModelStamp, StationResult, part_verdict
from inspector.station.threshold import ThresholdBook
from inspector.text.embeddings import TextEmbeddingCache
from tests.conftest import audit_events
from tests.station.conftest import SIZE, tiny_station_dict

MUTUAL = {"heads": {"mutual": 1.0}, "mutual": {"buffer": 5, "min_parts": 3, "tokens_per_part": 8}}


def _station(tmp_path: Path, cache: Path, lines=("ring", "other")):
    data = tiny_station_dict(tmp_path, cache, lines)
    for line in data["lines"]:
        line.update(MUTUAL)
        line["decision"] = {"threshold": 1e6}  # every inspected part OK: the buffer fills
    return parse_station_config(data)


@pytest.fixture
def engines(tmp_path: Path, tiny_backbone, text_cache_dir: Path):
    station = _station(tmp_path, text_cache_dir)
    cache = EngineCache(station, fit=False)
    for name in [x.name for x in station.lines]:
        cache.put(Inspector(station.line(name), tiny_backbone, TextEmbeddingCache(text_cache_dir)))
    return station, cache


class Events(list):
    def __call__(self, kind, who, what, old="", new=""):
        self.append((kind, what))


def _part(engine: Inspector, seq: int, verdict: str = "OK", fault: bool = False) -> StationResult:
    image = PartGenerator((SIZE, SIZE), seed=3).render(seq).image
    result: InspectionResult = engine.inspect(image)
    result.verdict = verdict
    fault_text = "camera lost" if fault else None
    verdict_obj = part_verdict(f"P{seq}", seq, None if fault else result, fault_text, ())
    return StationResult(seq, f"P{seq}", 0, engine.line.name, verdict_obj, "plc", {},
                         result=None if fault else result, model=ModelStamp())


def test_ok_parts_only_warm_up_then_on_with_an_event(engines, tmp_path: Path) -> None:
    station, cache = engines
    ring = cache.get("ring")
    events = Events()
    buffers = MutualBuffers(tmp_path, station.line, lambda name: ring if name == "ring" else None, events)
    assert buffers.install(ring).text == "mutual head warming up: 0/3 OK parts buffered"
    assert "mutual" not in ring.heads
    first = _part(ring, 1)
    tokens = first.result.part_tokens[1]  # every patch token: the buffer thread takes the coreset
    assert tokens.dtype == np.float16 and tokens.shape == (ring.extractor.grid[0] * ring.extractor.grid[1], 64)
    buffers.handle(first)
    buffers.handle(_part(ring, 2, verdict="NG"))  # NG: never buffered
    buffers.handle(_part(ring, 3, fault=True))  # FAULT: never buffered
    buffers.handle(_part(ring, 4))
    assert buffers.status("ring").parts == 2 and not events and "mutual" not in ring.heads
    buffers.handle(_part(ring, 5))
    assert buffers.status("ring").active and "mutual" in ring.heads
    assert events[0] == ("mutual_on", "line ring: mutual head on with 3 OK parts")
    assert [e[0] for e in events] == ["mutual_on", "mutual_threshold_kept"]  # decision.threshold is set by hand
    assert ring.threshold == 1e6
    scored = ring.inspect(PartGenerator((SIZE, SIZE), seed=4).good().image)
    assert "mutual" in scored.head_scores and "mutual" in scored.timings_ms
    for seq in range(6, 12):
        buffers.handle(_part(ring, seq))
    assert buffers.status("ring").parts == 5  # bounded: the last `buffer` OK parts
    assert ring.mutual.n_parts == 5 and len(events) == 2


def test_restart_and_changeover_keep_each_lines_buffer(engines, tmp_path: Path) -> None:
    station, cache = engines
    ring, other = cache.get("ring"), cache.get("other")
    current = {"engine": ring}
    buffers = MutualBuffers(tmp_path, station.line, lambda n: current["engine"] if current["engine"].line.name == n
                            else None, Events())
    buffers.install(ring)
    for seq in range(1, 5):
        buffers.handle(_part(ring, seq))
    current["engine"] = other  # changeover: the other line starts cold, ring's buffer stays
    assert buffers.install(other).parts == 0
    buffers.handle(_part(other, 20))
    assert buffers.status("ring").parts == 4 and buffers.status("other").parts == 1
    buffers.close()  # stop: saved
    restarted = MutualBuffers(tmp_path, station.line, lambda n: None, Events())
    assert restarted.install(ring).parts == 4 and "mutual" in ring.heads
    assert restarted.install(other).parts == 1
    saved = load_file(str(tmp_path / ".mutual-ring.safetensors"))
    assert len(saved) == 4 * 2 and all(v.dtype == np.float16 and v.shape == (8, 64) for v in saved.values())
    (tmp_path / ".mutual-other.safetensors").write_bytes(b"garbage")  # damaged: a warm-up, never a failed start
    assert MutualBuffers(tmp_path, station.line, lambda n: None, Events()).install(other).parts == 0


@pytest.mark.slow
def test_station_runs_a_mutual_line_across_a_restart(tmp_path: Path, tiny_backbone, text_cache_dir: Path) -> None:
    station = _station(tmp_path, text_cache_dir, lines=("ring",))

    def engines() -> EngineCache:
        cache = EngineCache(station, fit=False)
        cache.put(Inspector(station.line("ring"), tiny_backbone, TextEmbeddingCache(text_cache_dir)))
        return cache

    with StationLoop(station, engines=engines()) as loop:
        assert "warming up: 0/3" in loop.stats().mutual
        for _ in range(4):
            loop.trigger().result(timeout=30)
        assert loop.wait_published(4, 30)
    assert "mutual_on" in [e["kind"] for e in audit_events(tmp_path / "logs")]
    with StationLoop(station, engines=engines()) as loop:  # restart: the buffer comes back
        assert loop.stats().mutual.startswith("mutual head on: 4/5")
        assert "mutual" in loop.inspector.heads
        loop.trigger().result(timeout=30)


def test_switch_on_recomputes_the_threshold_from_the_buffer(tmp_path: Path, tiny_backbone, text_cache_dir) -> None:
    from inspector.decision.calibrate import threshold_for_false_reject
    from inspector.heads.fusion import HEAD_NAMES
    from inspector.heads.mutual import held_out_scores

    data = tiny_station_dict(tmp_path, text_cache_dir, ("ring",))
    data["lines"][0].update(MUTUAL)  # no decision.threshold: the fit calibrates it, switch-on recomputes it
    station = parse_station_config(data)
    ring = Inspector(station.line("ring"), tiny_backbone, TextEmbeddingCache(text_cache_dir))
    gen = PartGenerator((SIZE, SIZE), seed=0)
    ring.fit([gen.good().image for _ in range(4)])
    fitted = ring.threshold
    book, events = ThresholdBook(tmp_path), Events()
    buffers = MutualBuffers(tmp_path, station.line, lambda name: ring, events, book=book)
    buffers.install(ring)
    parts = [_part(ring, seq) for seq in (1, 2, 3)]
    for part in parts[:2]:
        buffers.handle(part)
    assert ring.threshold == fitted and book.live("ring") is None and not events
    buffers.handle(parts[2])
    assert "mutual" in ring.heads and [e[0] for e in events] == ["mutual_on", "threshold_change"]

    # The same threshold by hand: each buffered part's fused score from the scores it got when inspected
    # and its held-out mutual score against the two other parts, at the line's false-reject target.
    mutual, _ = held_out_scores(ring.mutual.bank, ring.mutual.interval, ring.mutual.top, max_queries=3)
    f = ring.fusion
    fused = []
    for i, part in enumerate(parts):
        raw = {**part.result.head_scores, "mutual": float(mutual[i])}
        k = [HEAD_NAMES.index(h) for h in ring.heads]
        z = [float(f.weights[j]) * (raw[HEAD_NAMES[j]] - float(f.score_mean[j])) / float(f.score_std[j]) for j in k]
        fused.append(sum(z) / sum(float(f.weights[j]) for j in k))
    target = station.line("ring").decision.calibration.target_false_reject
    expected = threshold_for_false_reject(np.array(fused), target).threshold
    assert ring.threshold == pytest.approx(expected, rel=1e-5) and ring.threshold != fitted
    live = book.live("ring")
    assert live is not None and live.method == "mutual_on" and live.value == ring.threshold
    assert "3 buffered OK parts" in live.why and live.source().startswith("recalibrated from the mutual buffer")
    assert f"-> {ring.threshold:.4f} (base, mutual_on)" in events[1][1]
    # The buffer keeps the scores across a restart (the next switch-on needs them).
    buffers.close()
    saved = MutualBuffers(tmp_path, station.line, lambda name: None, Events())
    saved.install(ring)
    assert list(saved._buffers["ring"].scores) == [
        {k: v for k, v in p.result.head_scores.items() if k != "mutual"} for p in parts]
