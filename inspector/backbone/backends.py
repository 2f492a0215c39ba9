"""Where the backbone pass runs: torch, or OpenVINO on the CPU (``model.backend``).

Only the dense feature extractor moves; heads, fusion and maps stay in torch. The OpenVINO model
is converted from the extractor itself (``torch.export`` -> ``openvino.convert_model``), so it
computes exactly the same outputs, and is compiled once per (architecture, weights digest, input
size, layers, precision, library versions) into an on-disk cache. A cache entry is trusted only
when its manifest matches that key and the files still hash to what was written; anything else
(stale, truncated, edited) is rebuilt, never run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from inspector.backbone.dense import DenseFeatureExtractor, Features
from inspector.backbone.quantize import check_int8_supported, int8_key, quantize_model
from inspector.errors import InspectorError
from inspector.files import sha256_file

logger = logging.getLogger(__name__)

Backend = Literal["torch", "openvino"]
CACHE_FORMAT = 1
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
MODEL_XML, MODEL_BIN, MANIFEST = "model.xml", "model.bin", "manifest.json"


def openvino_available() -> bool:
    """True when the ``openvino`` package is installed (``pip install 'clip-inspector[openvino]'``)."""
    return importlib.util.find_spec("openvino") is not None


def resolve_backend(spec: str, device: torch.device) -> Backend:
    """``model.backend`` -> the backend that runs: ``auto`` is OpenVINO on the CPU when installed, else torch."""
    if spec == "torch":
        return "torch"
    if spec == "auto":
        return "openvino" if device.type == "cpu" and openvino_available() else "torch"
    if spec != "openvino":
        msg = f"model.backend {spec!r}: use torch, openvino or auto"
        raise InspectorError(msg)
    if device.type != "cpu":
        msg = (f"model.backend is 'openvino' but model.device is {device.type!r}: the OpenVINO backend runs on the "
               "CPU; set model.device to 'cpu', or model.backend to 'torch' (or 'auto') for the GPU")
        raise InspectorError(msg)
    if not openvino_available():
        msg = ("model.backend is 'openvino' but the openvino package is not installed: "
               "pip install 'clip-inspector[openvino]', or set model.backend to 'torch' or 'auto'")
        raise InspectorError(msg)
    return "openvino"


class FlatExtractor(nn.Module):
    """The extractor with a flat tuple output (global, dense, patches by layer), as export formats need."""

    def __init__(self, extractor: DenseFeatureExtractor) -> None:
        super().__init__()
        self.extractor = extractor

    def output_names(self) -> list[str]:
        if not self.extractor.is_vit:
            return ["global_emb"]
        return ["global_emb", "dense", *[f"patches_{layer}" for layer in self.extractor.layers]]

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        f = self.extractor(images)
        if f.dense is None:
            return (f.global_emb,)
        return (f.global_emb, f.dense, *[f.patches[layer] for layer in self.extractor.layers])


def unflatten(extractor: DenseFeatureExtractor, outputs: list[Tensor]) -> Features:
    """The flat outputs of :class:`FlatExtractor` (or its converted model) -> :class:`Features`."""
    if not extractor.is_vit:
        return Features(outputs[0], None, {}, extractor.grid)
    patches = dict(zip(extractor.layers, outputs[2:], strict=True))
    return Features(global_emb=outputs[0], dense=outputs[1], patches=patches, grid=extractor.grid)


def weights_digest(module: nn.Module) -> str:
    """sha256 over the module's parameters and buffers (names, shapes, dtypes, bytes): what the pass computes with."""
    h = hashlib.sha256()
    state = module.state_dict(keep_vars=False)
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def convert_openvino(extractor: DenseFeatureExtractor) -> Any:
    """``torch.export`` the extractor (dynamic batch, fixed input size) and convert it to an ``openvino.Model``."""
    import openvino as ov

    h, w = extractor.image_size
    flat = FlatExtractor(extractor).eval()
    example = torch.zeros(2, 3, h, w)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        program = torch.export.export(flat, (example,), dynamic_shapes=({0: batch},))
    model = ov.convert_model(program)
    model.reshape({model.input(0): ov.PartialShape([-1, 3, h, w])})
    for out, name in zip(model.outputs, flat.output_names(), strict=True):
        out.get_tensor().set_names({name})
    return model


def cache_key(extractor: DenseFeatureExtractor, model_name: str, precision: str) -> dict[str, Any]:
    """Everything the compiled model depends on; its digest names the cache entry."""
    import openvino as ov

    key = {"format": CACHE_FORMAT, "model": model_name, "weights_sha256": weights_digest(extractor),
           "image_size": list(extractor.image_size), "layers": list(extractor.layers), "precision": precision,
           "openvino": ov.get_version(), "torch": torch.__version__}
    # The DPAM dense path (zeroshot.dense) is part of the graph; named only when it differs from the
    # last-block branch, so models compiled before the option keep their cache entries.
    if extractor.dense_blocks > 1:
        key["dense_blocks"] = extractor.dense_blocks
    return key


def _key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def read_entry(folder: Path, key: dict[str, Any]) -> Any | None:
    """The cached ``openvino.Model`` in ``folder`` when its manifest and files match ``key``; None otherwise."""
    import openvino as ov

    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key") != key:
            logger.warning("compiled-model cache %s is stale (built for another model/version): rebuilding", folder)
            return None
        for name in (MODEL_XML, MODEL_BIN):
            if sha256_file(folder / name) != manifest["files"][name]:
                logger.warning("compiled-model cache %s: %s does not match its manifest: rebuilding", folder, name)
                return None
        return ov.Core().read_model(folder / MODEL_XML)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        logger.warning("compiled-model cache %s is damaged (%s): rebuilding", folder, exc)
        return None


def write_model(model: Any, folder: Path, manifest: dict[str, Any]) -> None:
    """Save ``model`` (IR xml + bin) and a manifest with the files' sha256 into ``folder``, atomically."""
    import openvino as ov

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        ov.save_model(model, tmp / MODEL_XML, compress_to_fp16=False)
        manifest = {**manifest, "files": {n: sha256_file(tmp / n) for n in (MODEL_XML, MODEL_BIN)}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cached_model(key: dict[str, Any], cache_dir: Path | None, build: Callable[[], Any], what: str) -> tuple[Any, str]:
    """The model of ``key``: a valid cache entry, else ``build()`` (then cached); -> (model, how)."""
    folder = None if cache_dir is None else cache_dir / "openvino" / _key_digest(key)
    if folder is not None:
        model = read_entry(folder, key)
        if model is not None:
            return model, "cache"
    t0 = time.perf_counter()
    model = build()
    logger.info("%s %s in %.1f s", what, key["model"], time.perf_counter() - t0)
    if folder is not None:
        try:
            write_model(model, folder, {"key": key})
        except OSError as exc:  # a read-only or full cache disk costs the next start a conversion, nothing more
            logger.warning("could not cache the OpenVINO model in %s (%s): the next start converts again", folder, exc)
    return model, what


def load_or_convert(extractor: DenseFeatureExtractor, model_name: str, precision: str,
                    cache_dir: Path | None) -> tuple[Any, str]:
    """The OpenVINO model of ``extractor``, from the cache when a valid entry exists; -> (model, how)."""
    key = cache_key(extractor, model_name, precision)
    return cached_model(key, cache_dir, lambda: convert_openvino(extractor), "converted")


class OpenVINORunner:
    """Runs the extractor's pass through a compiled OpenVINO model; called like the extractor itself.

    With ``precision="int8"`` it starts on the fp32 model; :meth:`quantize` builds (or reads from the
    cache) the int8 model calibrated on the line's good parts, and :meth:`use` switches between the two:
    the engine runs int8 only after it has checked that int8 agrees with fp32 (engine/int8.py).
    """

    backend: Backend = "openvino"

    def __init__(self, extractor: DenseFeatureExtractor, model_name: str, precision: str,
                 cache_dir: Path | None, threads: int | None = None) -> None:
        import openvino as ov

        self.extractor = extractor
        self.precision = precision
        self._cache_dir = cache_dir
        self.int8_units = check_int8_supported() if precision == "int8" else ()
        base = "fp32" if precision == "int8" else precision
        self._key = cache_key(extractor, model_name, base)
        self.model, self.source = cached_model(self._key, cache_dir, lambda: convert_openvino(extractor), "converted")
        self._config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY",
                                        "INFERENCE_PRECISION_HINT": _OV_PRECISION[base],
                                        "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
        self._core = ov.Core()
        self.compiled = self._core.compile_model(self.model, "CPU", self._config)
        self._compiled = {"fp32": self.compiled}
        self._request = {"fp32": self.compiled.create_infer_request()}
        self._calibration = ""
        self.mode = "fp32"
        self._lock = threading.Lock()  # one infer request per model: one pass at a time

    def quantize(self, calibration: np.ndarray) -> str:
        """Build or load the int8 model calibrated on ``calibration`` ([N, 3, H, W]); -> "cache" / "quantized"."""
        if self.precision != "int8":
            msg = f"the backbone runs {self.precision}, not int8: set model.precision to int8 to quantize it"
            raise InspectorError(msg)
        key = int8_key(self._key, calibration)
        if key["calibration_sha256"] == self._calibration and "int8" in self._compiled:
            return "memory"
        model, how = cached_model(key, self._cache_dir, lambda: quantize_model(self.model, calibration), "quantized")
        compiled = self._core.compile_model(model, "CPU", self._config)
        with self._lock:
            self._compiled["int8"] = compiled
            self._request["int8"] = compiled.create_infer_request()
            self._calibration = key["calibration_sha256"]
            if self.mode == "int8":  # a new calibration replaces the model that runs only through use()
                self.mode = "fp32"
        return how

    def use(self, mode: str) -> None:
        """Run ``fp32`` or (after :meth:`quantize`) ``int8`` from the next pass on."""
        if mode not in self._compiled:
            msg = f"no {mode} model to run: quantize first (the fp32 and quantized int8 models are the choices)"
            raise InspectorError(msg)
        with self._lock:
            self.mode = mode

    def __call__(self, images: Tensor) -> Features:
        data = images.detach().float().cpu().contiguous().numpy()
        with self._lock:
            compiled, request = self._compiled[self.mode], self._request[self.mode]
            result = request.infer({0: data}, share_inputs=True)
            outputs = [torch.from_numpy(result[out].copy()) for out in compiled.outputs]
        return unflatten(self.extractor, outputs)


class TorchRunner:
    """The torch extractor, as it is or through ``torch.compile`` (``model.compile``)."""

    backend: Backend = "torch"
    source = "torch"

    def __init__(self, extractor: DenseFeatureExtractor, compile_mode: str = "off") -> None:
        self.extractor = extractor
        self.compile_mode = compile_mode
        self._fn: Callable[[Tensor], Features] = extractor
        if compile_mode != "off":
            # Fixed input size: one static graph per batch size (the engine's batches are 1..ENCODE_BATCH).
            self._fn = torch.compile(extractor, mode=compile_mode, dynamic=False)
        # CUDA graphs replay into the same output buffers: copy them out before the next frame overwrites them.
        self._graphs = compile_mode in ("reduce-overhead", "max-autotune") and next(
            extractor.parameters()).device.type == "cuda"

    def __call__(self, images: Tensor) -> Features:
        if not self._graphs:
            return self._fn(images)
        torch.compiler.cudagraph_mark_step_begin()
        f = self._fn(images)
        return Features(f.global_emb.clone(), None if f.dense is None else f.dense.clone(),
                        {k: v.clone() for k, v in f.patches.items()}, f.grid)


def make_runner(extractor: DenseFeatureExtractor, spec: str, *, model_name: str, precision: str,
                cache_dir: Path | None, compile_mode: str = "off") -> TorchRunner | OpenVINORunner:
    """The runner ``model.backend`` asks for (``auto`` resolved against the extractor's device)."""
    device = next(extractor.parameters()).device
    if resolve_backend(spec, device) == "torch":
        if precision == "int8":
            msg = ("model.precision int8 runs on the OpenVINO backend on the CPU, and this line's backend resolved to "
                   f"torch (device {device.type}): set model.precision to fp32 (or bf16/fp16 on a GPU)")
            raise InspectorError(msg)
        return TorchRunner(extractor, compile_mode)
    return OpenVINORunner(extractor, model_name, precision, cache_dir)

