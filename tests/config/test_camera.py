"""The camera section's GenICam keys: one device key, a sane ROI, defaults that keep the camera's own settings."""

from __future__ import annotations

import pytest

from inspector.config import parse_station_config
from inspector.config.camera import CameraSpec
from inspector.errors import ConfigError


def test_genicam_defaults_keep_the_cameras_settings() -> None:
    spec = CameraSpec.model_validate({"kind": "genicam"})
    g = spec.genicam
    assert g.cti == [] and g.serial is None and g.pixel_format is None and g.roi is None
    assert g.exposure_us is None and g.gain_db is None and g.features == {}
    assert (g.trigger.mode, g.trigger.source, g.trigger.activation) == ("free_run", "Line1", "RisingEdge")


@pytest.mark.parametrize(("genicam", "message"), [
    ({"serial": "1", "index": 0}, "names the device by serial and index: give one"),
    ({"roi": [0, 0, 0, 10]}, r"roi is \[x, y, width, height\]"),
    ({"roi": [-1, 0, 10, 10]}, r"roi is \[x, y, width, height\]"),
    ({"exposure_us": 0}, "greater than 0"),
    ({"trigger": {"mode": "hardwired"}}, "'free_run', 'software' or 'hardware'"),
    ({"trigger": {"late_ms": 0}}, "greater than 0"),
    ({"exposure": 100}, r"camera\.genicam\.exposure: unknown key"),
    ({"trigger": {"late_ms": 40}}, r"late_ms \(40\) must exceed the frame period .*50 ms at camera\.fps 20"),
])
def test_genicam_key_errors(genicam: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_station_config({"lines": [], "camera": {"kind": "genicam", "fps": 20, "genicam": genicam}})
