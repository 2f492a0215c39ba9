"""Few-shot adapter training (Lightning + albumentations), feature cache, model registry, promotion gate.

Public API (imported lazily: the station config imports :mod:`inspector.config.training`, and
that must not pull in Lightning)::

    train_line(station, line, *, inspector=None, observers=(), cancel=None, ...) -> TrainingReport
    TrainingEvent, CancelToken                      progress events / cancellation for the GUI
    ModelRegistry(model_dir, line)                  versions, promote, rollback, deployed
    apply_version / apply_deployed / DeploymentWatcher   hot-swap a running Inspector
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train_line": "inspector.training.pipeline",
    "TrainingReport": "inspector.training.pipeline",
    "TrainingEvent": "inspector.training.progress",
    "CancelToken": "inspector.training.progress",
    "ModelRegistry": "inspector.training.registry",
    "apply_version": "inspector.training.deploy",
    "apply_deployed": "inspector.training.deploy",
    "DeploymentWatcher": "inspector.training.deploy",
    "TrainingSpec": "inspector.config.training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'inspector.training' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(module), name)
