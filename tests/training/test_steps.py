"""An honest gate, from real runs on the tiny random ViT: what chose never judges, the base arm is the engine's,
synthetic judging defects come from another family, the line's escape limit refuses, NaN heads get no weight."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.config import parse_station_config
from inspector.engine import Inspector
from inspector.training.modules import TipAdapterHead
from inspector.training.pipeline import train_line
from inspector.training.progress import Emitter
from inspector.training.registry import ModelRegistry
from inspector.training.steps import LineTraining
from tests.conftest import tiny_line
from tests.training.conftest import FAST_TRAINING, TrainedLine, make_fewshot, make_station


def test_what_chose_the_epoch_weights_and_threshold_never_judges(trained: TrainedLine) -> None:
    m = json.loads((trained.report.path / "metrics.json").read_text())
    v = m["validation"]
    assert v["nesting"]["outer_folds"] == 4 and v["judging_defects"] == {"source": "real"}
    folds = v["folds_detail"]
    real = {f["file"] for f in json.loads((trained.report.path / "card.json").read_text())["data"]["files"]}
    judged = [k for f in folds for k in f["outer_val"]]
    assert sorted(judged) == sorted(real) and len(real) == 24  # every image judged exactly once
    for f in folds:
        outer = set(f["outer_val"])
        chose = set(f["inner_val"])
        assert chose and not chose & outer and not set(f["inner_train"]) & (outer | chose)
        assert set(f["base_fit"]) <= set(f["inner_train"])  # the engine's base heads fitted on inner-train only
        for head, epoch in f["epochs"].items():
            assert set(epoch["chosen_on"]) == chose, head  # the Trainer's validation views: the inner ones
        assert set(f["weights_chosen_on"]) == chose and set(f["thresholds_chosen_on"]) == chose
        assert f["weights"]["patch"] > 0
    # The gate's figures are those of the fold thresholds chosen inside.
    assert m["new"]["fold_thresholds"] == [f["thresholds"]["new"] for f in folds]
    # ... with the confusion counts behind the rates, for every arm (the approval screen's table).
    for arm in ("new", "base"):
        a = m[arm]
        assert (a["tp"] + a["fn"], a["tn"] + a["fp"]) == (a["n_defect"], a["n_good"]), arm
        assert a["fn"] == round(a["escape_rate"] * a["n_defect"]) and a["fp"] == round(a["false_reject_rate"]
                                                                                       * a["n_good"]), arm
    assert m["gate"]["checks"]["max_escape"]["limit"] == 0.2


@pytest.mark.slow
def test_the_base_arm_is_the_engine_fitted_on_the_inner_images(tmp_path: Path) -> None:
    folder = make_fewshot(tmp_path / "fs", n_good=6, n_defect=4)
    station = make_station(tmp_path, folder, heads=["tip_adapter"], max_epochs=1)
    line = station.lines[0]
    run = LineTraining(station, line, line.training, Inspector.from_config(station, fit=False), Emitter([]),
                       lambda: False, tmp_path / "models", None)
    run.load()
    run.split()
    run.prepare_views()
    run.encode()
    run.train()
    fold, evidence = run.folds[0], run.evidence[0]
    # The station's own engine, fitted on that fold's inner-training images, judging its outer images.
    engine = Inspector.from_config(station, fit=False)
    good = [run.samples[i].image for i in fold.inner_train if run.samples[i].label == 0]
    defects: dict[str, list[np.ndarray]] = {}
    for i in fold.inner_train:
        if run.samples[i].label:
            defects.setdefault(run.samples[i].defect, []).append(run.samples[i].image)
    engine.fit(good, defects)
    results = engine.inspect_batch([run.samples[i].image for i in fold.outer_val])
    assert set(evidence.base_outer) == {"zero_shot", "references", "probe"}
    for head, out in evidence.base_outer.items():
        expected = torch.tensor([r.head_scores[head] for r in results])
        assert torch.allclose(out.score, expected, atol=1e-4), head


@pytest.mark.slow
@pytest.mark.parametrize("judge", ["other_family", "other_seed"])
def test_synthetic_judging_defects_are_not_the_training_ones(tmp_path: Path, judge: str) -> None:
    folder = make_fewshot(tmp_path / "fs", n_good=6, n_defect=0)
    station = make_station(tmp_path, folder, heads=["patch"], max_epochs=2,
                           synthesis={"per_image": 1, "judge": judge})
    report = train_line(station, promote=False)
    v = report.metrics["validation"]
    assert v["synthetic_defects"] and v["judging_defects"]["policy"] == judge
    train_methods = {"cutpaste", "scar"} if judge == "other_family" else {"cutpaste", "scar", "perlin"}
    judge_methods = {"perlin"} if judge == "other_family" else train_methods
    assert set(v["judging_defects"]["train_methods"]) == train_methods
    for f in v["folds_detail"]:
        judging = [k for k in f["outer_val"] if k.startswith("synthetic")]
        choosing = [k for k in f["inner_train"] + f["inner_val"] if k.startswith("synthetic")]
        assert judging and choosing
        assert all(k.startswith("synthetic-judge/") and k.split("/")[1] in judge_methods for k in judging)
        assert all(k.startswith("synthetic/") and k.split("/")[1] in train_methods for k in choosing)
    card = json.loads((report.path / "card.json").read_text())
    assert card["data"]["synthetic"]["count"] == 6 and card["data"]["synthetic"]["judging_count"] == 6
    assert card["data"]["judging_defects"]["policy"] == judge


@pytest.mark.slow
def test_the_lines_escape_limit_refuses_and_force_still_deploys(trained: TrainedLine, tmp_path: Path) -> None:
    """Same data, same seeds as v1: the candidate's escape rate is known; a limit just below it refuses."""
    escape = trained.report.metrics["new"]["escape_rate"]
    assert 0 < escape < 1
    trained.copy(tmp_path)
    loose = {"auroc_tolerance": 1.0, "f1_tolerance": 1.0, "escape_tolerance": 1.0, "max_escape": escape - 0.01}
    station = make_station(tmp_path, trained.station.lines[0].fewshot.folder, gate=loose)
    report = train_line(station, force=True, who="qa", reason="escape trial")
    assert report.metrics["new"]["escape_rate"] == pytest.approx(escape)
    assert not report.decision.passed and len(report.decision.reasons) == 1
    assert f"escape_rate {escape:.3f}" in report.decision.reasons[0]
    assert f"training.gate.max_escape = {escape - 0.01:g}" in report.decision.reasons[0]
    assert report.promoted and report.forced
    history = ModelRegistry(tmp_path / "models", "ring").deployment()["history"][-1]
    assert history["action"] == "force-promote" and history["who"] == "qa"


@pytest.mark.slow
def test_a_head_with_non_finite_held_out_scores_gets_no_weight(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def nan_scores(self, features):
        out = TipAdapterHead.__mro__[1].forward(self, features)
        return type(out)(torch.full_like(out.score, float("nan")), out.map, out.class_probs)

    monkeypatch.setattr(TipAdapterHead, "forward", nan_scores)
    folder = make_fewshot(tmp_path / "fs", n_good=8, n_defect=8)
    line = tiny_line(training={**FAST_TRAINING, "heads": ["patch", "tip_adapter"], "max_epochs": 2},
                     fewshot={"folder": str(folder)})
    station = parse_station_config({"model_dir": str(tmp_path / "models"), "cache_dir": str(tmp_path / "cache"),
                                    "lines": [line]})
    report = train_line(station, promote=False)
    m = report.metrics
    assert m["adapter_weights"]["tip_adapter"] == 0.0 and m["adapter_weights"]["patch"] > 0
    assert all(f["weights"]["tip_adapter"] == 0.0 for f in m["validation"]["folds_detail"])
    assert any("tip_adapter: non-finite held-out scores, weight 0" in n for n in m["weight_notes"])
    assert np.isfinite(m["new"]["auroc"]) and np.isfinite(m["deployment"]["threshold"])
