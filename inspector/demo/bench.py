"""`inspector bench`: the per-frame budget of the core against the bare backbone, in one run.

Both figures come from the same process, model architecture, input size and device, so their
ratio is meaningful on a noisy machine. Frames are synthetic ring parts; weights are whatever
``pretrained`` names (``random`` everywhere in CI).
"""

from __future__ import annotations

import gc
import json
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import open_clip
import torch

from inspector.backbone.loading import LoadedBackbone, load_backbone, resolve_device
from inspector.config import LineConfig, ModelSpec, PromptSpec, ZeroShotSpec
from inspector.demo.parts import PartGenerator
from inspector.engine import Inspector
from inspector.text.embeddings import TextEmbeddingCache

FRAME_SIZE = (256, 256)


@dataclass
class BenchConfig:
    model: str = "ViT-B-16"
    pretrained: str = "random"
    image_size: int | None = None
    shots: int = 4
    device: str = "cpu"
    frames: int = 30
    warmup: int = 3
    batch: int = 1
    precision: str = "fp32"
    feature_layers: tuple[int | float, ...] = (0.5, 0.75)  # model.feature_layers (fractions of the depth)
    threads: int | None = None
    backend: str = "torch"  # model.backend: torch | openvino | auto
    compile: str = "off"  # model.compile: off | default | reduce-overhead | max-autotune (torch backend)
    # False: one cold start only (no warm start, no changeover) - for sweeps that only need per-frame figures.
    measure_startup: bool = True
    # > 0: the mutual head on, its buffer filled with this many synthetic OK parts (issue #13).
    mutual_buffer: int = 0
    # The line's zeroshot section (dense: last_block | dpam, dpam_blocks, map_pool); {} = its defaults.
    zeroshot: dict[str, object] = field(default_factory=dict)


@dataclass
class BenchResult:
    model: str
    image_size: int
    shots: int
    batch: int
    device: str
    precision: str
    frames: int
    backbone_p50_ms: float
    backbone_p99_ms: float
    end_to_end_p50_ms: float
    end_to_end_p99_ms: float
    ratio_p50: float
    frames_per_s: float
    stages_p50_ms: dict[str, float]
    stages_p99_ms: dict[str, float]
    startup_s: float | None  # warm: text and fitted-state caches present (every start after the first)
    changeover_s: float | None  # to a line fitted before (state from the disk cache)
    startup_cold_s: float
    changeover_cold_s: float | None
    peak_rss_mb: float
    peak_gpu_mb: float | None
    memory_bank_tokens: int
    memory_search_fraction_of_backbone: float | None
    torch_threads: int
    backend: str = "torch"  # the backend that ran the core (auto resolved)
    torch_backbone_p50_ms: float = float("nan")  # torch's bare encode_image, interleaved in the same run
    speedup_vs_torch_p50: float = float("nan")  # torch_backbone_p50_ms / end_to_end_p50_ms
    # Largest |fused image score (standardised heads, threshold units)| difference between this backend and
    # torch on the same frames, each fitted on the same few-shot set; 0.0 when the backend is torch.
    max_score_diff: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def cpu_name() -> str:
    """The CPU model for benchmark reports ("AMD EPYC ..."), from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _line(cfg: BenchConfig, name: str = "bench", object_name: str = "metal ring",
          backend: str | None = None) -> LineConfig:
    mutual = {}
    if cfg.mutual_buffer > 0:
        mutual = {"heads": {"mutual": 1.0}, "mutual": {"buffer": cfg.mutual_buffer, "min_parts": 1}}
    return LineConfig(
        **mutual,
        name=name,
        object_name=object_name,
        model=ModelSpec(name=cfg.model, pretrained=cfg.pretrained, device=cfg.device, image_size=cfg.image_size,
                        feature_layers=cfg.feature_layers,
                        # the torch reference of an int8 run is fp32 (int8 is the OpenVINO model's own)
                        precision="fp32" if cfg.precision == "int8" and backend == "torch" else cfg.precision,
                        backend=backend or cfg.backend,
                        compile=cfg.compile if (backend or cfg.backend) == "torch" else "off"),
        prompts=PromptSpec(defects={"scratch": "a scratch on the surface", "dent": "a dent in the metal"}),
        zeroshot=ZeroShotSpec(**cfg.zeroshot),
    )


def _timed(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return (time.perf_counter() - t) * 1000.0


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Measure startup, the bare backbone, the full core per frame, and a line changeover."""
    say = progress or (lambda _msg: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen = PartGenerator(size=FRAME_SIZE, seed=0)
    goods = [gen.good().image for _ in range(cfg.shots)]
    test_gen = PartGenerator(size=FRAME_SIZE, seed=1, stream=1, defect_rate=0.3)
    frames = [test_gen.next().image for _ in range(max(cfg.frames, 1) * cfg.batch)]

    cache = Path(tempfile.mkdtemp(prefix="inspector-bench-"))
    folder = cache / "fewshot"
    (folder / "good").mkdir(parents=True)
    for i, img in enumerate(goods):
        cv2.imwrite(str(folder / "good" / f"good_{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))

    def start(line: LineConfig, backbone: LoadedBackbone | None,
              fitted: str = "fitted") -> tuple[Inspector, LoadedBackbone, float]:
        t0 = time.perf_counter()
        backbone = backbone or load_backbone(line.model)
        inspector = Inspector(line, backbone, TextEmbeddingCache(cache / "text"))
        if goods:
            inspector.fit_folder(folder, cache / fitted)
        sync()
        return inspector, backbone, time.perf_counter() - t0

    line = _line(cfg)
    say("startup, cold: config -> ready (load backbone, encode prompts, fit references), empty caches")
    inspector, backbone, startup_cold_s = start(line, None)
    startup_s = changeover_s = changeover_cold_s = None
    if cfg.measure_startup:
        del inspector, backbone
        gc.collect()
        say("startup, warm: the same with the text and fitted-state caches of the previous start")
        inspector, backbone, startup_s = start(line, None)

    # Bare backbone: open_clip's own encode_image of the same architecture at the same input size.
    size = inspector.extractor.image_size[0]
    native = backbone.native_image_size
    bare_model = backbone.model
    if size != native:
        bare_model = open_clip.create_model(cfg.model, pretrained=None, force_image_size=size).eval().to(device)
    batch_input = inspector.prepare(frames[: cfg.batch])

    def bare() -> None:
        with torch.inference_mode(), inspector.precision_context():
            bare_model.encode_image(batch_input)

    backend = inspector.runner.backend

    def bare_backend() -> None:  # the backend's own pass (the dense extractor) on the same input
        with torch.inference_mode(), inspector.precision_context():
            inspector.runner(batch_input)

    if cfg.mutual_buffer > 0:
        say(f"mutual buffer: {cfg.mutual_buffer} synthetic OK parts")
        buffer_gen = PartGenerator(FRAME_SIZE, seed=2, defect_rate=0.0)
        parts = [inspector.mutual_tokens(inspector.encode([buffer_gen.next().image]))[0]
                 for _ in range(cfg.mutual_buffer)]
        inspector.set_mutual_bank({k: torch.from_numpy(np.stack([p[k] for p in parts])) for k in parts[0]})

    say(f"warm-up ({cfg.warmup} frames)")
    for i in range(cfg.warmup):
        bare()
        if backend != "torch":
            bare_backend()
        inspector.inspect_batch(frames[i * cfg.batch % len(frames):][: cfg.batch] or frames[: cfg.batch])

    say(f"measuring {cfg.frames} x batch {cfg.batch}: bare encode_image and the full core, interleaved")
    bare_ms, e2e_ms, backend_ms = [], [], []
    stages: dict[str, list[float]] = {}
    for i in range(cfg.frames):
        chunk = frames[i * cfg.batch : (i + 1) * cfg.batch]
        bare_ms.append(_timed(bare, sync) / cfg.batch)
        if backend != "torch":
            backend_ms.append(_timed(bare_backend, sync) / cfg.batch)
        sync()
        t = time.perf_counter()
        results = inspector.inspect_batch(chunk)
        sync()
        e2e_ms.append((time.perf_counter() - t) * 1000.0 / cfg.batch)
        for stage, ms in results[0].timings_ms.items():
            stages.setdefault(stage, []).append(ms)

    search_fraction = None
    bank = 0
    if inspector.references.fitted:
        bank = sum(int(inspector.references.memory(layer).shape[0]) for layer in inspector.references.layers)
        search_fraction = _p(stages.get("references", []), 50) / max(_p(bare_ms, 50), 1e-9)

    max_score_diff = 0.0
    if backend != "torch":
        say("scores against torch: the same line fitted and run on the torch backend, same frames")
        reference, _, _ = start(_line(cfg, backend="torch"), backbone, fitted="fitted-torch")
        ours = [r.score for c in _chunks(frames, cfg.batch) for r in inspector.inspect_batch(c)]
        theirs = [r.score for c in _chunks(frames, cfg.batch) for r in reference.inspect_batch(c)]
        max_score_diff = float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))))
        del reference

    if cfg.measure_startup:
        say("changeover: a second line on the loaded backbone, cold (nothing cached) and warm (fitted before)")
        line2 = _line(cfg, name="bench-b", object_name="metal washer")
        other, _, changeover_cold_s = start(line2, backbone)
        del other
        other, _, changeover_s = start(line2, backbone)
        del other
    gc.collect()
    shutil.rmtree(cache, ignore_errors=True)

    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024.0 if sys.platform != "darwin" else 1024.0**2)
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    torch50, e50 = _p(bare_ms, 50), _p(e2e_ms, 50)
    b50, b99 = (torch50, _p(bare_ms, 99)) if backend == "torch" else (_p(backend_ms, 50), _p(backend_ms, 99))
    return BenchResult(
        model=cfg.model, image_size=size, shots=cfg.shots, batch=cfg.batch,
        device=str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        precision=cfg.precision, frames=cfg.frames,
        backbone_p50_ms=b50, backbone_p99_ms=b99,
        end_to_end_p50_ms=e50, end_to_end_p99_ms=_p(e2e_ms, 99), ratio_p50=e50 / b50,
        frames_per_s=1000.0 / e50,
        stages_p50_ms={k: round(_p(v, 50), 3) for k, v in stages.items()},
        stages_p99_ms={k: round(_p(v, 99), 3) for k, v in stages.items()},
        startup_s=startup_s, changeover_s=changeover_s, startup_cold_s=startup_cold_s,
        changeover_cold_s=changeover_cold_s, peak_rss_mb=peak_rss, peak_gpu_mb=peak_gpu,
        memory_bank_tokens=bank, memory_search_fraction_of_backbone=search_fraction,
        torch_threads=torch.get_num_threads(),
        backend=backend, torch_backbone_p50_ms=torch50, speedup_vs_torch_p50=torch50 / e50,
        max_score_diff=max_score_diff,
        extra={"untrained_backbone": backbone.identity.untrained, "frame_size": list(FRAME_SIZE),
               "feature_layers": list(inspector.extractor.layers),  # resolved 0-based blocks
               "mutual_buffer": cfg.mutual_buffer, "zeroshot": inspector.line.zeroshot.model_dump(),
               "dense_blocks": inspector.extractor.dense_blocks,
               "compile": cfg.compile,
               # model.precision int8: the agreement check's finding (int8 runs only when accepted)
               "int8_check": inspector.int8_check.as_dict() if inspector.int8_check else None,
               "mutual_fraction_of_backbone": (_p(stages["mutual"], 50) / max(b50, 1e-9)
                                               if "mutual" in stages else None)},
    )


def _chunks(frames: list[np.ndarray], size: int) -> list[list[np.ndarray]]:
    return [frames[i : i + size] for i in range(0, len(frames), size)]


def write_json(result: BenchResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result.to_json() + "\n")
