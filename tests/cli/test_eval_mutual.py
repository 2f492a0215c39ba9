"""`inspector eval --mutual [--buffer N]`: the MuSc protocol on a tiny MVTec-layout set of synthetic parts."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from benchmarks.mutual import write_synthetic_mvtec
from inspector.cli import main
from inspector.cli.eval_cmd import build_line
from inspector.evaluation.metrics import summarize

TINY = ["--model", "inspector-tiny-vit", "--pretrained", "random", "--image-size", "64", "--layers", "1", "2"]


def _args(**kw) -> argparse.Namespace:
    base = {"category": "ring", "shots": 0, "model": "inspector-tiny-vit", "pretrained": "random", "device": "cpu",
            "image_size": 64, "precision": "fp32", "layers": None, "object_name": None, "config": None, "line": None,
            "mutual": False, "buffer": None, "zero_shot": None, "neighbourhood": None, "image_score": None}
    return argparse.Namespace(**{**base, **kw})


def test_mutual_line_heads() -> None:
    line = build_line(_args(mutual=True))
    assert (line.heads.mutual, line.heads.zero_shot, line.mutual.min_parts) == (1.0, 0.0, 1)
    assert build_line(_args(mutual=True, zero_shot=True)).heads.zero_shot == 1.0
    assert build_line(_args()).heads.mutual == 0.0  # off unless asked
    assert build_line(_args(neighbourhood=3, image_score="top1")).fewshot.neighbourhood == 3
    with pytest.raises(ValueError, match="--buffer needs --mutual"):
        build_line(_args(buffer=8))


@pytest.fixture(scope="module")
def ring_root(tmp_path_factory) -> Path:
    return write_synthetic_mvtec(tmp_path_factory.mktemp("synth"), "ring", seed=0, n_train=2, n_good=10, n_defect=2,
                                 size=64)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [["--shots", "0", "--mutual"], ["--shots", "0", "--mutual", "--buffer", "4"],
                                   ["--shots", "2", "--mutual"]])
def test_eval_mutual_metrics_recompute_from_the_files(ring_root: Path, tmp_path: Path, extra: list[str]) -> None:
    out = tmp_path / "eval"
    code = main(["eval", str(ring_root), "--category", "ring", *extra, *TINY, "--save-maps", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mutual"] is True and metrics["heads"]["mutual"] == 1.0 and metrics["n_images"] == 12
    with (out / "scores.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    labels = [int(r["label"]) for r in rows]
    scores = [float(r["score"]) for r in rows]
    again = summarize(labels, scores, None)
    assert again["image_auroc"] == metrics["image_auroc"]
    with h5py.File(out / "maps.h5") as f:
        assert [float(f[r["path"]].attrs["score"]) for r in rows] == scores
        assert all(np.isfinite(f[r["path"]][()]).all() for r in rows)
    if "--buffer" in extra:
        assert metrics["mutual_buffer"] == 4
