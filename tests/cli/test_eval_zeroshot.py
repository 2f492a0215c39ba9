"""`inspector eval --zs-dense dpam --dpam-blocks N --zs-map-pool 3`: the zero-shot dense map options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.mutual import write_synthetic_mvtec
from inspector.cli import main
from inspector.cli.eval_cmd import build_line
from tests.cli.test_eval_mutual import TINY, _args


def test_flags_set_the_lines_zeroshot_section() -> None:
    assert build_line(_args()).zeroshot.dense == "last_block"
    line = build_line(_args(zs_dense="dpam", dpam_blocks=2, zs_map_pool=3))
    assert (line.zeroshot.dense, line.zeroshot.dpam_blocks, line.zeroshot.map_pool) == ("dpam", 2, 3)
    with pytest.raises(ValueError, match="dpam_blocks"):
        build_line(_args(zs_dense="dpam", dpam_blocks=0))


@pytest.mark.slow
def test_eval_runs_dpam_and_records_it(tmp_path: Path, capsys) -> None:
    root = write_synthetic_mvtec(tmp_path / "data", "ring", seed=0, n_train=1, n_good=6, n_defect=2, size=64)
    out = tmp_path / "eval"
    code = main(["eval", str(root), "--category", "ring", "--shots", "0", *TINY, "--zs-dense", "dpam",
                 "--dpam-blocks", "2", "--zs-map-pool", "3", "--out", str(out)])
    assert code == 0
    meta = json.loads((out / "metrics.json").read_text())
    assert meta["zeroshot"] == {"dense": "dpam", "dpam_blocks": 2, "map_pool": 3}
    capsys.readouterr()
    code = main(["eval", str(root), "--category", "ring", "--shots", "0", *TINY, "--zs-dense", "dpam",
                 "--dpam-blocks", "9", "--out", str(tmp_path / "bad")])
    assert code == 2 and "has only 4 transformer blocks" in capsys.readouterr().err
