"""The engine: frame -> features -> heads -> decision for one product line (``Inspector``)."""

from inspector.engine.fewshot import FewShotFiles, FewShotSet, walk_fewshot
from inspector.engine.inspector import FitReport, Inspector

__all__ = ["FewShotFiles", "FewShotSet", "FitReport", "Inspector", "walk_fewshot"]
