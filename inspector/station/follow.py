"""Following model deployments: run each line's deployed trained version, swap on promotions / rollbacks.

Promotions and rollbacks are made elsewhere (``inspector models``, the GUI, ``inspector train``) in the
line's model registry; the follower polls the registry's ``deployed.json`` and swaps the engine's heads
between two frames. Every swap is logged as ``model_swap``; a damaged or foreign version is logged as
``model_error`` and the line keeps its current heads.

Each version runs with its live threshold record (:mod:`.threshold`): the book's record of that
version, else the version's own calibrated threshold; the swap and the threshold change happen in
one step, and the change goes through :func:`~inspector.station.threshold.set_live_threshold`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from inspector.station.threshold import ThresholdBook, ThresholdRecord, record_for, set_live_threshold

if TYPE_CHECKING:
    from inspector.config import LineConfig
    from inspector.engine import Inspector
    from inspector.training.deploy import DeploymentWatcher
    from inspector.training.registry import ModelRegistry

MODEL_POLL_S = 1.0  # how often the registry's deployed.json is checked for a promotion / rollback

LogEvent = Callable[..., None]  # (kind, who, what, old="", new="") -> None


class ModelFollower:
    """Follows the deployments of the running line's registry (one line at a time: :meth:`follow` again
    after a changeover); off when ``enabled`` is False."""

    def __init__(self, model_dir: Path, log_event: LogEvent, *, enabled: bool = True,
                 book: ThresholdBook | None = None, line_config: Callable[[str], LineConfig] | None = None) -> None:
        self.model_dir = model_dir
        self._line_config = line_config  # the line as this run read it (a hand edit of the YAML wins at start)
        self.enabled = enabled
        self.book = book
        self._log_event = log_event
        self._watcher: DeploymentWatcher | None = None

    def record_for(self, inspector: Inspector, version: str, who: str = "station", *,
                   starting: bool = False) -> ThresholdRecord:
        """The threshold record ``version`` runs with on this engine's line (``starting``: the file may win)."""
        name = inspector.line.name
        line = self._line_config(name) if self._line_config is not None else inspector.line
        return record_for(line, version, model_dir=self.model_dir, book=self.book, inspector=inspector, who=who,
                          file_wins=starting)

    def settle(self, inspector: Inspector, who: str = "station", why: str = "", *,
               starting: bool = False) -> ThresholdRecord:
        """Make the record of the engine's current version live (start, changeover, after a swap)."""
        record = self.record_for(inspector, inspector.model_version, who, starting=starting)
        if why and record.method in ("version", "engine"):
            record = replace(record, why=why)
        set_live_threshold(inspector.line.name, record, book=self.book, log_event=self._log_event,
                           inspector=inspector, by=who if who != "station" else "")
        return record

    def follow(self, inspector: Inspector) -> None:
        """Apply the line's deployed version now (before the first frame), then follow it in the background."""
        self.stop()
        if not self.enabled:
            self.settle(inspector, starting=True)
            return
        from inspector.training.deploy import DeploymentWatcher
        from inspector.training.registry import ModelRegistry

        line = inspector.line.name
        registry = ModelRegistry(self.model_dir, line)

        def choose(version: str) -> float:
            return self.record_for(inspector, version, _deployer(registry, version)[0]).value

        def swapped(old: str, new: str) -> None:
            who, why = _deployer(registry, new)
            self._log_event("model_swap", who, f"line {line}: model {old} -> {new}{why}", old, new)
            self.settle(inspector, who, f"model {old} -> {new}{why}")

        def failed(exc: Exception) -> None:
            self._log_event("model_error", "registry",
                            f"line {line}: deployed model not applied, still running {inspector.model_version}: "
                            f"{exc}"[:500])

        watcher = DeploymentWatcher(inspector, registry, interval_s=MODEL_POLL_S, on_swap=swapped, on_error=failed,
                                    choose=choose)
        watcher.check()  # the deployed version before the first frame
        self.settle(inspector, starting=True)  # ... with its live threshold (a restart comes up with what was live)
        self._watcher = watcher.start()

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None


def _deployer(registry: ModelRegistry, version: str) -> tuple[str, str]:
    """(who, " (action: reason)") of the registry's last deployment of ``version``, for the audit log."""
    try:
        last = registry.deployment()["history"][-1]
    except Exception:  # the swap happened; the name is a courtesy
        return "registry", ""
    if str(last.get("version")) != version:
        return "registry", ""
    why = f" ({last.get('action', 'deploy')}{': ' + last['reason'] if last.get('reason') else ''})"
    return str(last.get("who") or "registry"), why
