"""Apply the station's camera settings to a GenICam node map, with errors an engineer can act on.

Works on any ``genicam.genapi.NodeMap``: a camera's (through harvesters) or one loaded from XML (the
tests' node-map double). Every failure is a :class:`CameraConfigError` naming the feature, the camera
model, the config key and what the camera allows (range and increment, or the enumeration entries).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from inspector.config.camera import CameraSpec, GenICamSpec
from inspector.station.source_base import CameraConfigError

_logger = logging.getLogger(__name__)

# Standard (SFNC) name first, then the names older GigE Vision cameras use for the same thing.
ALIASES = {
    "ExposureTime": ("ExposureTime", "ExposureTimeAbs"),
    "AcquisitionFrameRate": ("AcquisitionFrameRate", "AcquisitionFrameRateAbs"),
    "TriggerDelay": ("TriggerDelay", "TriggerDelayAbs"),
    "TimestampLatch": ("TimestampLatch", "GevTimestampControlLatch"),
    "TimestampLatchValue": ("TimestampLatchValue", "GevTimestampValue"),
}


def _genapi() -> Any:
    from genicam import genapi

    return genapi


def node_names(node_map: Any) -> list[str]:
    """Every feature name of a node map."""
    names = []
    for node in node_map.nodes:
        try:
            names.append(node.node.name)
        except Exception:  # a node the binding cannot name is not a feature we can set
            continue
    return names


def find(node_map: Any, name: str) -> Any | None:
    """The node ``name`` (or its older alias), None when the camera has neither."""
    for candidate in ALIASES.get(name, (name,)):
        if node_map.has_node(candidate):
            node = node_map.get_node(candidate)
            if _genapi().is_implemented(node.node):
                return node
    return None


def read(node_map: Any, name: str, default: Any = None) -> Any:
    """A feature's value, or ``default`` when the camera lacks it or cannot read it now."""
    node = find(node_map, name)
    if node is None:
        return default
    try:
        return node.value if _genapi().is_readable(node.node) else default
    except Exception:
        return default


def model_name(node_map: Any, fallback: str = "camera") -> str:
    return str(read(node_map, "DeviceModelName") or fallback)


def allowed(node: Any) -> str:
    """What a node accepts, in words: entries, or [min, max] with increment and unit."""
    kind = type(node).__name__
    try:
        if kind == "IEnumeration":
            entries = [e.symbolic for e in node.entries if _genapi().is_available(e.node)]
            return "one of " + ", ".join(entries or list(node.symbolics))
        if kind in ("IInteger", "IFloat"):
            unit = f" {node.unit}" if getattr(node, "unit", "") else ""
            inc = ""
            if kind == "IInteger" and node.inc != 1:
                inc = f" in steps of {node.inc}"
            return f"{node.min:g} to {node.max:g}{unit}{inc}"
        if kind == "IBoolean":
            return "true or false"
    except Exception:  # a range that cannot be read right now (a selector state) is no reason to hide the error
        return "(range not readable)"
    return kind


def set_feature(node_map: Any, name: str, value: Any, *, key: str, model: str) -> Any:
    """Set ``name`` (or its alias) to ``value``; returns the value the camera holds afterwards."""
    node = find(node_map, name)
    where = f"(camera.genicam.{key})"
    if node is None:
        close = difflib.get_close_matches(name, node_names(node_map), n=3, cutoff=0.6)
        hint = f"; similar features: {', '.join(close)}" if close else ""
        msg = f"camera {model} has no feature {name} {where}: remove the setting or pick a camera that has it{hint}"
        raise CameraConfigError(msg)
    genapi = _genapi()
    real = node.node.name
    if not genapi.is_writable(node.node):
        msg = (f"camera {model}: feature {real} is not writable now {where} (it may be locked while the camera "
               "streams, by another program, or by another setting)")
        raise CameraConfigError(msg)
    kind = type(node).__name__
    if kind == "IEnumeration" and str(value) not in node.symbolics:
        msg = f"camera {model}: {real} cannot be {value!r} {where}; it allows {allowed(node)}"
        raise CameraConfigError(msg)
    if kind in ("IInteger", "IFloat"):
        _check_range(node, value, real, where, model)
    try:
        if kind == "ICommand":
            node.execute()
            return None
        node.value = int(value) if kind == "IInteger" else float(value) if kind == "IFloat" else value
        return node.value
    except genapi.GenericException as exc:
        msg = f"camera {model}: {real} = {value!r} refused {where}: {_short(exc)}; it allows {allowed(node)}"
        raise CameraConfigError(msg) from None


def _check_range(node: Any, value: Any, name: str, where: str, model: str) -> None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        msg = f"camera {model}: {name} takes a number, not {value!r} {where}"
        raise CameraConfigError(msg) from None
    lo, hi = node.min, node.max
    off_step = type(node).__name__ == "IInteger" and node.inc > 1 and (int(number) - lo) % node.inc
    if not lo <= number <= hi or off_step or (type(node).__name__ == "IInteger" and number != int(number)):
        msg = f"camera {model}: {name} = {value!r} is out of range {where}; it allows {allowed(node)}"
        raise CameraConfigError(msg)


def _short(exc: Exception) -> str:
    return str(exc).split(" : ")[0].strip()


def configure(node_map: Any, spec: GenICamSpec, camera: CameraSpec, *, fallback_model: str = "camera"
              ) -> dict[str, Any]:
    """Apply every configured setting in a safe order; returns ``{feature: value held}``."""
    model = model_name(node_map, fallback_model)
    held: dict[str, Any] = {}

    def put(name: str, value: Any, key: str) -> None:
        held[name] = set_feature(node_map, name, value, key=key, model=model)

    def put_if_present(name: str, value: Any, key: str) -> None:
        node = find(node_map, name)
        if node is not None and _genapi().is_writable(node.node):
            put(name, value, key)

    trig = spec.trigger
    # Trigger off first: some cameras lock format and exposure features while a trigger is armed.
    if find(node_map, "TriggerMode") is not None:
        if find(node_map, "TriggerSelector") is not None:
            put_if_present("TriggerSelector", "FrameStart", "trigger.mode")
        put("TriggerMode", "Off", "trigger.mode")
    elif trig.mode != "free_run":
        put("TriggerMode", "On", "trigger.mode")  # raises: the camera has no trigger
    if spec.pixel_format is not None:
        put("PixelFormat", spec.pixel_format, "pixel_format")
    if spec.roi is not None:
        _apply_roi(node_map, spec.roi, put, put_if_present)
    if spec.exposure_us is not None:
        put_if_present("ExposureAuto", "Off", "exposure_us")
        put("ExposureTime", spec.exposure_us, "exposure_us")
    if spec.gain_db is not None:
        put_if_present("GainAuto", "Off", "gain_db")
        put("Gain", spec.gain_db, "gain_db")
    if camera.fps is not None:
        put_if_present("AcquisitionFrameRateEnable", True, "fps")
        held["AcquisitionFrameRate"] = set_feature(node_map, "AcquisitionFrameRate", camera.fps, key="fps (camera.fps)",
                                                   model=model)
    if trig.mode != "free_run":
        put("TriggerSource", "Software" if trig.mode == "software" else trig.source,
            "trigger.source" if trig.mode == "hardware" else "trigger.mode")
        if trig.mode == "hardware":
            put("TriggerActivation", trig.activation, "trigger.activation")
        if trig.delay_us is not None:
            put("TriggerDelay", trig.delay_us, "trigger.delay_us")
        put("TriggerMode", "On", "trigger.mode")
    for name, value in spec.features.items():
        put(name, value, f"features.{name}")
    _logger.info("camera %s configured: %s", model, held)
    return held


def _apply_roi(node_map: Any, roi: tuple[int, int, int, int], put: Any, put_if_present: Any) -> None:
    x, y, w, h = roi
    # Offsets to 0 first, so the new width / height fit whatever the previous ROI was; then the offsets.
    for axis, offset in (("OffsetX", x), ("OffsetY", y)):
        if offset == 0:
            put_if_present(axis, 0, "roi")
        elif find(node_map, axis) is not None:
            put(axis, 0, "roi")
        else:
            put(axis, offset, "roi")  # raises: the camera cannot offset its ROI
    put("Width", w, "roi")
    put("Height", h, "roi")
    if x:
        put("OffsetX", x, "roi")
    if y:
        put("OffsetY", y, "roi")


@dataclass(frozen=True)
class FeatureRange:
    """A numeric feature as the camera holds it now (for sliders)."""

    name: str  # the camera's name for it (ExposureTime or ExposureTimeAbs, ...)
    value: float
    low: float
    high: float
    unit: str
    writable: bool


def feature_range(node_map: Any, name: str) -> FeatureRange | None:
    """``name`` (or its alias) with its current range; None when the camera lacks it or it is not numeric."""
    node = find(node_map, name)
    if node is None or type(node).__name__ not in ("IInteger", "IFloat"):
        return None
    genapi = _genapi()
    try:
        return FeatureRange(node.node.name, float(node.value), float(node.min), float(node.max),
                            str(getattr(node, "unit", "") or ""), bool(genapi.is_writable(node.node)))
    except genapi.GenericException:
        return None


def latch_timestamp(node_map: Any) -> int | None:
    """The camera's current time in ticks via TimestampLatch, None when the camera cannot latch it."""
    cmd, value = find(node_map, "TimestampLatch"), find(node_map, "TimestampLatchValue")
    if cmd is None or value is None:
        return None
    try:
        cmd.execute()
        return int(value.value)
    except Exception:
        return None


def summary(node_map: Any, names: Iterable[str] = ("DeviceVendorName", "DeviceModelName", "DeviceSerialNumber",
                                                    "PixelFormat", "Width", "Height", "OffsetX", "OffsetY",
                                                    "ExposureTime", "Gain", "AcquisitionFrameRate", "TriggerMode",
                                                    "TriggerSource")) -> dict[str, Any]:
    """Features as the camera holds them now (those it has and can read)."""
    out = {}
    for name in names:
        value = read(node_map, name)
        if value is not None:
            out[name] = value
    return out
