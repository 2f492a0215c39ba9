"""A read-only log folder (a read-only share, an archive copy years later) is still browsable, and nothing is
written into it: its own index when complete, else a private one built in the user's cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from inspector.audit.catalog import private_index_dir
from inspector.audit.folder import index_dir
from inspector.audit.h5log import AuditWriter
from inspector.config.log import LogSpec
from tests.audit.conftest import make_record
from tests.audit.readonly import PYTHON, listing, read_only, run_bound

SPEC = LogSpec(rotate="size", heatmap_px=8, fsync_interval_s=None)
PROBE = """
import json, sys
from pathlib import Path
from inspector.audit.catalog import open_index
from inspector.audit.index import Query
from inspector.audit.reader import AuditReader

folder = Path(sys.argv[1])
with open_index(folder) as index:
    part = index.query(Query(part_id="P000012"))[0]
    with AuditReader(folder / part["file"]) as reader:
        vec = reader.embeddings(part["row"], part["row"] + 1)[0]
    print(json.dumps({"total": index.total(), "ng": index.counts(Query())["NG"], "where": str(index.dir),
                      "events": len(index.events()), "similar_first": index.similar(vec, 3)[0][0] == part["id"]}))
"""


def write(folder: Path, seqs: range) -> None:
    with AuditWriter(folder, SPEC, embedding_dim=16) as writer:
        writer.write([make_record(s, verdict="NG" if s % 4 == 0 else "OK") for s in seqs])
        writer.log_event("threshold_change", "qa", "calibrated", 0.5, 0.55)


def probe(folder: Path, cache: Path) -> dict:
    before = listing(folder)
    with read_only(folder):
        res = run_bound([PYTHON, "-c", PROBE, str(folder)], env={"XDG_CACHE_HOME": str(cache)})
    assert res.returncode == 0, res.stderr[-3000:]
    assert listing(folder) == before  # not a byte written into the log folder
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_read_only_folder_is_read_through_its_own_complete_index(tmp_path):
    folder, cache = tmp_path / "logs", tmp_path / "cache"
    write(folder, range(1, 41))
    out = probe(folder, cache)
    assert out == {"total": 40, "ng": 10, "where": str(index_dir(folder)), "events": 1, "similar_first": True}
    assert not cache.exists()  # no private copy needed


def test_read_only_folder_without_an_index_is_indexed_into_the_cache(tmp_path, monkeypatch):
    """A log from before the index existed, on a read-only share: indexed from the HDF5 files, elsewhere."""
    folder, cache = tmp_path / "logs", tmp_path / "cache"
    write(folder, range(1, 41))
    shutil.rmtree(index_dir(folder))
    out = probe(folder, cache)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    where = private_index_dir(folder)
    assert out == {"total": 40, "ng": 10, "where": str(where), "events": 1, "similar_first": True}
    assert where.is_relative_to(cache) and (where / "log-folder.txt").read_text().strip() == str(folder.resolve())
    assert probe(folder, cache) == out  # a second viewer reuses it


def test_read_only_folder_with_an_index_behind_its_files_is_not_trusted(tmp_path):
    """An index that missed records (a station killed before indexing, then archived): a private full one."""
    folder, cache = tmp_path / "logs", tmp_path / "cache"
    write(folder, range(1, 21))
    stale = tmp_path / "stale-index"
    shutil.copytree(index_dir(folder), stale)
    write(folder, range(21, 41))
    shutil.rmtree(index_dir(folder))
    shutil.copytree(stale, index_dir(folder))
    out = probe(folder, cache)
    assert out["total"] == 40 and out["events"] == 2 and out["where"].startswith(str(cache))
