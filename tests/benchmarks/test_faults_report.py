"""benchmarks/faults.py's report: the no-PLC scenarios show no acknowledged-lost / protocol-violation figures."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _faults_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("faults_script", REPO / "benchmarks" / "faults.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _scenario(kind: str) -> dict[str, Any]:
    return {"kind": kind, "title": f"{kind} fault", "how": "scripted", "passed": True, "repetitions": 2,
            "repetitions_passed": 2, "recovery_s": {"p50": 0.1, "max": 0.2}, "acked_lost": 0,
            "ok_without_inspection": 0, "unmatched": 0, "violations": [], "checks": {"a check": True},
            "figures": {}, "notes": [], "error": None, "seconds": 1.0, "reps": []}


def test_render_marks_the_plc_columns_of_kill_and_standby_as_not_applicable(tmp_path: Path) -> None:
    faults = _faults_module()
    res = {"date": "2026-12-06 17:00 UTC", "command": "faults.py", "config": "demo.yaml", "model": "tiny",
           "rate_hz": 20.0, "repeat": 2, "passed": True,
           "machine": {"cpu": "x86_64", "cores": 2, "system": "Linux", "python": "3.11"},
           "scenarios": [_scenario("serial"), _scenario("kill"), _scenario("standby")]}
    path = tmp_path / "faults.json"
    path.write_text(json.dumps(res), encoding="utf-8")

    assert faults.main(["--render", str(path)]) == 0

    rows = {line.split(":")[0].strip("| "): line for line in path.with_suffix(".md").read_text().splitlines()
            if line.startswith("| ") and ":" in line.split("|")[1]}
    assert rows["serial"].endswith("| 0 | 0 | 0 | 0 |")
    for kind in ("kill", "standby"):
        assert rows[kind].count("- (no PLC)") == 2, rows[kind]
    assert "without a PLC" in path.with_suffix(".md").read_text()
