"""Model registry of one line: ``<model_dir>/<line>/<version>/`` and which version is deployed.

::

    models/<line>/
      v1/ adapter.safetensors   the AdapterStack state dict, its spec in the safetensors metadata
          metrics.json          held-out metrics (base / deployed / new), gate decision, deployment stats
          card.json             model card: data hashes, config, backbone identity, augmentation, seed, timings
      v2/ ...
      deployed.json             the deployment stack (last = deployed; "base" = no adapter) and its history
      split.json                which images are held out (kept across retrainings: same validation set)

A version folder is written under a temporary name and renamed into place, so a reader sees a
complete version or none; ``deployed.json`` is replaced atomically. Promotions, forced
promotions and rollbacks are logged (module logger, and the audit log when one is given).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.files import atomic_write_text
from inspector.training.errors import RegistryError
from inspector.training.modules import AdapterStack, load_adapter, save_adapter

_logger = logging.getLogger(__name__)

BASE = "base"
ADAPTER_FILE = "adapter.safetensors"
METRICS_FILE = "metrics.json"
CARD_FILE = "card.json"
DEPLOYED_FILE = "deployed.json"
SPLIT_FILE = "split.json"
_VERSION_RE = re.compile(r"^v(\d+)$")

# (kind, who, what, old, new) -> None: the station's audit log writer, when there is one.
AuditHook = Callable[[str, str, str, object, object], None]


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in a service / container
        return "unknown"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _audit(hook: AuditHook | None, kind: str, who: str, what: str, old: object, new: object) -> None:
    """Write to the given audit hook (the caller's audit log, e.g. ``AuditLog.log_event``); none: nothing."""
    if hook is None:
        return
    try:
        hook(kind, who, what, old, new)
    except Exception:  # the audit log must not undo a promotion that already happened
        _logger.exception("could not write %s to the audit log", kind)


@dataclass(frozen=True)
class VersionInfo:
    """A registered version as listed: where it is and what its files say."""

    version: str
    path: Path
    metrics: dict[str, Any]
    card: dict[str, Any]

    @property
    def number(self) -> int:
        return int(self.version[1:])

    @property
    def created(self) -> str:
        return str(self.card.get("created_at", ""))


@dataclass(frozen=True)
class LoadedVersion:
    """What the engine needs to run a version: the module, its fusion statistics and threshold."""

    version: str
    adapter: AdapterStack
    score_stats: tuple[float, float]
    map_stats: tuple[float, float] | None
    threshold: float | None
    model_key: str
    card: dict[str, Any]


class ModelRegistry:
    """Versions of one line under ``root/<line>/`` (``root`` is the station's model_dir)."""

    def __init__(self, root: Path, line: str) -> None:
        self.root = Path(root)
        self.line = line
        self.folder = self.root / line

    # ------------------------------------------------------------------------------------ versions
    def versions(self) -> list[VersionInfo]:
        """Complete versions, oldest first (incomplete folders are ignored)."""
        if not self.folder.is_dir():
            return []
        out = []
        for path in self.folder.iterdir():
            if not (path.is_dir() and _VERSION_RE.match(path.name)):
                continue
            try:
                out.append(self._info(path))
            except RegistryError as exc:
                _logger.warning("%s", exc)
        return sorted(out, key=lambda v: v.number)

    def _info(self, path: Path) -> VersionInfo:
        missing = [n for n in (ADAPTER_FILE, METRICS_FILE, CARD_FILE) if not (path / n).is_file()]
        if missing:
            msg = f"registry version {path} is incomplete (missing {', '.join(missing)})"
            raise RegistryError(msg)
        try:
            metrics = json.loads((path / METRICS_FILE).read_text(encoding="utf-8"))
            card = json.loads((path / CARD_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            msg = f"registry version {path} is unreadable: {exc}"
            raise RegistryError(msg) from None
        return VersionInfo(path.name, path, metrics, card)

    def get(self, version: str) -> VersionInfo:
        if not _VERSION_RE.match(version):
            msg = f"{version!r} is not a version name (v1, v2, ...); `inspector models list` shows them"
            raise RegistryError(msg)
        path = self.folder / version
        if not path.is_dir():
            known = ", ".join(v.version for v in self.versions()) or "none"
            msg = f"line {self.line} has no version {version} (registered: {known})"
            raise RegistryError(msg)
        return self._info(path)

    def register(self, adapter: AdapterStack, metrics: dict[str, Any], card: dict[str, Any]) -> VersionInfo:
        """Write a new version atomically and return it (numbers are never reused)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = self.folder / f".staging-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            save_adapter(adapter, staging / ADAPTER_FILE, {"line": self.line})
            for name, payload in ((METRICS_FILE, metrics), (CARD_FILE, card)):
                (staging / name).write_text(json.dumps(payload, indent=2, default=_json_default) + "\n",
                                            encoding="utf-8")
            number = max([v.number for v in self.versions()] + [_highest_folder(self.folder)] + [0]) + 1
            while True:
                target = self.folder / f"v{number}"
                try:
                    os.rename(staging, target)  # fails if another process took this number
                    break
                except OSError:
                    if not target.exists():
                        raise
                    number += 1
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _logger.info("line %s: registered %s", self.line, target.name)
        return self._info(target)

    def load(self, version: str) -> LoadedVersion:
        """The adapter of a version, ready for ``Inspector.install_adapter``."""
        info = self.get(version)
        try:
            adapter = load_adapter(info.path / ADAPTER_FILE)
        except Exception as exc:  # safetensors / shape errors: a damaged file
            msg = f"{info.path / ADAPTER_FILE} cannot be loaded ({exc}); roll back or retrain"
            raise RegistryError(msg) from None
        deployment = info.metrics.get("deployment") or {}
        if "score_stats" not in deployment:
            msg = f"{info.path / METRICS_FILE} has no deployment statistics; retrain this line"
            raise RegistryError(msg)
        map_stats = deployment.get("map_stats")
        threshold = deployment.get("threshold")
        return LoadedVersion(version, adapter, tuple(deployment["score_stats"]),  # type: ignore[arg-type]
                             tuple(map_stats) if map_stats else None,  # type: ignore[arg-type]
                             float(threshold) if threshold is not None else None,
                             str(info.card.get("backbone", {}).get("key", "")), info.card)

    # ------------------------------------------------------------------------------------ split
    def split_record(self) -> dict[str, Any] | None:
        """Which image (sha256) was held out in the line's last run (None: no run yet, or unreadable)."""
        try:
            return json.loads((self.folder / SPLIT_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            _logger.warning("ignoring unreadable %s (%s): the validation split is drawn afresh", SPLIT_FILE, exc)
            return None

    def save_split_record(self, record: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.folder / SPLIT_FILE, json.dumps(record) + "\n")

    # ------------------------------------------------------------------------------------ deployment
    def deployment(self) -> dict[str, Any]:
        """The content of deployed.json (a fresh one when there is none)."""
        path = self.folder / DEPLOYED_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"line": self.line, "stack": [BASE], "history": []}
        except (OSError, ValueError) as exc:
            msg = f"{path} is unreadable ({exc}); fix or delete it (deleting deploys the base heads)"
            raise RegistryError(msg) from None
        if not isinstance(data, dict) or not data.get("stack"):
            msg = f"{path} has no deployment stack; fix or delete it (deleting deploys the base heads)"
            raise RegistryError(msg)
        return data

    def deployed(self) -> str:
        """The deployed version, or ``base`` (no adapter)."""
        return str(self.deployment()["stack"][-1])

    def _write_deployment(self, data: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.folder / DEPLOYED_FILE, json.dumps(data, indent=2, default=_json_default) + "\n")

    def promote(self, version: str, *, who: str | None = None, forced: bool = False, reason: str = "",
                gate: dict[str, Any] | None = None, audit: AuditHook | None = None) -> str:
        """Deploy ``version`` (the gate was checked by the caller); returns the previously deployed one.

        The version is loaded first: a damaged one (unreadable adapter, missing statistics) raises
        RegistryError and the deployment stays as it was.
        """
        if version != BASE:
            self.load(version)
        who = who or current_user()
        data = self.deployment()
        old = str(data["stack"][-1])
        data["stack"].append(version)
        action = "force-promote" if forced else "promote"
        data["history"].append({"action": action, "version": version, "previous": old, "at": _now(), "who": who,
                                "reason": reason, "gate": gate})
        self._write_deployment(data)
        what = f"line {self.line}: model {old} -> {version}"
        if forced:
            reasons = "; ".join((gate or {}).get("reasons", [])) or "none recorded"
            _logger.warning("FORCED promotion by %s, %s despite the gate (%s); reason given: %s", who, what, reasons,
                            reason or "none")
            _audit(audit, "model_promote_forced", who, f"{what} (gate refused: {reasons}; reason: {reason or 'none'})",
                   old, version)
        else:
            _logger.info("promotion by %s: %s", who, what)
            _audit(audit, "model_promote", who, f"{what} (reason: {reason})" if reason else what, old, version)
        return old

    def rollback(self, *, who: str | None = None, reason: str = "", audit: AuditHook | None = None) -> tuple[str, str]:
        """Deploy the version that was deployed before the current one; returns (old, new)."""
        who = who or current_user()
        data = self.deployment()
        if len(data["stack"]) < 2:
            msg = f"line {self.line} runs {data['stack'][-1]} and has nothing earlier to roll back to"
            raise RegistryError(msg)
        old = str(data["stack"].pop())
        new = str(data["stack"][-1])
        data["history"].append({"action": "rollback", "version": new, "previous": old, "at": _now(), "who": who,
                                "reason": reason})
        self._write_deployment(data)
        what = f"line {self.line}: model {old} rolled back to {new}"
        _logger.warning("rollback by %s: %s", who, what)
        _audit(audit, "model_rollback", who, f"{what} (reason: {reason})" if reason else what, old, new)
        return old, new


def _highest_folder(folder: Path) -> int:
    """Highest vN folder name, complete or not: numbers are never reused."""
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION_RE.match(p.name))]
    return max(numbers, default=0)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    msg = f"{type(value).__name__} is not JSON serialisable"
    raise TypeError(msg)
