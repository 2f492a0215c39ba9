"""Every GUI change path records who, when and old -> new in the station's HDF5 log, also with the station
stopped (the window tests in test_engineer.py cover the running station): model approve / rollback,
threshold and prompt write-back, changeover."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from inspector.station.handle import StationHandle
from inspector.station.retrain import RegistryBook
from inspector.training.registry import ModelRegistry
from tests.conftest import audit_events
from tests.training.conftest import tiny_adapter

METRICS = {"gate": {"passed": True, "compared_to": "base", "reasons": []},
           "deployment": {"score_stats": [0.5, 2.0], "map_stats": None, "threshold": 1.0}}
CARD = {"backbone": {"key": "tiny|random"}, "heads": ["patch"]}


def test_stopped_station_change_paths_are_audited(station_config: Path) -> None:
    handle = StationHandle(station_config)
    ModelRegistry(handle.registry_dir, handle.line).register(tiny_adapter(), METRICS, CARD)
    book = RegistryBook(handle)
    book.approve(handle, "v1", who="Dana")
    book.rollback(handle, who="Erik")
    handle.update_line({"decision.threshold": 1.75}, who="Dana", kind="threshold", what="threshold set in the GUI")
    handle.update_line({"prompts.domain_templates": ["an X-ray of {}."]}, who="Dana", kind="prompts",
                       what="prompts edited in the GUI")
    handle.changeover("ring2", who="Olga")
    handle.shutdown()

    events = {e["kind"]: e for e in audit_events(handle.log_dir)}
    expected = {
        "model_promote": ("Dana", "base", "v1"),
        "model_rollback": ("Erik", "v1", "base"),
        "changeover": ("Olga", {"line": "ring"}, {"line": "ring2"}),
    }
    for kind, (who, old, new) in expected.items():
        event = events[kind]
        assert event["who"] == who and event["timestamp"]
        assert (event["old"], event["new"]) == ((old, new) if isinstance(old, str) else (json.dumps(old),
                                                                                           json.dumps(new)))
    threshold = events["threshold"]
    assert threshold["who"] == "Dana" and json.loads(threshold["old"]) == {"decision.threshold": None}
    assert json.loads(threshold["new"]) == {"decision.threshold": 1.75}
    prompts = events["prompts"]
    assert json.loads(prompts["old"]) == {"prompts.domain_templates": []}
    assert json.loads(prompts["new"]) == {"prompts.domain_templates": ["an X-ray of {}."]}
    saved = yaml.safe_load(station_config.read_text())["lines"][0]
    assert saved["decision"]["threshold"] == 1.75 and saved["prompts"]["domain_templates"] == ["an X-ray of {}."]
