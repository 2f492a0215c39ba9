"""What a finished run writes into the registry: its metrics record and its model card."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import torch

from inspector.config import config_hash
from inspector.training.data import INNER_MIN_FRACTION
from inspector.training.gate import GateDecision

if TYPE_CHECKING:
    from inspector.training.steps import LineTraining


def metrics_record(run: LineTraining, decision: GateDecision) -> dict[str, Any]:
    """The version's metrics.json: held-out validation, gate, deployment statistics, training history."""
    outer = [e.outer for e in run.evidence]
    return {
        "line": run.line.name,
        "validation": {
            "mode": run.mode, "folds": len(run.folds), "views_per_fold": [len(v) for v in outer],
            "n_good": run.metrics_new.n_good, "n_defect": run.metrics_new.n_defect,
            "synthetic_defects": run.synthetic_validation,
            "judging_defects": judging_defects(run),
            "nesting": {"outer": run.mode, "outer_folds": len(run.folds),
                        "inner": f"stratified hold-out of each outer training set "
                                 f"(fraction {max(run.spec.validation.fraction, INNER_MIN_FRACTION):.3g})",
                        "chooses": ["epochs", "head weights", "standardisation", "operating threshold"],
                        "notes": list(run.nesting_notes)},
            "folds_detail": run.fold_records,
            "files": [sorted(set(v.keys)) for v in outer],
        },
        "new": run.metrics_new.to_dict(),
        "base": run.all_metrics["base"].to_dict(),
        "deployed": ({**run.all_metrics["deployed"].to_dict(), "version": run.deployed_name}
                     if "deployed" in run.all_metrics else None),
        "heads_auroc": run.head_auc,
        "map_auroc": run.map_auc,
        "adapter_weights": run.weights,
        "weight_notes": run.weight_notes,
        "gate": decision.to_dict(),
        "deployment": {"score_stats": list(run.adapter_stats),
                       "map_stats": list(run.adapter_map_stats) if run.adapter_map_stats else None,
                       "threshold": run.deployment_threshold},
        "training": {name: {"best_epoch": r.best_epoch, "epochs_run": r.epochs_run,
                            "best_val_loss": run.fold_results[0][name].best_val_loss,
                            "history": run.fold_results[0][name].history,
                            "seconds": sum(f[name].seconds for f in run.fold_results) + (
                                r.seconds if run.mode == "kfold" else 0.0)}
                     for name, r in run.final.items()},
        "note": run.deployed_note,
    }


def judging_defects(run: LineTraining) -> dict[str, Any]:
    """Where the defects that judged the candidate came from (real ones, or which synthetic family / stream)."""
    if not run.synthetic_validation or run.synth_plan is None:
        return {"source": "real"}
    return {"source": "synthetic", **run.synth_plan.record()}


def card_record(run: LineTraining, who: str) -> dict[str, Any]:
    """The version's model card: backbone (model key), classes, data, augmentation, config, environment."""
    import albumentations
    import open_clip
    import pytorch_lightning

    from inspector import __version__

    inspector = run.inspector
    assert inspector is not None
    ident = inspector.backbone.identity
    synthetic = [s for i, s in enumerate(run.samples) if s.synthetic and run.synthetic_of[i][1] == "train"]
    judging = sum(1 for _, stream in run.synthetic_of.values() if stream != "train")
    return {
        "line": run.line.name,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "created_by": who,
        "inspector_version": __version__,
        "backbone": {"key": inspector.model_key, "model": ident.model, "pretrained": ident.pretrained,
                     "sha256": ident.sha256, "untrained": ident.untrained,
                     "image_size": list(inspector.extractor.image_size),
                     "feature_layers": list(inspector.extractor.layers), "precision": run.line.model.precision},
        "classes": list(run.classes),
        "heads": run.heads,
        "data": {"folder": str(run.data.root), "files": run.data.file_record(), "skipped": run.data.skipped,
                 "synthetic": {"count": len(synthetic), "judging_count": judging,
                               "settings": run.spec.synthesis.model_dump(mode="json") if run.synthesis else None,
                               "plan": run.synth_plan.record() if run.synth_plan is not None else None},
                 "judging_defects": judging_defects(run)},
        "augmentation": {"digest": run.augmenter.digest, "albumentations": albumentations.__version__,
                         "views_per_image": run.spec.augment.views,
                         "settings": run.spec.augment.model_dump(mode="json")},
        "seed": run.spec.seed,
        "config": {"training": run.spec.model_dump(mode="json"), "line_config_hash": config_hash(run.line),
                   "head_weights": run.line.heads.model_dump(mode="json"), "roi": run.line.roi},
        "environment": {"torch": torch.__version__, "pytorch_lightning": pytorch_lightning.__version__,
                        "open_clip": open_clip.__version__, "device": str(inspector.device)},
        "feature_cache": {"hits": run.cache.stats.hits, "encoded": run.cache.stats.encoded},
        "timings_s": {k: round(v, 3) for k, v in run.timings.items()},
    }
