"""The engine: frame -> features -> heads -> decision for one product line (``Inspector``), and its fitted state."""

from inspector.engine.fewshot import FewShotFiles, FewShotSet, walk_fewshot
from inspector.engine.fitted import FitReport, FittedState
from inspector.engine.inspector import Inspector

__all__ = ["FewShotFiles", "FewShotSet", "FitReport", "FittedState", "Inspector", "walk_fewshot"]
