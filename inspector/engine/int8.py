"""Does the int8 backbone judge the line's parts as fp32 does? Run it only when it does.

After a fit, the few-shot set's parts (good and defective) are inspected twice by the same fitted
heads: once through the fp32 backbone, once through the int8 one calibrated on the good parts.
int8 is accepted when every verdict is the same and every fused score (threshold units) is within
``model.int8_tolerance`` of fp32's; otherwise the line stays on fp32 and the check says why. The
fit itself always runs on fp32 features, so thresholds and statistics are fp32's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from inspector.engine.inspector import Inspector

logger = logging.getLogger(__name__)

CHECK_BATCH = 8


@dataclass(frozen=True)
class Int8Check:
    """What the int8 agreement check found on the few-shot set."""

    accepted: bool
    parts: int
    max_score_diff: float
    verdict_mismatches: int
    tolerance: float
    source: str  # where the int8 model came from: quantized | cache | memory
    units: tuple[str, ...]  # the CPU's int8 units
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(fp32: Sequence[tuple[str, float]], int8: Sequence[tuple[str, float]]) -> tuple[int, float]:
    """(verdict mismatches, largest |score difference|) of two runs over the same parts, in order."""
    if len(fp32) != len(int8):
        msg = f"the two runs judged {len(fp32)} and {len(int8)} parts: they must judge the same parts"
        raise ValueError(msg)
    mismatches = sum(a[0] != b[0] for a, b in zip(fp32, int8, strict=True))
    diffs = [abs(a[1] - b[1]) for a, b in zip(fp32, int8, strict=True)]
    return mismatches, float(max(diffs, default=0.0))


def _judge(inspector: Inspector, frames: Sequence[np.ndarray]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for start in range(0, len(frames), CHECK_BATCH):
        out.extend((r.verdict, float(r.score)) for r in inspector.inspect_batch(frames[start : start + CHECK_BATCH]))
    return out


def settle_int8(inspector: Inspector, good: Sequence[np.ndarray], defects: Sequence[np.ndarray]) -> Int8Check:
    """Quantize on ``good``, judge ``good`` + ``defects`` with fp32 and int8, and run int8 only if they agree."""
    runner = inspector.runner
    tolerance = inspector.line.model.int8_tolerance
    units = tuple(getattr(runner, "int8_units", ()))
    runner.use("fp32")
    if not good:
        return Int8Check(False, 0, 0.0, 0, tolerance, "", units,
                         "no good few-shot parts to calibrate int8 on: running fp32")
    source = runner.quantize(inspector.prepare(list(good)).cpu().numpy())
    frames = [*good, *defects]
    fp32 = _judge(inspector, frames)
    runner.use("int8")
    int8 = _judge(inspector, frames)
    mismatches, diff = compare(fp32, int8)
    accepted = mismatches == 0 and diff <= tolerance
    if accepted:
        reason = (f"int8 agrees with fp32 on {len(frames)} few-shot parts: same verdicts, scores within "
                  f"{diff:.3g} (tolerance {tolerance:g})")
        logger.info("line %s: %s", inspector.line.name, reason)
    else:
        runner.use("fp32")
        reason = (f"int8 refused, running fp32: on {len(frames)} few-shot parts {mismatches} verdict(s) differ and "
                  f"scores differ by up to {diff:.3g} (tolerance {tolerance:g}); raise model.int8_tolerance only "
                  "after checking the parts, or set model.precision to fp32")
        logger.warning("line %s: %s", inspector.line.name, reason)
    return Int8Check(accepted, len(frames), diff, mismatches, tolerance, source, units, reason)
