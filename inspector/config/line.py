"""One product line's section of the station YAML: backbone, prompts, few-shot set, heads, decision."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictFloat, StrictInt, field_validator, model_validator

from inspector.config.base import StrictModel
from inspector.config.training import TrainingSpec

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
#: Most good few-shot images a line may hold (fewshot.max_shots).
MAX_SHOTS = 1024



class ModelSpec(StrictModel):
    """Which open_clip backbone to run and where its weights come from."""

    name: str = Field(min_length=1, description="open_clip architecture, e.g. ViT-B-16")
    # An open_clip tag (resolved offline from the local cache), a local weights file, or 'random'.
    pretrained: str = Field(min_length=1)
    # Expected sha256 of the weights file; loading refuses a mismatch.
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    # Input side in pixels; positional embeddings are interpolated when it differs from the model's.
    image_size: int | None = Field(default=None, ge=32, le=1536)
    # Transformer blocks whose patch tokens feed the few-shot reference head, relative to the depth by
    # default: a fraction f in (0, 1] is block floor(f * depth) (capped at the last: 1.0), so [0.5, 0.75]
    # is blocks 6 and 9 (0-based) of a 12-block ViT-B and 12 and 18 of a 24-block ViT-L; a negative
    # integer counts from the end (-1 = last block); a non-negative integer is an absolute 0-based block.
    # Resolved against the backbone's depth when it is loaded (backbone/dense.py: resolve_layers).
    feature_layers: tuple[StrictInt | StrictFloat, ...] = (0.5, 0.75)
    # fp32; bf16 / fp16 (torch autocast, a GPU path; OpenVINO's hint on the CPU); int8 = the OpenVINO backend
    # quantized with NNCF on the line's good parts, only on a CPU with int8 units (AVX-512 VNNI, AVX-VNNI,
    # AMX) and only while it agrees with fp32 on the few-shot set (int8_tolerance; docs/speed.md).
    precision: Literal["fp32", "bf16", "fp16", "int8"] = "fp32"
    # int8 is used only when, on every few-shot part, its verdict equals fp32's and its fused score (threshold
    # units) is within this of fp32's; otherwise the line runs fp32 and says why.
    int8_tolerance: float = Field(default=0.1, gt=0, le=10)
    # Where the backbone pass runs (docs/speed.md): torch; openvino (CPU only, needs the [openvino] extra,
    # compiled once per weights/input size/layers/precision into the station's cache); auto = OpenVINO on
    # the CPU when installed, torch otherwise (and always on CUDA).
    backend: Literal["torch", "openvino", "auto"] = "torch"
    # torch.compile of the fixed-shape backbone pass when torch runs it (a GPU path, docs/speed.md): off;
    # default (inductor kernels); reduce-overhead (+ CUDA graphs: the launch overhead of batch-1 frames
    # gone); max-autotune. Compiled at line start (tens of seconds), once per batch size seen.
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = "off"

    @field_validator("feature_layers")
    @classmethod
    def _layers_valid(cls, value: tuple[int | float, ...]) -> tuple[int | float, ...]:
        for layer in value:
            if isinstance(layer, float) and not 0.0 < layer <= 1.0:
                msg = (f"feature layer {layer}: a fraction of the depth lies in (0, 1]; write an integer for an "
                       "absolute 0-based block (or a negative one to count from the last block)")
                raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _int8_on_openvino(self) -> ModelSpec:
        if self.compile != "off" and self.backend == "openvino":
            msg = ("model.compile is torch.compile, for the torch backend; the openvino backend is compiled by "
                   "OpenVINO already: set model.compile to off, or model.backend to torch")
            raise ValueError(msg)
        if self.precision == "int8" and self.backend == "torch":
            msg = ("model.precision int8 runs on the OpenVINO backend (quantized with NNCF): set model.backend to "
                   "openvino (or auto), or model.precision to fp32")
            raise ValueError(msg)
        return self


class PromptSpec(StrictModel):
    """Text prompts of one product line."""

    normal_states: tuple[str, ...] = Field(default=("flawless {}", "perfect {}", "unblemished {}", "{} without flaw",
                                                    "{} without defect", "{} without damage"), min_length=1)
    anomalous_states: tuple[str, ...] = Field(default=("damaged {}", "broken {}", "{} with flaw", "{} with defect",
                                                       "{} with damage"), min_length=1)
    # Named defect descriptions: label -> free text ("a scratch on the rim").
    defects: dict[str, str] = Field(default_factory=dict)
    # None = the built-in photo template ensemble; a list replaces it.
    templates: tuple[str, ...] | None = None
    # Extra domain templates, e.g. "an X-ray image of {}."
    domain_templates: tuple[str, ...] = ()
    # None = the model's own logit scale until calibration fits one.
    temperature: float | None = Field(default=None, gt=0, le=1000)

    @field_validator("normal_states", "anomalous_states", "templates", "domain_templates")
    @classmethod
    def _one_placeholder(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for text in value or ():
            if text.count("{}") != 1:
                msg = f"{text!r} must contain exactly one '{{}}' placeholder for the object/state"
                raise ValueError(msg)
        return value

    @field_validator("templates")
    @classmethod
    def _templates_not_empty(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            msg = "an empty template list leaves no prompts; use null for the built-in templates"
            raise ValueError(msg)
        return value

    @field_validator("defects")
    @classmethod
    def _defect_names(cls, value: dict[str, str]) -> dict[str, str]:
        for label, text in value.items():
            if not re.match(NAME_RE, label):
                msg = f"defect label {label!r} must be 1-64 of [A-Za-z0-9_.-]"
                raise ValueError(msg)
            if label in ("OK", "FAULT", "TIMEOUT", "anomaly"):
                msg = f"defect label {label!r} is reserved"
                raise ValueError(msg)
            if not text.strip():
                msg = f"defect {label!r} needs a description"
                raise ValueError(msg)
        return value


class FewShotSpec(StrictModel):
    """Where the line's good / defect example images live and how references are built."""

    folder: Path | None = None
    # Good images a fit reads (the first ones in name order); `inspector eval --shots` raises it as needed.
    max_shots: int = Field(default=16, ge=1, le=MAX_SHOTS)
    # Rotations (90/180/270) and flips of each good image added to the patch memory.
    augment: bool = True
    # Patch memory per layer is subsampled to at most this many tokens (greedy k-center coreset).
    coreset_size: int = Field(default=4096, ge=16)
    seed: int = 0
    # Reference head: patch tokens averaged over their n x n grid neighbourhood before the search
    # (PatchCore 3x3, MuSc r in {1, 3, 5}); 1 = the tokens as they are.
    neighbourhood: Literal[1, 3, 5] = 1
    # Reference head image score: the map's peak ("max", PatchCore) or the mean of its top 1 % ("top1").
    image_score: Literal["max", "top1"] = "max"


class ZeroShotSpec(StrictModel):
    """How the zero-shot head builds its dense (patch) map."""

    # Text-aligned patch tokens: "last_block" = a value-value attention branch in the last block only;
    # "dpam" = the v-v outputs of the last ``dpam_blocks`` blocks summed (AnomalyCLIP's DPAM, CLIP
    # Surgery's dual path). Part of the model key: features and caches of the two never mix.
    dense: Literal["last_block", "dpam"] = "last_block"
    # Blocks of the DPAM path, counted from the last: an integer count, or a fraction f in (0, 1] of the
    # depth (floor(f * depth) blocks, at least 1). The default 0.8 is AnomalyCLIP's choice (the last 19
    # of ViT-L-14-336's 24 blocks; 9 of a 12-block ViT-B). Checked against the backbone's depth at load
    # (backbone/dense.py: resolve_dense_blocks). Used only with dense: dpam.
    dpam_blocks: StrictInt | StrictFloat = 0.8
    # The patch map averaged over each patch's k x k neighbourhood (1 = as it is, 3 = 3x3 mean filter)
    # before the image score takes its peak.
    map_pool: Literal[1, 3] = 1

    @field_validator("dpam_blocks")
    @classmethod
    def _blocks_valid(cls, value: int | float) -> int | float:
        if isinstance(value, float) and not 0.0 < value <= 1.0:
            msg = f"zeroshot.dpam_blocks {value}: a fraction of the depth lies in (0, 1]; write an integer for a count"
            raise ValueError(msg)
        if isinstance(value, int) and not 1 <= value <= 64:
            msg = f"zeroshot.dpam_blocks {value}: a block count is 1..64 (or a fraction of the depth in (0, 1])"
            raise ValueError(msg)
        return value

    @property
    def dense_blocks(self) -> int | float:
        """Blocks (count or fraction of the depth) whose v-v outputs make the dense tokens; 1 = last block only."""
        return self.dpam_blocks if self.dense == "dpam" else 1


class HeadWeights(StrictModel):
    """Weight of each head in the fused score (0 disables a head)."""

    zero_shot: float = Field(default=1.0, ge=0)
    references: float = Field(default=1.0, ge=0)
    probe: float = Field(default=1.0, ge=0)
    # A trained adapter (inspector train) once one is promoted for the line.
    adapter: float = Field(default=1.0, ge=0)
    # Mutual scoring against the line's own recent OK parts (see ``mutual``); off unless set.
    mutual: float = Field(default=0.0, ge=0)


class MutualSpec(StrictModel):
    """The mutual head's rolling buffer of the line's recent OK parts (MuSc-style, no labels needed)."""

    # Parts kept (the last N judged OK; NG and FAULT parts never enter).
    buffer: int = Field(default=64, ge=2, le=1024)
    # The head stays off (cold start) until the buffer holds this many parts.
    min_parts: int = Field(default=16, ge=1)
    # Patch tokens kept per part and layer (greedy k-center coreset, float16): bounds memory and time.
    # 128 keeps the search at buffer 64 within ~12 % of a ViT-B-16's backbone time on CPU (issue #13).
    tokens_per_part: int = Field(default=128, ge=8, le=4096)
    # Interval mean over this fraction of the nearest buffered parts (MuSc: 0.3).
    interval: float = Field(default=0.3, gt=0, le=1)
    # Image score: mean of this top fraction of the patch map.
    top: float = Field(default=0.01, gt=0, le=1)
    # Patch tokens averaged over their n x n grid neighbourhood before scoring (MuSc's r); 1 = as they are.
    neighbourhood: Literal[1, 3, 5] = 1

    @model_validator(mode="after")
    def _min_parts_fit(self) -> MutualSpec:
        if self.min_parts > self.buffer:
            msg = f"mutual.min_parts ({self.min_parts}) exceeds mutual.buffer ({self.buffer}): it would never warm up"
            raise ValueError(msg)
        return self


class CalibrationSpec(StrictModel):
    """How the decision threshold is chosen, and the record of the last calibration."""

    method: Literal["false_reject", "f1", "cost"] = "false_reject"
    target_false_reject: float = Field(default=0.01, gt=0, lt=0.5)
    cost_false_reject: float = Field(default=1.0, gt=0)
    cost_escape: float = Field(default=10.0, gt=0)
    # Written by `inspector calibrate`: what data, when, which method gave the threshold.
    record: dict[str, Any] | None = None


class RecalibrationSpec(StrictModel):
    """Threshold proposals from production: the station re-estimates the good-score tail as parts go by.

    Every ``after_parts`` inspected parts of a line (one model version, one live threshold) the
    station proposes the threshold at the calibration's target from the parts it judged OK with
    ``margin`` to spare (fused-score units: good-part standard deviations); an engineer applies or
    dismisses it. 0 turns proposals off.
    """

    after_parts: int = Field(default=1000, ge=0)
    margin: float = Field(default=0.5, ge=0)
    # Most recent OK-with-margin scores kept per line (older ones drop out: the line drifts).
    window: int = Field(default=5000, ge=100)


class DecisionSpec(StrictModel):
    threshold: float | None = None
    # Anomaly-map threshold for defect regions, in the same units as the fused map.
    region_threshold: float | None = None
    min_region_area_px: int = Field(default=16, ge=1)
    calibration: CalibrationSpec = CalibrationSpec()
    recalibration: RecalibrationSpec = RecalibrationSpec()


class LineConfig(StrictModel):
    """One product line: what the part is, how to look at it, how to decide."""

    name: str = Field(pattern=NAME_RE)
    object_name: str = Field(min_length=1, max_length=80)
    # Region of interest in frame pixels: [x, y, width, height]; None = whole frame.
    roi: tuple[int, int, int, int] | None = None
    model: ModelSpec
    prompts: PromptSpec = PromptSpec()
    fewshot: FewShotSpec = FewShotSpec()
    zeroshot: ZeroShotSpec = ZeroShotSpec()
    heads: HeadWeights = HeadWeights()
    mutual: MutualSpec = MutualSpec()
    decision: DecisionSpec = DecisionSpec()
    training: TrainingSpec = TrainingSpec()

    @field_validator("object_name")
    @classmethod
    def _object_named(cls, value: str) -> str:
        if not value.strip():
            msg = "object_name must name the part (it goes into every prompt), not be blank"
            raise ValueError(msg)
        return value

    @field_validator("roi")
    @classmethod
    def _roi_positive(cls, value: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
        if value is not None:
            x, y, w, h = value
            if x < 0 or y < 0 or w < 8 or h < 8:
                msg = "roi must be [x >= 0, y >= 0, width >= 8, height >= 8] in frame pixels"
                raise ValueError(msg)
        return value


def parse_layer(text: str) -> int | float:
    """A ``--layers`` command-line value: an integer block (negative from the end) or a fraction of the depth."""
    try:
        return int(text)
    except ValueError:
        pass
    return float(text)  # argparse reports a ValueError as "invalid parse_layer value"


def config_hash(line: LineConfig) -> str:
    """Stable short hash of a line's effective configuration (for the audit log)."""
    blob = json.dumps(line.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


