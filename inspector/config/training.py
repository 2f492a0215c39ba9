"""Line-config section of adapter training (pydantic and the standard library only).

Every key has a default, so a line trains with ``training: {}``; the station YAML overrides what
the line needs (``training.augment.rotate.p: 0.5``). Validation errors name the key path.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from inspector.config.base import StrictModel

HeadName = Literal["patch", "clip_adapter", "tip_adapter", "coop"]



def _ordered_range(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        msg = f"range [{value[0]}, {value[1]}] must be [low, high] with low <= high"
        raise ValueError(msg)
    return value


Range = Annotated[tuple[float, float], AfterValidator(_ordered_range)]


# ------------------------------------------------------------------------------------ augmentation
class RotateSpec(StrictModel):
    p: float = Field(default=0.0, ge=0.0, le=1.0)  # probability of a free rotation
    limit: float = Field(default=15.0, ge=0.0, le=180.0)  # +- degrees


class BrightnessContrastSpec(StrictModel):
    p: float = Field(default=0.5, ge=0.0, le=1.0)
    brightness: float = Field(default=0.1, ge=0.0, le=1.0)  # +- fraction of full scale
    contrast: float = Field(default=0.1, ge=0.0, le=1.0)  # +- fraction


class BlurSpec(StrictModel):
    p: float = Field(default=0.1, ge=0.0, le=1.0)
    sigma: Range = (0.3, 1.0)  # Gaussian sigma range in pixels


class NoiseSpec(StrictModel):
    p: float = Field(default=0.1, ge=0.0, le=1.0)
    std: Range = (0.01, 0.03)  # Gaussian noise std range, fraction of full scale


class PerspectiveSpec(StrictModel):
    p: float = Field(default=0.0, ge=0.0, le=1.0)
    scale: Range = (0.02, 0.05)  # corner jitter, fraction of the side


class ClaheSpec(StrictModel):
    p: float = Field(default=0.0, ge=0.0, le=1.0)
    clip_limit: float = Field(default=2.0, gt=0.0, le=40.0)


class ExtraTransform(StrictModel):
    """Any other albumentations transform by class name, e.g. ``{name: ColorJitter, p: 0.2}``."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9]*$")
    p: float = Field(default=0.5, ge=0.0, le=1.0)
    params: dict[str, Any] = Field(default_factory=dict)


class AugmentSpec(StrictModel):
    """albumentations pipeline for training images; geometric transforms move the masks too.

    Keep it mild: an augmentation that looks like a defect (heavy blur, noise) teaches the adapter
    that defects are normal.
    """

    # Augmented copies of every training image (each with its own seed); 0 = originals only.
    views: int = Field(default=1, ge=0, le=64)
    hflip: float = Field(default=0.5, ge=0.0, le=1.0)  # probability of a horizontal flip
    vflip: float = Field(default=0.5, ge=0.0, le=1.0)
    rotate90: float = Field(default=0.5, ge=0.0, le=1.0)  # probability of a 90/180/270 degree turn
    rotate: RotateSpec = RotateSpec()
    brightness_contrast: BrightnessContrastSpec = BrightnessContrastSpec()
    blur: BlurSpec = BlurSpec()
    noise: NoiseSpec = NoiseSpec()
    perspective: PerspectiveSpec = PerspectiveSpec()
    clahe: ClaheSpec = ClaheSpec()
    extra: tuple[ExtraTransform, ...] = ()


# ------------------------------------------------------------------------------------ synthesis
class SynthesisSpec(StrictModel):
    """Defects pasted onto good images (CutPaste / scar / Perlin noise) with their masks."""

    # auto: only when the line has no real defect images; always: also next to real ones; off.
    mode: Literal["auto", "always", "off"] = "auto"
    per_image: int = Field(default=2, ge=1, le=32)  # synthetic defects per good training image
    methods: tuple[Literal["cutpaste", "scar", "perlin"], ...] = Field(
        default=("cutpaste", "scar", "perlin"), min_length=1)
    area: Range = (0.002, 0.03)  # defect area, fraction of the image
    # auto: paste only on the part (foreground found by Otsu), falling back to the whole image.
    placement: Literal["auto", "anywhere"] = "auto"
    # Where the gate's judging defects come from when the line has no real defect (never the training
    # defects themselves): other_family - CutPaste/scar vs Perlin blobs (with every method configured,
    # training pastes the CutPaste family and the gate judges on Perlin); other_seed - the training
    # methods, drawn from an independent seed (weaker: the gate then sees the family it trained on).
    judge: Literal["other_family", "other_seed"] = "other_family"

    @field_validator("area")
    @classmethod
    def _area(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not (value[0] > 0.0 and value[1] <= 0.25):
            msg = "area must lie within (0, 0.25] of the image"
            raise ValueError(msg)
        return value


# ------------------------------------------------------------------------------------ validation
class ValidationSpec(StrictModel):
    """How held-out data is chosen: stratified hold-out, or k-fold when a class is tiny."""

    split: Literal["auto", "holdout", "kfold"] = "auto"
    fraction: float = Field(default=0.25, gt=0.0, lt=0.8)  # hold-out share of each class
    folds: int = Field(default=4, ge=2, le=10)
    # auto uses k-fold when the hold-out would get fewer images than this in some class.
    min_per_class: int = Field(default=4, ge=1, le=100)


class GateSpec(StrictModel):
    """Promotion gate: the new version must not be worse than the deployed one on the same judging data
    (outer folds that chose nothing), and must not let more than ``max_escape`` of the defects through."""

    auroc_tolerance: float = Field(default=0.0, ge=0.0, le=1.0)  # allowed AUROC drop
    f1_tolerance: float = Field(default=0.0, ge=0.0, le=1.0)  # allowed drop of F1 at the calibrated threshold
    escape_tolerance: float = Field(default=0.0, ge=0.0, le=1.0)  # allowed rise of the escape rate
    # Allowed rise of the false-reject rate; null = not gated (calibration sets it by design).
    false_reject_tolerance: float | None = Field(default=None, ge=0.0, le=1.0)
    min_auroc: float = Field(default=0.5, ge=0.0, le=1.0)  # absolute floor
    # The line's limit on escapes (defects passed as OK) at the candidate's operating threshold, on the
    # judging data: a candidate above it is refused whatever its AUROC and whatever the deployed one does.
    max_escape: float = Field(default=0.2, ge=0.0, le=1.0)


# ------------------------------------------------------------------------------------ heads
class PatchHeadSpec(StrictModel):
    hidden: int = Field(default=64, ge=4, le=4096)
    memory_size: int = Field(default=1024, ge=64, le=65536)  # coreset of good patch tokens per layer
    weight: float = Field(default=1.0, ge=0.0)


class ClipAdapterSpec(StrictModel):
    reduction: int = Field(default=4, ge=1, le=64)  # bottleneck = embedding dim / reduction
    ratio: float = Field(default=0.2, ge=0.0, le=1.0)  # residual blend of adapted and original features
    weight: float = Field(default=1.0, ge=0.0)


class TipAdapterSpec(StrictModel):
    alpha: float = Field(default=1.0, ge=0.0, le=100.0)  # weight of the cache logits
    beta: float = Field(default=5.5, gt=0.0, le=100.0)  # sharpness of the cache affinity
    weight: float = Field(default=1.0, ge=0.0)


class CoOpSpec(StrictModel):
    context: int = Field(default=4, ge=1, le=32)  # learnable context tokens
    init: str | None = "a photo of a"  # initial context words (their token count must equal context)
    weight: float = Field(default=1.0, ge=0.0)
    # Each CoOp step runs the text transformer forward and backward: cap its epochs separately.
    max_epochs: int | None = Field(default=10, ge=1, le=10000)  # null = training.max_epochs
    lr: float | None = Field(default=5e-3, gt=0.0, le=1.0)  # null = training.lr


# ------------------------------------------------------------------------------------ training
class TrainingSpec(StrictModel):
    """Few-shot adapter training of one line (``inspector train``)."""

    heads: tuple[HeadName, ...] = Field(default=("patch", "clip_adapter", "tip_adapter", "coop"), min_length=1)
    # How the trained heads are combined into the line's adapter: each head's weight scaled by how
    # far its held-out AUROC beats chance beyond one standard error (a chance-level head gets 0),
    # or the fixed weights alone.
    combine: Literal["validation", "fixed"] = "validation"
    patch: PatchHeadSpec = PatchHeadSpec()
    clip_adapter: ClipAdapterSpec = ClipAdapterSpec()
    tip_adapter: TipAdapterSpec = TipAdapterSpec()
    coop: CoOpSpec = CoOpSpec()

    max_epochs: int = Field(default=20, ge=1, le=10000)
    lr: float = Field(default=1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(default=1e-4, ge=0.0, le=1.0)
    batch_size: int = Field(default=16, ge=1, le=4096)
    patience: int = Field(default=4, ge=0, le=1000)  # early stopping: epochs without improvement; 0 = off
    seed: int = Field(default=0, ge=0)
    deterministic: bool = True

    # Lightning passthrough: CPU/GPU auto-selection, mixed precision where available, DDP.
    accelerator: str = "auto"  # auto | cpu | gpu | cuda | mps
    devices: int | str | tuple[int, ...] = "auto"
    strategy: str = "auto"  # e.g. ddp for a multi-GPU / multi-node run
    num_nodes: int = Field(default=1, ge=1)
    # auto: bf16-mixed (or 16-mixed) on a GPU, 32-true on CPU.
    precision: Literal["auto", "32-true", "16-mixed", "bf16-mixed", "64-true"] = "auto"
    # CPU threads while the heads train and validate (encoding keeps the process setting); null =
    # torch's setting. 1 leaves the other cores to a station that inspects meanwhile, and is the
    # faster choice on a CPU that other processes keep busy (OpenMP barriers stall there).
    threads: int | None = Field(default=None, ge=1, le=256)

    min_good_images: int = Field(default=4, ge=2, le=10000)
    augment: AugmentSpec = AugmentSpec()
    synthesis: SynthesisSpec = SynthesisSpec()
    validation: ValidationSpec = ValidationSpec()
    gate: GateSpec = GateSpec()
    # After training, deploy the new version when the gate passes (the CLI can override).
    auto_promote: bool = True

    @field_validator("heads")
    @classmethod
    def _unique_heads(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            msg = f"heads {list(value)} repeat a name"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _some_weight(self) -> TrainingSpec:
        if not any(getattr(self, h).weight > 0 for h in self.heads):
            msg = f"every trained head {list(self.heads)} has weight 0; give at least one a positive weight"
            raise ValueError(msg)
        return self
