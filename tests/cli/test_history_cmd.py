"""`inspector history`: QA's read-only viewer, started by the CLI in a child process (python -m gui.viewer)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inspector.backbone.registry import TINY_MODEL
from inspector.cli import build_parser
from inspector.cli.history_cmd import viewer_argv
from tests.audit.readonly import listing
from tests.audit.test_history import write_log

REPO = Path(__file__).resolve().parents[2]
TINY_LABEL = f"{TINY_MODEL} (untrained backbone)"
DIM = 16


def test_options_reach_the_viewer_as_given():
    args = build_parser().parse_args(["-v", "history", "logs/", "--model-dir", "models", "--exit-after-load"])
    assert viewer_argv(args) == ["logs", "--model-dir", "models", "--exit-after-load", "-v"]
    from gui.viewer import build_parser as viewer_parser  # the viewer parses them with the same declaration

    back = viewer_parser().parse_args(viewer_argv(args))
    assert (back.folder, back.model_dir, back.config, back.exit_after_load) == (Path("logs"), Path("models"), None,
                                                                                True)


def test_a_log_folder_or_a_config_is_needed(capsys):
    from inspector.cli import main

    assert main(["history"]) == 2 and "name the log folder" in capsys.readouterr().err
    assert isinstance(build_parser().parse_args(["history", "--config", "s.yaml"]), argparse.Namespace)


@pytest.mark.slow
def test_inspector_history_command_opens_the_log(tmp_path):
    """The CLI runs the viewer in a child process (python -m gui.viewer); --config names the log folder."""
    folder = tmp_path / "out" / "logs"  # demo.yaml's log.folder (../out/logs) seen from tmp_path/cfg
    write_log(folder, TINY_LABEL, DIM)
    config = tmp_path / "cfg" / "station.yaml"
    config.parent.mkdir()
    config.write_text((REPO / "station_configs" / "demo.yaml").read_text())
    h5 = {k: v for k, v in listing(folder).items() if k.endswith(".h5")}
    cli = [sys.executable, "-c", "import sys; from inspector.cli import main; sys.exit(main())", "history"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "QT_QPA_PLATFORM": "offscreen"}
    for args in (["--config", str(config)], [str(folder)]):
        res = subprocess.run([*cli, *args, "--exit-after-load"], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=120, check=False)
        assert res.returncode == 0, res.stderr[-3000:]
        assert res.stdout.strip().startswith("12 of 12 records"), res.stdout
    assert {k: v for k, v in listing(folder).items() if k.endswith(".h5")} == h5  # the audit files untouched
    res = subprocess.run([*cli, str(tmp_path / "nowhere")], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 2 and "no such log folder" in res.stderr
