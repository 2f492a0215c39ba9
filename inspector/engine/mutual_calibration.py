"""The threshold of a line whose mutual head has just switched on, computed from its buffer.

Until the buffer holds ``mutual.min_parts`` OK parts the fused score is the other heads' alone;
from switch-on it also averages the mutual head's standardised score, so good parts' fused scores
gather closer to 0 (an average of more standardised heads) and the old threshold would let
defects through. The new threshold comes from the buffered parts themselves: each part's fused
score as the engine now computes it, from

- the other heads' raw scores the part got when it was inspected (kept beside its tokens), and
- its held-out mutual score against the other buffered parts (the same held-out scores the fusion
  standardises the mutual head with, :func:`inspector.heads.mutual.held_out_scores`),

put at the line's false-reject target (``decision.calibration``; the buffer holds good parts only,
so methods that need defects fall back to it). The parts entered the buffer because the old
threshold passed them, so the tail above it is cut: the estimate errs low (safe side: more rejects,
fewer escapes), and the production recalibration (``decision.recalibration``) refines it later.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from inspector.decision.calibrate import Calibration, threshold_for_false_reject
from inspector.heads.base import HeadOutput
from inspector.heads.fusion import Fusion
from inspector.heads.mutual import Bank, held_out_scores

#: Most buffered parts whose held-out scores make the threshold (the search grows as parts squared).
MAX_PARTS = 64


def buffer_fused_scores(bank: Bank, head_scores: Sequence[dict[str, float]], fusion: Fusion,
                        other_heads: Sequence[str], interval: float, top: float) -> np.ndarray:
    """Fused scores of the last (up to :data:`MAX_PARTS`) buffered parts with the mutual head on.

    ``head_scores`` aligns with the bank's parts (oldest first): the raw scores of ``other_heads``
    each part got when inspected; a part missing one of them is left out.
    """
    n = next(iter(bank.values())).shape[0] if bank else 0
    if n < 2:
        msg = "the mutual head's threshold needs at least two buffered parts"
        raise ValueError(msg)
    if len(head_scores) != n:
        msg = f"{len(head_scores)} parts' head scores for a bank of {n} parts"
        raise ValueError(msg)
    q = min(n, MAX_PARTS)
    mutual, _ = held_out_scores(bank, interval, top, max_queries=q)
    rows = [i for i in range(n - q, n) if all(h in head_scores[i] for h in other_heads)]
    if not rows:
        return np.empty(0)
    outputs = {h: HeadOutput(torch.tensor([head_scores[i][h] for i in rows], dtype=torch.float32), None)
               for h in other_heads}
    outputs["mutual"] = HeadOutput(mutual[[i - (n - q) for i in rows]].float().cpu(), None)
    with torch.no_grad():
        score, _ = fusion(outputs)
    return score.numpy().astype(np.float64)


def buffer_calibration(scores: np.ndarray, target_false_reject: float) -> Calibration:
    """The threshold at the false-reject target from the buffered parts' fused scores (module doc)."""
    if scores.size < 2:
        msg = (f"{scores.size} buffered part(s) carry every other head's score; the mutual head's threshold "
               "needs at least 2")
        raise ValueError(msg)
    return threshold_for_false_reject(scores, target_false_reject)
