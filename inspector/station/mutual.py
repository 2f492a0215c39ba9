"""The mutual head's rolling buffer: each line's last OK parts, which judge the next ones (heads/mutual.py).

A sink of published parts: a part judged OK (never NG, never FAULT) puts a float16 coreset of its
patch tokens (per layer, from ``InspectionResult.part_tokens``; taken here, off the inspect
thread) into its line's buffer of the last
``mutual.buffer`` OK parts, and the line's engine scores from the next frame on against the new
bank. Until the buffer holds ``mutual.min_parts`` parts the head is off (cold start): the
status says so, and an audit event records when it switches on.

At switch-on the fused score gains a head, so the line's threshold is recomputed from the buffer
(engine/mutual_calibration.py: each buffered part's fused score from the other heads' scores it got
and its held-out mutual score) and made live through the one threshold path (station/threshold.py:
``threshold_change``, method ``mutual_on``). A threshold set by hand (the YAML's
``decision.threshold`` or a manual apply) is the engineer's and is kept; the event says so.

Buffers are per line, so a changeover leaves each line's buffer alone and comes back to it; they
are saved with the line's state in the log folder (``.mutual-<line>.safetensors``, every
:data:`SAVE_EVERY` parts and at stop) and read back at start. A buffer made by another model (its
tokens are of another space) or another token budget is dropped, not mixed.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from inspector.config import LineConfig
from inspector.engine import Inspector
from inspector.heads.mutual import part_coreset
from inspector.station.results import StationResult
from inspector.station.sinks import Sink
from inspector.station.threshold import ThresholdBook, ThresholdRecord, set_live_threshold

_logger = logging.getLogger(__name__)

FORMAT = "inspector-mutual-buffer-v1"
#: Parts between two saves of a line's buffer (and one at stop).
SAVE_EVERY = 8
#: New parts between two recomputations of the head's fusion statistics (also at switch-on).
STATS_EVERY = 16

LogEvent = Callable[[str, str, str, object, object], None]
#: Live-threshold methods an engineer chose by hand: switch-on keeps them.
HAND_SET = ("manual", "config")
#: The threshold record's method when switch-on recomputed it.
METHOD = "mutual_on"


@dataclass(frozen=True)
class MutualStatus:
    """Where a line's mutual head stands: its buffer's fill against the warm-up and the capacity."""

    line: str
    enabled: bool  # heads.mutual > 0 on the line
    parts: int
    min_parts: int
    capacity: int

    @property
    def active(self) -> bool:
        return self.enabled and self.parts >= self.min_parts

    @property
    def text(self) -> str:
        if not self.enabled:
            return "mutual head off (heads.mutual is 0)"
        if not self.active:
            return f"mutual head warming up: {self.parts}/{self.min_parts} OK parts buffered"
        return f"mutual head on: {self.parts}/{self.capacity} OK parts buffered"


class _Buffer:
    def __init__(self, capacity: int, model_key: str, tokens_per_part: int) -> None:
        self.parts: deque[dict[int, np.ndarray]] = deque(maxlen=capacity)
        # Per part, the other heads' raw scores it got (the threshold at switch-on is computed from them).
        self.scores: deque[dict[str, float]] = deque(maxlen=capacity)
        self.model_key = model_key
        self.tokens_per_part = tokens_per_part
        self.unsaved = 0
        self.since_stats = 0

    def bank(self) -> dict[int, torch.Tensor]:
        if not self.parts:
            return {}
        return {layer: torch.from_numpy(np.stack([p[layer] for p in self.parts])) for layer in self.parts[0]}


class MutualBuffers(Sink):
    """Each line's buffer of OK parts; feeds the line's engine its mutual bank (a station sink)."""

    name = "mutual"

    def __init__(self, folder: Path | None, line_config: Callable[[str], LineConfig],
                 engine_of: Callable[[str], Inspector | None], log_event: LogEvent,
                 book: ThresholdBook | None = None) -> None:
        self.folder = folder
        self.book = book
        self._line_config = line_config
        self._engine_of = engine_of
        self._log_event = log_event
        self._buffers: dict[str, _Buffer] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ files
    def path(self, line: str) -> Path | None:
        return None if self.folder is None else self.folder / f".mutual-{line}.safetensors"

    def _load(self, line: str, engine: Inspector) -> _Buffer:
        spec = engine.line.mutual
        buf = _Buffer(spec.buffer, engine.model_key, spec.tokens_per_part)
        path = self.path(line)
        if path is None or not path.exists():
            return buf
        try:
            with safe_open(str(path), framework="numpy") as fh:
                meta = json.loads((fh.metadata() or {}).get("meta", "{}"))
                if (fh.metadata() or {}).get("format") != FORMAT:
                    raise ValueError("not a mutual buffer")
                if meta.get("model_key") != engine.model_key or meta.get("tokens_per_part") != spec.tokens_per_part:
                    _logger.warning("line %s: mutual buffer %s was made by another model or token budget; "
                                    "starting a new one", line, path)
                    return buf
                layers = [int(x) for x in meta["layers"]]
                scores = meta.get("head_scores") or []  # absent in buffers saved before it was kept
                for i in range(int(meta["parts"])):
                    buf.parts.append({layer: fh.get_tensor(f"part{i}.layer{layer}") for layer in layers})
                    buf.scores.append({str(k): float(v) for k, v in (scores[i] if i < len(scores) else {}).items()})
        except Exception as exc:  # a damaged buffer costs a warm-up, never the start
            _logger.warning("line %s: ignoring unreadable mutual buffer %s: %s", line, path, exc)
            buf.parts.clear()
            buf.scores.clear()
        return buf

    def _save(self, line: str, buf: _Buffer) -> None:
        path = self.path(line)
        if path is None:
            return
        tensors = {f"part{i}.layer{layer}": np.ascontiguousarray(t) for i, p in enumerate(buf.parts)
                   for layer, t in p.items()}
        layers = sorted(buf.parts[0]) if buf.parts else []
        meta = {"model_key": buf.model_key, "tokens_per_part": buf.tokens_per_part, "parts": len(buf.parts),
                "layers": layers, "head_scores": list(buf.scores)}
        tmp = path.with_suffix(".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(tmp), metadata={"format": FORMAT, "meta": json.dumps(meta)})
            tmp.replace(path)
            buf.unsaved = 0
        except OSError as exc:
            _logger.warning("line %s: cannot save the mutual buffer to %s: %s", line, path, exc)
        finally:
            tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------ the station's calls
    def install(self, engine: Inspector) -> MutualStatus:
        """Give a line's engine its buffer (at start and changeover); reads the saved buffer the first time."""
        line = engine.line.name
        with self._lock:
            buf = self._buffers.get(line)
            if buf is None or buf.model_key != engine.model_key:
                buf = self._buffers[line] = self._load(line, engine)
            status = self._status(line, buf)
            if status.enabled:
                engine.set_mutual_bank(buf.bank() if status.active else {}, stats=True)
        return status

    def status(self, line: str) -> MutualStatus:
        with self._lock:
            return self._status(line, self._buffers.get(line))

    def _status(self, line: str, buf: _Buffer | None) -> MutualStatus:
        spec = self._line_config(line)
        return MutualStatus(line, spec.heads.mutual > 0, len(buf.parts) if buf else 0, spec.mutual.min_parts,
                            spec.mutual.buffer)

    def handle(self, item: StationResult) -> None:
        result = item.result
        if result is None or item.fault is not None or not item.ok or result.verdict != "OK":
            return  # NG and FAULT parts never enter the buffer
        if not result.part_tokens:
            return
        scores = {k: float(v) for k, v in result.head_scores.items() if k != "mutual"}
        with self._lock:
            self._add(item.line, result.part_tokens, scores)

    def _add(self, line: str, tokens: dict[int, np.ndarray], scores: dict[str, float] | None = None) -> None:
        buf = self._buffers.get(line)
        engine = self._engine_of(line)
        if buf is None:
            if engine is None:
                return
            buf = self._buffers[line] = self._load(line, engine)
        if buf.parts and set(buf.parts[0]) != set(tokens):
            buf.parts.clear()  # other feature layers: another model, another space
            buf.scores.clear()
        before = self._status(line, buf)
        size = self._line_config(line).mutual.tokens_per_part
        buf.parts.append({k: part_coreset(torch.from_numpy(np.asarray(v)), size, seed=k).numpy()
                          for k, v in tokens.items()})
        buf.scores.append(dict(scores or {}))
        buf.unsaved += 1
        buf.since_stats += 1
        after = self._status(line, buf)
        if after.active and engine is not None and engine.line.name == line:
            switched_on = not before.active
            stats = switched_on or buf.since_stats >= STATS_EVERY
            engine.set_mutual_bank(buf.bank(), stats=stats)
            if stats:
                buf.since_stats = 0
            if switched_on:
                self._log_event("mutual_on", "station", f"line {line}: mutual head on with {after.parts} OK parts",
                                f"warming up ({before.parts}/{after.min_parts})", after.text)
                self._recalibrate(line, engine, buf)
        if buf.unsaved >= SAVE_EVERY:
            self._save(line, buf)

    def _recalibrate(self, line: str, engine: Inspector, buf: _Buffer) -> None:
        """At switch-on: the line's threshold from the buffer, live through the one threshold path."""
        live = self.book.live(line) if self.book is not None else None
        hand_set = live.method in HAND_SET if live is not None else engine.line.decision.threshold is not None
        if hand_set:
            kept = live.value if live is not None else engine.threshold
            self._log_event("mutual_threshold_kept", "station",
                            f"line {line}: threshold {kept:.4f} was set by hand and is kept with the mutual head "
                            "on; the fused score now includes it: check it (inspector calibrate)", "", "")
            return
        try:
            calib = engine.mutual_calibration(list(buf.scores))
        except ValueError as exc:  # e.g. a buffer saved before head scores were kept: the threshold stays
            _logger.warning("line %s: no threshold from the mutual buffer: %s", line, exc)
            self._log_event("mutual_threshold_kept", "station", f"line {line}: threshold kept: {exc}"[:250], "", "")
            return
        record = ThresholdRecord(
            float(calib.threshold), METHOD, engine.model_version, target=calib.expected_false_reject,
            interval=calib.false_reject_interval, who="station", config_value=engine.line.decision.threshold,
            why=(f"mutual head on: fused score now averages it in; false-reject target "
                 f"{100 * engine.line.decision.calibration.target_false_reject:.1f} % on {calib.n_good} buffered "
                 "OK parts"))
        set_live_threshold(line, record, book=self.book, log_event=self._log_event, inspector=engine)

    def close(self) -> None:
        """Save every buffer with unsaved parts (at stop, after the queue drained)."""
        with self._lock:
            for line, buf in self._buffers.items():
                if buf.unsaved:
                    self._save(line, buf)
