"""Station-config section ``outputs.database``: the plant's PostgreSQL results database (docs/history.md).

    outputs:
      database:
        url: postgresql://inspector@qa-db.plant.local:5432/quality
        password_file: /etc/inspector/db-password   # or PGPASSWORD / ~/.pgpass (libpq's own ways)
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from inspector.config.base import StrictModel


def check_database_url(url: str) -> str:
    """A ``postgresql://`` URL without a password in it (secrets stay out of configs and command lines)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        msg = f"results database url {url!r}: write postgresql://USER@HOST[:PORT]/DATABASE"
        raise ValueError(msg)
    if parts.password:
        msg = ("results database url: put the password in outputs.database.password_file, PGPASSWORD or "
               "~/.pgpass, not in the url")
        raise ValueError(msg)
    return url


class DatabaseSpec(StrictModel):
    """Every inspection and event also goes to PostgreSQL (table ``inspections`` / ``events``, by station)."""

    url: str
    # File holding the database password (one line); None: libpq's PGPASSWORD / ~/.pgpass / trust.
    password_file: Path | None = None
    # Records per INSERT transaction when catching up.
    batch: int = Field(default=500, ge=1, le=10_000)
    connect_timeout_s: float = Field(default=3.0, gt=0, le=60)
    # While the database is unreachable, retry after 1 s, doubling up to this.
    retry_max_s: float = Field(default=30.0, ge=1, le=3600)

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        return check_database_url(url)
