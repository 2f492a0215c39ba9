"""benchmarks/faults.py in its short CI mode: every fault injected 3 times against the whole station.

One run of the script (one process, so the line is loaded once) feeds one test per fault.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.benchmarks.conftest import SMALL_MODEL, run_script

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPEAT = 3
RECOVERY_LIMIT_S = 2.0


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, dict[str, Any]]]:
    out = tmp_path_factory.mktemp("faults")
    proc, res = run_script("faults", out, "--model", SMALL_MODEL, "--repeat", str(REPEAT), timeout=900)
    return proc, {s["kind"]: s for s in res["scenarios"]}


@pytest.mark.parametrize("kind", ["serial", "camera", "disk", "kill", "standby", "checkpoint"])
def test_fault_is_survived_without_losing_or_inventing_verdicts(faults, kind: str) -> None:
    proc, scenarios = faults
    sc = scenarios[kind]
    detail = f"{sc['error']}\n{sc['checks']}\n{sc['reps']}\n{sc['violations']}\n{proc.stderr[-3000:]}"
    assert sc["error"] is None, detail
    assert sc["repetitions"] == REPEAT and sc["repetitions_passed"] == REPEAT, detail
    assert sc["acked_lost"] == 0, detail
    assert sc["ok_without_inspection"] == 0, detail
    assert sc["unmatched"] == 0 and sc["violations"] == [], detail
    assert all(sc["checks"].values()), detail
    assert sc["recovery_s"]["max"] < RECOVERY_LIMIT_S, detail
    assert sc["passed"], detail


def test_the_script_fails_when_a_scenario_fails(faults) -> None:
    proc, scenarios = faults
    assert proc.returncode == (0 if all(s["passed"] for s in scenarios.values()) else 1)
