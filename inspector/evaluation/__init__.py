"""Benchmark evaluation (MVTec AD, VisA): datasets, exact metrics, report and the run loop.

The protocol is documented in docs/EVALUATION.md.
"""

from inspector.evaluation.datasets import (
    DatasetError,
    EvalDataset,
    MVTecAD,
    Sample,
    VisA,
    detect_layout,
    open_dataset,
    read_image,
    read_mask,
    select_shots,
)
from inspector.evaluation.metrics import (
    DEFAULT_FPR_LIMIT,
    METRIC_KEYS,
    PixelAccumulator,
    aupro,
    average_precision,
    f1_max,
    image_auroc,
    pixel_auroc,
    precision_recall_curve,
    roc_curve,
    summarize,
)
from inspector.evaluation.report import HeatmapExample, write_report
from inspector.evaluation.runner import Predictor, run_evaluation

__all__ = [
    "DEFAULT_FPR_LIMIT",
    "METRIC_KEYS",
    "DatasetError",
    "EvalDataset",
    "HeatmapExample",
    "MVTecAD",
    "PixelAccumulator",
    "Predictor",
    "Sample",
    "VisA",
    "aupro",
    "average_precision",
    "detect_layout",
    "f1_max",
    "image_auroc",
    "open_dataset",
    "pixel_auroc",
    "precision_recall_curve",
    "read_image",
    "read_mask",
    "roc_curve",
    "run_evaluation",
    "select_shots",
    "summarize",
    "write_report",
]
