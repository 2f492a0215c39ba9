"""QA's stand-alone History viewer (`inspector history`): no station, no torch until a search by words, read-only."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from inspector.audit.folder import index_dir
from inspector.backbone.registry import TINY_MODEL
from tests.audit.readonly import PYTHON, listing, read_only, run_bound
from tests.audit.test_history import write_log

TINY_LABEL = f"{TINY_MODEL} (untrained backbone)"  # the records' model field of the tiny random backbone
DIM = 16
TINY_DIM = 64  # embed_dim of inspector/backbone/model_configs/inspector-tiny-vit.json
PROBE = ("import sys\nimport gui.views.history\nfrom gui.viewer import main\n"
         "code = main(sys.argv[1:] + ['--exit-after-load'])\n"
         "heavy = sorted(m for m in ('torch', 'open_clip', 'inspector.station', 'inspector.engine')\n"
         "               if m in sys.modules)\n"
         "print('HEAVY', ','.join(heavy))\nsys.exit(code)\n")


@pytest.mark.slow
def test_viewer_on_a_read_only_log_imports_no_station_and_writes_nothing(tmp_path):
    """Opened offscreen on a read-only log without an index: first page shown, torch / open_clip never imported."""
    folder, cache = tmp_path / "logs", tmp_path / "cache"
    write_log(folder, TINY_LABEL, DIM)
    shutil.rmtree(index_dir(folder))  # an old log: the viewer indexes it into the user's cache
    before = listing(folder)
    with read_only(folder):
        res = run_bound([PYTHON, "-c", PROBE, str(folder)], env={"XDG_CACHE_HOME": str(cache)})
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    lines = res.stdout.splitlines()
    assert lines[-1] == "HEAVY ", res.stderr[-3000:]
    assert lines[-2].startswith("12 of 12 records · 7 OK · 4 NG · 1 not inspected")
    assert listing(folder) == before
    assert list(cache.rglob("index.sqlite"))


def _open(qtbot, folder, model_dir=None):
    from gui.viewer import HistoryWindow

    window = HistoryWindow(folder, model_dir)
    qtbot.addWidget(window)
    window.resize(1600, 960)
    window.show()
    with qtbot.waitSignal(window.view.loaded, timeout=30_000):
        window.view.ensure_loaded()
    return window


def test_viewer_browses_exports_and_searches(qtbot, tmp_path):
    folder = tmp_path / "logs"
    embeddings = write_log(folder, TINY_LABEL, TINY_DIM)  # the width of the tiny backbone's embeddings
    window = _open(qtbot, folder)
    view = window.view
    try:
        assert "read-only" in window.windowTitle()
        assert view.feedback.isHidden() and view.file_button.isHidden()  # no operator feedback, no ROI to apply
        assert view.model.rowCount() == 12 and view.model.row_at(0).record["part_id"] == "P0011"
        view.verdict.setCurrentText("NG")
        assert {r.verdict_class for r in view.shown_rows()} == {"NG"} and len(view.shown_rows()) == 4
        out = tmp_path / "ng.csv"
        assert view.export(out) == 4
        with out.open() as fh:
            assert [r["verdict"] for r in csv.DictReader(fh)] == ["NG"] * 4
        view.table.selectRow(0)
        assert view.view.has_frame()
        picked = view.model.row_at(0).record["part_id"]
        with qtbot.waitSignal(view.searched, timeout=30_000):
            view.like_button.click()  # the stored embedding: no model needed
        assert view.shown_rows()[0].record["part_id"] == picked
        assert not window.queries.ready()  # that search loaded no model

        # By words: the records' backbone loads on first use, and the view says so while it does.
        view.verdict.setCurrentText("(all)")
        view.query.setText("scratch near the hole")
        with qtbot.waitSignal(view.searched, timeout=60_000) as hit:
            view.text_button.click()
            assert "loading model" in view.summary.text() and not view.text_button.isEnabled()
        assert window.queries.ready() and view.text_button.isEnabled()
        from inspector.tuning.search import BackboneQuery

        q = BackboneQuery(TINY_LABEL).embed_text("scratch near the hole")
        sims = [s for _, s in hit.args[0].ranked]
        assert len(sims) == 11 and sims == sorted(sims, reverse=True)  # the FAULT has no embedding
        best = int(np.argmax(embeddings[:11] @ q / np.linalg.norm(embeddings[:11], axis=1)))
        assert view.shown_rows()[0].record["part_id"] == f"P{best:04d}"
        view.search_image_file(tmp_path / "part.png")  # offered only in the station GUI: says why
        assert "region of interest" in window.status.text()
    finally:
        window.close()


def test_search_by_words_without_the_weights_says_what_is_missing(qtbot, tmp_path):
    folder = tmp_path / "logs"
    write_log(folder, "ViT-B-16/laion2b_s34b_b88k sha256:1a2b3c4d", DIM)
    window = _open(qtbot, folder, model_dir=tmp_path / "models")
    view = window.view
    try:
        view.query.setText("scratch")
        view.text_button.click()
        qtbot.waitUntil(lambda: view._worker is None, timeout=30_000)
        assert "failed" in view.summary.text() and "not on this PC" in view.summary.text()
        assert "ViT-B-16" in (window.last_error or "") and view.text_button.isEnabled()
        assert view.model.rowCount() == 12  # the log stays browsable
    finally:
        window.close()
