"""benchmarks/soak.py in its short CI mode: the whole station for 500 parts, PLC verdicts against the audit log."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks.conftest import SMALL_MODEL, run_script

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PARTS, WINDOW = 500, 100


def test_soak_short_mode_loses_and_invents_nothing(tmp_path: Path) -> None:
    proc, res = run_script("soak", tmp_path, "--model", SMALL_MODEL, "--parts", str(PARTS), "--window", str(WINDOW),
                           "--rate", "10")
    rec = res["reconciliation"]
    detail = f"{res['checks']}\n{rec}\n{proc.stderr[-3000:]}"
    assert rec["triggered"] == rec["acked"] == rec["answered"] == rec["logged"] == PARTS, detail
    assert rec["lost"] == rec["no_result"] == 0, detail
    assert rec["unmatched"] == 0, detail
    assert rec["ok_without_inspection"] == 0, detail
    assert rec["refused"] == rec["timeouts"] == 0, detail
    assert res["sim_mismatches"] == [], detail
    assert res["log"]["seq_holes"] == 0 and res["log"]["events"].get("log_gap", 0) == 0, detail
    assert not res["station"]["drops"], detail
    assert len(res["windows"]) == PARTS // WINDOW and all(w["answered"] == WINDOW for w in res["windows"])
    assert res["rss_growth_pct_from_warm"] < 5.0, res["process"]
    assert res["process"][-1]["fds"] <= res["process"][1]["fds"], res["process"]
    assert res["passed"] and proc.returncode == 0, detail
    assert (tmp_path / "soak.md").read_text().startswith("# Soak")
