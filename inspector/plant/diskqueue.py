"""A bounded, ordered, crash-safe outbox on disk (SQLite): what the broker has not acknowledged yet.

Messages are appended in order and deleted only once the broker acknowledged them, so a restart
(crash, power cut, service restart) resends whatever was pending, oldest first. When ``max_items``
would be exceeded the oldest messages go, and the caller is told how many and which result sequence
numbers (to publish a gap event): a dead broker can never fill the station's disk.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from inspector.errors import InspectorError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    seq INTEGER
);
CREATE TABLE IF NOT EXISTS gap (  -- dropped and not yet reported (one row): survives a restart
    id INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL,
    first_seq INTEGER,
    last_seq INTEGER
)
"""


class QueueError(InspectorError):
    """The outbox file cannot be opened or written."""


@dataclass(frozen=True)
class Queued:
    id: int  # increases forever (also across restarts): the send order
    topic: str
    payload: bytes
    qos: int
    retain: bool
    seq: int | None  # the result's sequence number (None for events)


@dataclass(frozen=True)
class Dropped:
    """Messages a full queue dropped: how many, and the range of result sequence numbers among them."""

    count: int
    first_seq: int | None = None
    last_seq: int | None = None


class DiskQueue:
    """Thread-safe FIFO of messages in one SQLite file; ``max_items`` bounds it (oldest dropped)."""

    def __init__(self, path: Path, max_items: int) -> None:
        self.path = Path(path)
        self.max_items = max_items
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            # WAL + NORMAL: an append survives a process crash; a power cut may lose the last
            # transactions, never corrupt the file. FULL would cost an fsync per part.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            msg = f"MQTT outbox {self.path}: {exc}; check the folder exists and is writable (outputs.mqtt.queue_file)"
            raise QueueError(msg) from exc
        self._lock = threading.Lock()
        self._count = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def put(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, seq: int | None = None) -> Dropped:
        """Append one message; returns what had to be dropped to keep the bound (usually nothing)."""
        with self._lock:
            dropped = Dropped(0)
            excess = self._count + 1 - self.max_items
            self._db.execute("BEGIN")
            try:
                if excess > 0:
                    rows = self._db.execute("SELECT id, seq FROM outbox ORDER BY id LIMIT ?", (excess,)).fetchall()
                    self._db.execute("DELETE FROM outbox WHERE id <= ?", (rows[-1][0],))
                    seqs = [s for _, s in rows if s is not None]
                    dropped = Dropped(len(rows), min(seqs, default=None), max(seqs, default=None))
                    self._db.execute(
                        "INSERT INTO gap (id, count, first_seq, last_seq) VALUES (1, ?, ?, ?) ON CONFLICT(id) DO "
                        "UPDATE SET count = count + excluded.count, first_seq = min(coalesce(first_seq, "
                        "excluded.first_seq), coalesce(excluded.first_seq, first_seq)), last_seq = "
                        "max(coalesce(last_seq, excluded.last_seq), coalesce(excluded.last_seq, last_seq))",
                        (dropped.count, dropped.first_seq, dropped.last_seq))
                self._db.execute("INSERT INTO outbox (topic, payload, qos, retain, seq) VALUES (?, ?, ?, ?, ?)",
                                 (topic, payload, qos, int(retain), seq))
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise
            if excess > 0:
                self._count -= dropped.count
            self._count += 1
            return dropped

    def gap(self) -> Dropped | None:
        """What was dropped and not reported yet (None: nothing)."""
        with self._lock:
            row = self._db.execute("SELECT count, first_seq, last_seq FROM gap WHERE id = 1").fetchone()
        return Dropped(*row) if row and row[0] > 0 else None

    def gap_reported(self, count: int) -> None:
        """``count`` dropped messages were reported (the gap event was acknowledged)."""
        with self._lock:
            self._db.execute("UPDATE gap SET count = count - ? WHERE id = 1", (count,))
            self._db.execute("DELETE FROM gap WHERE count <= 0")

    def after(self, last_id: int, limit: int) -> list[Queued]:
        """Up to ``limit`` messages with ``id > last_id``, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, topic, payload, qos, retain, seq FROM outbox WHERE id > ? "
                                    "ORDER BY id LIMIT ?", (last_id, limit)).fetchall()
        return [Queued(i, t, bytes(p), q, bool(r), s) for i, t, p, q, r, s in rows]

    def remove(self, ids: list[int]) -> None:
        """Forget acknowledged messages."""
        if not ids:
            return
        with self._lock:
            cur = self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
            self._count -= max(0, cur.rowcount)

    def close(self) -> None:
        with self._lock:
            self._db.close()
