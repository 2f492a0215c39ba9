"""int8 for the OpenVINO backend: NNCF post-training quantization on the line's own good parts.

int8 pays only where the CPU has int8 dot-product units (AVX-512 VNNI, AVX-VNNI, AMX): without them
OpenVINO emulates the int8 products and a ViT gains little (1.07x measured on an AMD EPYC without
VNNI), so ``model.precision: int8`` is refused there with a message. The quantized model is cached
like the fp32 one (backends.read_entry / write_model), its key extended by the calibration images'
digest and NNCF's version, so other good parts or another NNCF never reuse a stale entry.
Whether the int8 model may run is the engine's call (engine/int8.py): it must agree with fp32.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import InspectorError

logger = logging.getLogger(__name__)

#: Linux /proc/cpuinfo flags of x86 int8 dot-product units.
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_int8_units(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...]:
    """The CPU's int8 dot-product units (``INT8_FLAGS`` present in /proc/cpuinfo); () when none or unknown."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return tuple(f for f in INT8_FLAGS if f in flags)


def check_int8_supported(units: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The int8 units, or an error saying why ``model.precision: int8`` cannot run here and what to set."""
    if importlib.util.find_spec("nncf") is None:
        msg = ("model.precision is 'int8' but the nncf package is not installed: "
               "pip install 'clip-inspector[openvino]', or set model.precision to fp32")
        raise InspectorError(msg)
    units = cpu_int8_units() if units is None else units
    if not units:
        msg = (f"model.precision is 'int8' but this CPU ({platform.processor() or platform.machine()}) has no int8 "
               f"dot-product units ({', '.join(INT8_FLAGS)} in /proc/cpuinfo): int8 would be barely faster than "
               "fp32 here; set model.precision to fp32")
        raise InspectorError(msg)
    return units


def calibration_digest(calibration: np.ndarray) -> str:
    """sha256 of the calibration batch (shape, dtype, bytes): part of the int8 cache key."""
    data = np.ascontiguousarray(calibration, dtype=np.float32)
    h = hashlib.sha256(f"{data.shape}|{data.dtype}".encode())
    h.update(data.tobytes())
    return h.hexdigest()


def quantize_model(model: Any, calibration: np.ndarray) -> Any:
    """NNCF post-training int8 quantization of an ``openvino.Model`` on ``calibration`` ([N, 3, H, W] float32).

    Transformer preset (SmoothQuant on the MLPs' inputs, softmax and layer norms left in float): the
    calibration images are the line's good parts after the line's own preprocessing.
    """
    import nncf

    if calibration.ndim != 4 or calibration.shape[0] < 1:
        msg = f"int8 calibration needs a batch of preprocessed images [N, 3, H, W]; got shape {calibration.shape}"
        raise InspectorError(msg)
    samples = [np.ascontiguousarray(calibration[i : i + 1], dtype=np.float32) for i in range(calibration.shape[0])]
    t0 = time.perf_counter()
    quantized = nncf.quantize(model, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(samples))
    logger.info("quantized the backbone to int8 on %d good parts in %.1f s", len(samples), time.perf_counter() - t0)
    return quantized


def int8_key(fp32_key: dict[str, Any], calibration: np.ndarray) -> dict[str, Any]:
    """The cache key of the int8 model: the fp32 model's, plus the calibration images and NNCF's version."""
    import nncf

    return {**fp32_key, "precision": "int8", "calibration_sha256": calibration_digest(calibration),
            "nncf": nncf.__version__}
