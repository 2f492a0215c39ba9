"""Threshold proposals from production: what enters the sample, when a proposal is made, restart, apply / dismiss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from inspector.config import parse_station_config
from inspector.decision.calibrate import TAIL_SHAPE
from inspector.decision.result import InspectionResult
from inspector.station.recalibration import EVENT_PROPOSED, ProductionSampler, ProposalBook, ThresholdProposal
from inspector.station.results import ModelStamp, StationResult, part_verdict

SHAPE = TAIL_SHAPE  # production parts drawn from the tail family the fit assumes


def _config(after_parts: int = 300, margin: float = 0.5, target: float = 0.05):
    return parse_station_config({"lines": [{
        "name": "ring", "object_name": "metal ring", "model": {"name": "ViT-B-16", "pretrained": "random"},
        "decision": {"calibration": {"target_false_reject": target},
                     "recalibration": {"after_parts": after_parts, "margin": margin}}}]})


def _part(seq: int, score: float, threshold: float, *, version: str = "base", fault: bool = False) -> StationResult:
    if fault:
        return StationResult(seq, f"P{seq}", 0, "ring", part_verdict(f"P{seq}", seq, None, "camera lost", ()),
                             "plc", {}, model=ModelStamp(version=version))
    result = InspectionResult("NG" if score >= threshold else "OK", score, threshold,
                              "anomaly" if score >= threshold else None, None, None, (0, 0, 8, 8))
    return StationResult(seq, f"P{seq}", 0, "ring", part_verdict(f"P{seq}", seq, result, None, ()), "plc", {},
                         result=result, model=ModelStamp(version=version))


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def __call__(self, kind: str, who: str, what: str, old: object = "", new: object = "") -> None:
        self.seen.append((kind, who, what, old, new))


def _feed(sampler: ProductionSampler, scores: np.ndarray, threshold: float, start: int = 1, **kw) -> None:
    for i, s in enumerate(scores):
        sampler(_part(start + i, float(s), threshold, **kw))


def test_live_threshold_too_high_gets_a_proposal_from_ok_parts_only(tmp_path: Path) -> None:
    cfg, events = _config(), Events()
    sampler = ProductionSampler(tmp_path, cfg.line, events)
    goods = stats.genextreme.rvs(-SHAPE, size=300, random_state=np.random.default_rng(0))
    live = float(stats.genextreme.ppf(0.999, -SHAPE))  # rejects 0.1 % of good parts: escapes sit below it
    scores = goods.copy()
    scores[::25] = live + 4.0  # 12 defective parts judged NG: never in the sample
    _feed(sampler, scores[:299], live)
    assert not (tmp_path / ".threshold-proposals.json").exists() or sampler.book.proposal("ring") is None
    sampler(_part(300, float(scores[299]), live))
    proposal = sampler.book.proposal("ring")
    assert proposal is not None and proposal.status == "pending" and proposal.parts == 300 and proposal.ng == 12
    cutoff = live - 0.5
    assert proposal.used == int(np.sum(scores < cutoff)) and proposal.cutoff == pytest.approx(cutoff)
    true_false_reject = float(stats.genextreme.sf(proposal.proposed, -SHAPE))  # 300 parts: a few points' noise
    assert 0.02 < true_false_reject < 0.08 and proposal.proposed < live
    assert proposal.live_interval[1] < 0.05 and proposal.interval[0] < 0.05 < proposal.interval[1]
    kinds = [e[0] for e in events.seen]
    assert kinds == [EVENT_PROPOSED] and "proposed" in events.seen[0][2]


def test_consistent_threshold_is_checked_without_an_event(tmp_path: Path) -> None:
    cfg, events = _config(), Events()
    sampler = ProductionSampler(tmp_path, cfg.line, events)
    goods = stats.genextreme.rvs(-SHAPE, size=300, random_state=np.random.default_rng(1))
    _feed(sampler, goods, float(stats.genextreme.ppf(0.95, -SHAPE)))  # the live threshold is right
    proposal = sampler.book.proposal("ring")
    assert proposal is not None and proposal.status == "consistent" and not proposal.actionable
    assert events.seen == [] and "consistent with the target" in proposal.describe()


def test_faults_margin_and_a_new_version_or_threshold_start_a_new_sample(tmp_path: Path) -> None:
    cfg = _config(after_parts=1000, margin=0.5)
    sampler = ProductionSampler(tmp_path, cfg.line, Events())
    sampler(_part(1, 0.2, 2.0))
    sampler(_part(2, 1.7, 2.0))  # OK but within the margin: an escape could hide there
    sampler(_part(3, 0.0, 2.0, fault=True))
    sampler(_part(4, 2.5, 2.0))  # NG
    sample = sampler._samples["ring"]
    assert list(sample.scores) == [0.2] and (sample.parts, sample.ng, sample.faults) == (4, 1, 1)
    sampler(_part(5, 0.3, 2.1))  # someone changed the live threshold: another cutoff, another sample
    assert list(sampler._samples["ring"].scores) == [0.3]
    sampler(_part(6, 0.4, 2.1, version="v1"))  # another model: another score scale
    assert sampler._samples["ring"].version == "v1" and list(sampler._samples["ring"].scores) == [0.4]


def test_sample_survives_a_restart_and_off_means_off(tmp_path: Path) -> None:
    cfg = _config(after_parts=1000)
    sampler = ProductionSampler(tmp_path, cfg.line, Events())
    _feed(sampler, np.linspace(0.0, 1.0, 120), 2.0)
    sampler.flush()
    again = ProductionSampler(tmp_path, cfg.line, Events())
    assert list(again._samples["ring"].scores) == pytest.approx(list(np.linspace(0.0, 1.0, 120)), abs=1e-6)
    assert again._samples["ring"].parts == 120
    off = ProductionSampler(tmp_path / "off", _config(after_parts=0).line, Events())
    _feed(off, np.zeros(10), 2.0)
    assert off._samples == {}


def test_damaged_proposal_file_starts_afresh(tmp_path: Path) -> None:
    (tmp_path / ".threshold-proposals.json").write_text("{not json")
    sampler = ProductionSampler(tmp_path, _config().line, Events())
    assert sampler._samples == {} and sampler.book.proposal("ring") is None


def test_decide_needs_a_pending_proposal(tmp_path: Path) -> None:
    book = ProposalBook(tmp_path)
    with pytest.raises(LookupError, match="no pending threshold proposal"):
        book.decide("ring", "applied", "Dana", "")
    proposal = ThresholdProposal("ring", "base", 3.0, 2.0, 0.05, (0.04, 0.06), 0.004, (0.003, 0.005), 1000, 900, 5,
                                 0, 2.5, "2026-12-06T10:00:00+00:00")
    book.update("ring", proposal=proposal.to_json())
    decided = book.decide("ring", "dismissed", "Dana", "line runs a special batch")
    assert decided.status == "dismissed" and decided.decided_by == "Dana"
    stored = json.loads((tmp_path / ".threshold-proposals.json").read_text())["lines"]["ring"]["proposal"]
    assert stored["status"] == "dismissed" and stored["why"] == "line runs a special batch"
    with pytest.raises(LookupError):
        book.decide("ring", "applied", "Dana", "")


@pytest.mark.integration
def test_handle_applies_and_dismisses_through_the_one_threshold_path(tmp_path: Path, text_cache_dir: Path) -> None:
    """Apply: live threshold, YAML, threshold book and a threshold_change event; dismiss: an event with the reason."""
    from inspector.station.handle import StationHandle
    from tests.conftest import audit_events
    from tests.station.conftest import write_handle_station

    handle = StationHandle(write_handle_station(tmp_path, text_cache_dir))
    try:
        with pytest.raises(LookupError, match="no pending"):
            handle.apply_threshold_proposal("Dana")
        book = ProposalBook(handle.log_dir)
        proposal = ThresholdProposal(handle.line, "base", 3.0, 2.25, 0.05, (0.04, 0.06), 0.004, (0.003, 0.005), 1000,
                                     900, 5, 0, 2.5, "2026-12-06T10:00:00+00:00")
        book.update(handle.line, proposal=proposal.to_json())
        assert handle.threshold_proposal() == proposal
        record = handle.apply_threshold_proposal("Dana", "checked against the shift's rejects")
        assert record.method == "production" and record.value == 2.25 and record.interval == (0.04, 0.06)
        assert handle.inspector is None or handle.inspector.threshold == 2.25
        assert handle.threshold_record().value == 2.25 and handle.line_config().decision.threshold == 2.25
        assert handle.threshold_proposal().status == "applied"
        book.update(handle.line, proposal={**proposal.to_json(), "proposed": 2.5})
        handle.dismiss_threshold_proposal("Erik", "special batch today")
        assert handle.threshold_record().value == 2.25
    finally:
        handle.shutdown()
    events = [e for e in audit_events(handle.log_dir) if e["kind"].startswith("threshold")]
    assert [e["kind"] for e in events][-2:] == ["threshold_change", "threshold_proposal_dismissed"]
    change, dismissed = events[-2], events[-1]
    assert change["who"] == "Dana" and "production" in change["what"] and json.loads(change["new"])["value"] == 2.25
    assert dismissed["who"] == "Erik" and "special batch today" in dismissed["what"]


@pytest.mark.slow
@pytest.mark.integration
def test_running_station_checks_its_threshold_from_its_own_parts(engines_for, tmp_path: Path,
                                                                 text_cache_dir: Path) -> None:
    """A real loop: after ``after_parts`` parts the book holds a check made of exactly the OK-with-margin ones."""
    from inspector.station.loop import StationLoop
    from tests.conftest import audit_events
    from tests.station.conftest import tiny_station_dict

    data = tiny_station_dict(tmp_path, text_cache_dir, trigger={"mode": "free_run", "rate_hz": 200})
    data["lines"][0]["decision"] = {"recalibration": {"after_parts": 200, "margin": 0.5}}
    station = parse_station_config(data)
    loop = StationLoop(station, engines=engines_for(station), max_parts=200)
    seen: list[StationResult] = []
    loop.add_observer(seen.append, queue_size=256, policy="block")
    with loop:
        assert loop.wait_done(120)
    used = [r for r in seen if r.result is not None and r.result.verdict == "OK"
            and r.result.score < r.result.threshold - 0.5]
    proposal = ProposalBook(tmp_path / "logs").proposal("ring")
    assert proposal is not None and proposal.parts == 200 and proposal.used == len(used) >= 100
    assert proposal.ng == sum(r.verdict.verdict == "NG" and r.fault is None for r in seen)
    assert proposal.live == pytest.approx(seen[0].result.threshold)
    proposed = [e for e in audit_events(tmp_path / "logs") if e["kind"] == EVENT_PROPOSED]
    assert len(proposed) == (proposal.status == "pending")
