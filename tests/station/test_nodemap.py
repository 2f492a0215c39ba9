"""Camera settings onto a GenICam node map: the node-map double (real GenApi over XML) holds every SFNC
feature the station sets; errors name the feature, the camera model, the config key and the allowed range."""

from __future__ import annotations

from typing import Any

import pytest

from inspector.config.camera import CameraSpec
from inspector.station import nodemap
from inspector.station.sources import CameraConfigError
from tests.station.genicam_double import load_double


def spec(fps: float | None = None, **genicam: Any) -> CameraSpec:
    return CameraSpec.model_validate({"kind": "genicam", "fps": fps, "genicam": genicam})


def test_configure_applies_every_setting_in_order() -> None:
    nm = load_double()
    held = nodemap.configure(nm, spec(fps=50, pixel_format="BayerRG8", roi=[320, 100, 1280, 960], exposure_us=250,
                                      gain_db=6.5, trigger={"mode": "hardware", "source": "Line2",
                                                            "activation": "FallingEdge", "delay_us": 120},
                                      features={"AcquisitionFrameRateEnable": False}).genicam, spec(fps=50))
    assert held["PixelFormat"] == "BayerRG8" and (held["Width"], held["Height"]) == (1280, 960)
    assert (held["OffsetX"], held["OffsetY"]) == (320, 100)
    assert nm.get_node("ExposureAuto").value == "Off" and nm.get_node("ExposureTime").value == 250
    assert nm.get_node("GainAuto").value == "Off" and nm.get_node("Gain").value == pytest.approx(6.5)
    assert nm.get_node("AcquisitionFrameRate").value == 50
    assert nm.get_node("TriggerSelector").value == "FrameStart"
    assert (nm.get_node("TriggerMode").value, nm.get_node("TriggerSource").value) == ("On", "Line2")
    assert nm.get_node("TriggerActivation").value == "FallingEdge" and nm.get_node("TriggerDelay").value == 120
    assert nm.get_node("AcquisitionFrameRateEnable").value is False  # features: applied last, in order
    summary = nodemap.summary(nm)
    assert summary["DeviceModelName"] == "DoubleCam-2M" and summary["TriggerSource"] == "Line2"


def test_software_trigger_and_free_run() -> None:
    nm = load_double()
    nodemap.configure(nm, spec(trigger={"mode": "software"}).genicam, spec())
    assert (nm.get_node("TriggerMode").value, nm.get_node("TriggerSource").value) == ("On", "Software")
    nodemap.configure(nm, spec().genicam, spec())
    assert nm.get_node("TriggerMode").value == "Off"  # free run: a trigger left armed by a previous program is off


def test_a_new_roi_fits_whatever_the_previous_one_was() -> None:
    nm = load_double()
    nodemap.configure(nm, spec(roi=[1600, 0, 320, 240]).genicam, spec())
    nodemap.configure(nm, spec(roi=[0, 0, 1920, 1200]).genicam, spec())  # full sensor after an offset ROI
    assert (nm.get_node("Width").value, nm.get_node("OffsetX").value) == (1920, 0)


@pytest.mark.parametrize(("settings", "message"), [
    ({"exposure_us": 5e6}, r"camera DoubleCam-2M: ExposureTime = 5000000\.0 is out of range "
                           r"\(camera\.genicam\.exposure_us\); it allows 20 to 1e\+06 us"),
    ({"gain_db": 30}, r"Gain = 30(\.0)? is out of range \(camera\.genicam\.gain_db\); it allows 0 to 24 dB"),
    ({"roi": [0, 0, 1000, 480]}, r"Width = 1000 is out of range \(camera\.genicam\.roi\); it allows 64 to 1920 "
                                 r"in steps of 16"),
    ({"roi": [0, 0, 1920, 1200 + 2]}, r"Height = 1202 is out of range.*64 to 1200"),
    ({"pixel_format": "Mono12"}, r"PixelFormat cannot be 'Mono12' \(camera\.genicam\.pixel_format\); it allows one "
                                 r"of Mono8, BayerRG8, RGB8"),
    ({"trigger": {"mode": "hardware", "source": "Line7"}}, r"TriggerSource cannot be 'Line7' "
                                                           r"\(camera\.genicam\.trigger\.source\).*Line0, Line1"),
    ({"features": {"DeviceModelName": "x"}}, r"DeviceModelName is not writable now \(camera\.genicam\.features\."
                                             r"DeviceModelName\)"),
    ({"features": {"ExposureTimee": 10}}, r"camera DoubleCam-2M has no feature ExposureTimee \(camera\.genicam\."
                                          r"features\.ExposureTimee\).*similar features: ExposureTime"),
])
def test_node_map_errors_name_feature_model_key_and_range(settings: dict, message: str) -> None:
    with pytest.raises(CameraConfigError, match=message):
        nodemap.configure(load_double(), spec(**settings).genicam, spec())


def test_frame_rate_error_names_camera_fps() -> None:
    with pytest.raises(CameraConfigError, match=r"AcquisitionFrameRate = 500(\.0)? is out of range \(camera\.genicam"
                                                r"\.fps \(camera\.fps\)\); it allows 0\.1 to 120 Hz"):
        nodemap.configure(load_double(), spec(fps=500).genicam, spec(fps=500))


def test_older_gige_names_are_found_through_aliases(tmp_path) -> None:
    from tests.station.genicam_double import DOUBLE_XML

    xml = DOUBLE_XML.read_text(encoding="utf-8").replace('"ExposureTime"', '"ExposureTimeAbs"').replace(
        ">ExposureTime<", ">ExposureTimeAbs<")
    path = tmp_path / "old_gige.xml"
    path.write_text(xml, encoding="utf-8")
    nm = load_double(path)
    held = nodemap.configure(nm, spec(exposure_us=800).genicam, spec())
    assert held["ExposureTime"] == 800 and nm.get_node("ExposureTimeAbs").value == 800


def test_timestamp_latch() -> None:
    nm = load_double()
    assert nodemap.latch_timestamp(nm) == 123456789000
    assert nodemap.allowed(nm.get_node("TriggerMode")) == "one of Off, On"


def test_simulator_lacks_trigger_exposure_and_gain() -> None:
    """The GenTL simulator's own node map: the errors an engineer gets from a camera without the feature."""
    from harvesters.core import Harvester

    from inspector.station.genicam import simulator_cti

    h = Harvester()
    h.add_file(str(simulator_cti()))
    h.update()
    ia = h.create(0)
    try:
        nm = ia.remote_device.node_map
        model = h.device_info_list[0].property_dict["model"]  # the simulator has no DeviceModelName node
        for settings, feature, key in (({"exposure_us": 100}, "ExposureTime", "exposure_us"),
                                       ({"gain_db": 1}, "Gain", "gain_db"),
                                       ({"trigger": {"mode": "software"}}, "TriggerMode", "trigger.mode"),
                                       ({"roi": [16, 0, 320, 240]}, "OffsetX", "roi")):
            with pytest.raises(CameraConfigError, match=rf"camera Viky has no feature {feature} \(camera\.genicam"
                                                        rf"\.{key}\)"):
                nodemap.configure(nm, spec(**settings).genicam, spec(), fallback_model=model)
        with pytest.raises(CameraConfigError, match=r"camera Viky: Width = 2000 is out of range.*100 to 800"):
            nodemap.configure(nm, spec(roi=[0, 0, 2000, 240]).genicam, spec(), fallback_model=model)
        held = nodemap.configure(nm, spec(pixel_format="Mono8", roi=[0, 0, 640, 480]).genicam, spec(fps=25))
        assert held == {"PixelFormat": "Mono8", "Width": 640, "Height": 480, "AcquisitionFrameRate": 25.0}
        assert nodemap.latch_timestamp(nm) is None  # no timestamps on the simulator
    finally:
        ia.destroy()
        h.reset()
