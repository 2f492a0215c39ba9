"""A real PostgreSQL server for tests: initdb + pg_ctl on a free loopback port, killed and restarted at will.

Debian's binaries (package postgresql, in scripts/system-packages.txt). PostgreSQL refuses to run as root,
so under root the server runs as the package's ``postgres`` user (``runuser``); otherwise as the test's user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.ports import free_port


def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    assert found, "PostgreSQL server binaries not found: install Debian's postgresql (scripts/system-packages.txt)"
    return found[-1].parent


class PostgresServer:
    """One throw-away cluster; ``url`` connects as superuser ``inspector`` to database ``postgres``."""

    def __init__(self) -> None:
        self.bin = pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="inspector-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "inspector", "-E", "UTF8", "--no-sync")
        self.url = f"postgresql://inspector@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        assert res.returncode == 0, f"{' '.join(cmd)}: {res.stdout}{res.stderr}"

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "server.log"), "-w", "start")

    def kill(self) -> None:
        """Stop at once, as a crash or a pulled cable would (no shutdown checkpoint)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(AssertionError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
