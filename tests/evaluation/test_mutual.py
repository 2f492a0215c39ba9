"""The mutual protocol's windows: all others, or the seeded buffer of predecessors."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.evaluation.mutual import mutual_order, mutual_windows


def test_without_buffer_each_image_sees_all_others() -> None:
    windows = mutual_windows(5, seed=0, buffer=None)
    assert [w.tolist() for w in windows] == [[1, 2, 3, 4], [0, 2, 3, 4], [0, 1, 3, 4], [0, 1, 2, 4], [0, 1, 2, 3]]


def test_buffer_holds_the_predecessors_in_the_seeded_order() -> None:
    n, buffer, seed = 12, 4, 3
    order = mutual_order(n, seed).tolist()
    windows = mutual_windows(n, seed, buffer)
    for pos, i in enumerate(order):
        assert i not in windows[i]
        assert len(windows[i]) == buffer
        if pos >= buffer:
            assert sorted(windows[i].tolist()) == sorted(order[pos - buffer : pos])
        else:  # warm-up: the first buffer + 1 images, itself left out
            assert set(windows[i].tolist()) == set(order[: buffer + 1]) - {i}
    assert mutual_windows(n, seed, buffer)[0].tolist() == windows[0].tolist()  # reproducible
    assert any(a.tolist() != b.tolist() for a, b in zip(windows, mutual_windows(n, seed + 1, buffer), strict=True))


def test_buffer_larger_than_the_set_is_all_others() -> None:
    windows = mutual_windows(4, 0, 64)
    assert all(len(w) == 3 for w in windows)
    with pytest.raises(ValueError, match="two test images"):
        mutual_windows(1, 0, None)
    with pytest.raises(ValueError, match="at least one"):
        mutual_windows(4, 0, 0)
    assert np.array_equal(mutual_order(6, 1), mutual_order(6, 1))
