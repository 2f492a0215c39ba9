"""A log folder this process may not write (a read-only share, an archive copy): made read-only, checked
by a child process that the permission bits bind (for root: without the capabilities that override them)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_NO_OVERRIDE = "--bounding-set=-dac_override,-dac_read_search,-fowner"


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time (to show nothing was written)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` and everything in it without write permission, restored afterwards (for tmp cleanup)."""
    paths = [folder, *folder.rglob("*")]
    modes = {p: p.stat().st_mode for p in paths}
    for p in reversed(paths):
        p.chmod(stat.S_IMODE(modes[p]) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield folder
    finally:
        for p in paths:
            if p.exists():
                p.chmod(stat.S_IMODE(modes[p]))


def run_bound(argv: Sequence[str], env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (a Python child: ``[sys.executable, ...]``) so that file permission bits apply to it."""
    argv = list(argv)
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")  # util-linux
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a folder read-only for a child")
        argv = [setpriv, _NO_OVERRIDE, *argv]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "QT_QPA_PLATFORM": "offscreen",
                "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    return subprocess.run(argv, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
                          check=False)


PYTHON = sys.executable
