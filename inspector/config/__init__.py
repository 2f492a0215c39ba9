"""Station configuration: one YAML file per station, validated whole with pydantic, one module per section.

``line`` (backbone, prompts, few-shot set, heads, decision), ``training``, ``camera`` (frame source
and trigger), ``log`` (the audit log), ``plc`` and ``station`` (the file as a whole); ``loading``
reads and writes the YAML. A bad file is rejected with the file, the key path
(``lines[0].model.pretrained``) and what was expected, and nothing is half-applied.
"""

from inspector.config.base import StrictModel
from inspector.config.camera import CameraSpec, SyntheticCameraSpec, TriggerSpec
from inspector.config.line import (
    CalibrationSpec,
    DecisionSpec,
    FewShotSpec,
    HeadWeights,
    LineConfig,
    ModelSpec,
    MutualSpec,
    PromptSpec,
    ZeroShotSpec,
    config_hash,
)
from inspector.config.loading import load_station_config, parse_station_config, update_line_in_file
from inspector.config.log import LogSpec
from inspector.config.plc import PlcSpec
from inspector.config.station import StationConfig
from inspector.config.training import TrainingSpec

__all__ = [
    "CalibrationSpec",
    "CameraSpec",
    "DecisionSpec",
    "FewShotSpec",
    "HeadWeights",
    "LineConfig",
    "LogSpec",
    "ModelSpec",
    "MutualSpec",
    "PlcSpec",
    "PromptSpec",
    "StationConfig",
    "StrictModel",
    "SyntheticCameraSpec",
    "TrainingSpec",
    "TriggerSpec",
    "ZeroShotSpec",
    "config_hash",
    "load_station_config",
    "parse_station_config",
    "update_line_in_file",
]
