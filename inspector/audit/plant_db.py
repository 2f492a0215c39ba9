"""The plant's results database: every inspection and event of a station, in PostgreSQL (psycopg 3).

Many stations write into one database (tables ``inspections`` and ``events``, keyed by station), where
the plant's QA queries and dashboards (Grafana) read them. The backlog is the station's own audit log:
a record reaches PostgreSQL only after it was published to the HDF5 file and its index
(:mod:`inspector.audit.index`), and :meth:`PlantDatabase.push` sends, in seq order, every indexed record
newer than what the database holds for the station (``max(seq)``), in batches of one transaction each.
So a database that is down, unreachable or restarted costs nothing: the log and its index are on disk
(and survive a station restart), the push resumes where the database stands, and the insert is
idempotent on ``(station, seq)`` (events on ``(station, time_ns, kind, who, what)``), so nothing is lost
or doubled. Inspection never waits for the database (the station runs the push on an observer thread).

The schema is versioned: :data:`MIGRATIONS` are applied in order, once, under an advisory lock (stations
starting together), and recorded in ``inspector_schema``.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from inspector.audit.folder import INDEX_DIR
from inspector.audit.index import DB_NAME, LogIndex
from inspector.errors import InspectorError

_logger = logging.getLogger(__name__)

_LOCK_KEY = 0x1D5_7A11  # pg_advisory_xact_lock key of the migrations
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "inspections and events", """
        CREATE TABLE IF NOT EXISTS inspections (
            station text NOT NULL, seq bigint NOT NULL, time timestamptz NOT NULL, time_ns bigint NOT NULL,
            part_id text NOT NULL, line text NOT NULL, verdict text NOT NULL, status text NOT NULL,
            score double precision, threshold double precision, defect text NOT NULL, fault text NOT NULL,
            model text NOT NULL, model_version text NOT NULL, file text NOT NULL, row integer NOT NULL,
            inserted_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (station, seq));
        CREATE INDEX IF NOT EXISTS inspections_time ON inspections (time);
        CREATE INDEX IF NOT EXISTS inspections_part ON inspections (part_id);
        CREATE INDEX IF NOT EXISTS inspections_status_time ON inspections (status, time);
        CREATE TABLE IF NOT EXISTS events (
            station text NOT NULL, time timestamptz NOT NULL, time_ns bigint NOT NULL, after_seq bigint NOT NULL,
            kind text NOT NULL, who text NOT NULL, what text NOT NULL, old text NOT NULL, new text NOT NULL,
            file text NOT NULL, inserted_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (station, time_ns, kind, who, what));
        CREATE INDEX IF NOT EXISTS events_time ON events (time);
    """),
)
_INSPECTION_COLS = ("seq", "time_ns", "part_id", "line", "verdict", "status", "score", "threshold", "defect", "fault",
                    "model", "model_version", "file", "row")
_EVENT_COLS = ("time_ns", "after_seq", "kind", "who", "what", "old", "new", "file")


class DatabaseUnavailable(InspectorError):
    """The results database cannot be reached or refused a write (the push is retried later)."""


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a dependency of the project
        msg = "the results database needs psycopg 3: pip install 'psycopg[binary]'"
        raise InspectorError(msg) from None
    return psycopg


def migrate(conn: Any) -> list[int]:
    """Apply the migrations the database lacks (in one transaction); returns the versions applied."""
    applied = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("CREATE TABLE IF NOT EXISTS inspector_schema (version integer PRIMARY KEY, "
                     "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        have = {v for (v,) in conn.execute("SELECT version FROM inspector_schema")}
        for version, description, sql in MIGRATIONS:
            if version in have:
                continue
            conn.execute(sql)
            conn.execute("INSERT INTO inspector_schema (version, description) VALUES (%s, %s)", (version, description))
            applied.append(version)
    newest = max(have | set(applied))
    if newest > MIGRATIONS[-1][0]:
        _logger.warning("results database schema %d is newer than this software's %d", newest, MIGRATIONS[-1][0])
    return applied


class PlantDatabase:
    """Pushes one station's log (through its index in ``folder``) to PostgreSQL at ``url``."""

    def __init__(self, url: str, station: str, folder: Path, *, password: str | None = None, batch: int = 500,
                 connect_timeout_s: float = 3.0, budget_s: float = 2.0) -> None:
        self.url = url
        self._password = password
        self.budget_s = budget_s  # one push returns after about this long; the next goes on
        self.station = station
        self.folder = Path(folder)
        self.batch = batch
        self.connect_timeout_s = connect_timeout_s
        self._conn: Any = None
        self._index: LogIndex | None = None
        self._inode = 0
        self.pushed = 0
        self.last_error = ""  # why the last push failed ("" after a good one)
        self.sent_seq: int | None = None  # the newest result seq the database has (None before a good push)

    def _connect(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        psycopg = _psycopg()
        try:
            extra = {"password": self._password} if self._password else {}
            conn = psycopg.connect(self.url, connect_timeout=max(1, round(self.connect_timeout_s)),
                                   application_name=f"inspector {self.station}", autocommit=True, **extra)
            migrate(conn)
        except psycopg.Error as exc:
            msg = f"results database {redact(self.url)}: {str(exc).strip() or type(exc).__name__}"
            self.last_error = msg
            raise DatabaseUnavailable(msg) from None
        self._conn = conn
        return conn

    def _log_index(self) -> LogIndex | None:
        try:
            inode = (self.folder / INDEX_DIR / DB_NAME).stat().st_ino
        except OSError:  # not built yet: the station's writer creates it at its start
            return None
        if self._index is not None and inode != self._inode:  # the writer rebuilt a damaged index anew
            self._index.close()
            self._index = None
        if self._index is None:
            try:
                self._index = LogIndex(self.folder, readonly=True)
            except sqlite3.Error as exc:
                _logger.warning("results database: the log's index cannot be read yet (%s)", exc)
                return None
            self._inode = inode
        return self._index

    def push(self) -> int:
        """Send what the database lacks of this station's log; returns the records sent.

        Raises :class:`DatabaseUnavailable` when the database cannot be reached or a write fails
        (what was committed before stays; the next push goes on from there).
        """
        index = self._log_index()
        if index is None:
            return 0
        conn = self._connect()
        psycopg = _psycopg()
        sent = 0
        until = time.monotonic() + self.budget_s
        try:
            (cursor,) = conn.execute("SELECT COALESCE(max(seq), 0) FROM inspections WHERE station = %s",
                                     (self.station,)).fetchone()
            while True:
                rows = index.after_seq(int(cursor), self.batch)
                if not rows:
                    break
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO inspections (station, time, " + ", ".join(_INSPECTION_COLS) + ") VALUES "
                        "(%s, to_timestamp(%s::double precision / 1e9), " + ", ".join(["%s"] * len(_INSPECTION_COLS))
                        + ") ON CONFLICT (station, seq) DO NOTHING",
                        [(self.station, r["time_ns"], *(r[c] for c in _INSPECTION_COLS)) for r in rows])
                cursor = rows[-1]["seq"]
                sent += len(rows)
                if time.monotonic() > until:  # a long catch-up: let the caller breathe, the next push goes on
                    break
            (since,) = conn.execute("SELECT COALESCE(max(time_ns), 0) FROM events WHERE station = %s",
                                    (self.station,)).fetchone()
            events = index.events(int(since))
            if events:
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO events (station, time, " + ", ".join(_EVENT_COLS) + ") VALUES "
                        "(%s, to_timestamp(%s::double precision / 1e9), " + ", ".join(["%s"] * len(_EVENT_COLS))
                        + ") ON CONFLICT DO NOTHING",
                        [(self.station, e["time_ns"], *(e[c] for c in _EVENT_COLS)) for e in events])
        except psycopg.Error as exc:
            self.close_connection()
            msg = f"results database {redact(self.url)}: {str(exc).strip() or type(exc).__name__}"
            self.last_error = msg
            raise DatabaseUnavailable(msg) from None
        finally:
            self.pushed += sent
        self.last_error = ""
        self.sent_seq = int(cursor)
        return sent

    def close_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                _logger.debug("closing the results database connection", exc_info=True)
            self._conn = None

    def close(self) -> None:
        self.close_connection()
        if self._index is not None:
            self._index.close()
            self._index = None


class Backoff:
    """When to try a failing database again: 1 s, doubling to ``max_s``; at once after a success."""

    def __init__(self, max_s: float = 30.0, clock: Any = time.monotonic) -> None:
        self.max_s, self.clock = max_s, clock
        self.delay, self.next_at = 0.0, 0.0

    def due(self) -> bool:
        return self.clock() >= self.next_at

    def failed(self) -> None:
        self.delay = min(self.max_s, max(1.0, self.delay * 2))
        self.next_at = self.clock() + self.delay

    def succeeded(self) -> None:
        self.delay, self.next_at = 0.0, 0.0


def redact(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url
    return url
