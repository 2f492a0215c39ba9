"""The mutual-scoring protocol (MuSc): which other test images each test image is scored against.

Without a buffer every test image is scored against all the other test images of the category
(MuSc's zero-shot protocol). With ``buffer = N`` the test images are put in a seeded order and each
is scored against the N images before it, as on a line whose buffer holds the last N parts; the
first N images (no N predecessors yet) are scored against the first N + 1 images other than
themselves, so that every image sees exactly min(N, n - 1) others. Labels are never used.
"""

from __future__ import annotations

import numpy as np


def mutual_order(n: int, seed: int) -> np.ndarray:
    """The seeded order of ``n`` test images (positions -> indices into the sorted test list)."""
    return np.random.default_rng(seed).permutation(n)


def mutual_windows(n: int, seed: int, buffer: int | None) -> list[np.ndarray]:
    """For each test image (sorted-list index), the sorted indices of the images it is scored against."""
    if n < 2:
        msg = f"mutual scoring needs at least two test images; got {n}"
        raise ValueError(msg)
    if buffer is None:
        return [np.array([j for j in range(n) if j != i]) for i in range(n)]
    if buffer < 1:
        msg = f"the mutual buffer holds at least one image; got {buffer}"
        raise ValueError(msg)
    order = mutual_order(n, seed)
    windows: list[np.ndarray] = [np.empty(0, dtype=int)] * n
    for pos, i in enumerate(order):
        if pos >= buffer:
            others = order[pos - buffer : pos]
        else:
            head = order[: min(n, buffer + 1)]
            others = head[head != i]
        windows[int(i)] = np.sort(others)
    return windows
