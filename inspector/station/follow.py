"""Following model deployments: run each line's deployed trained version, swap on promotions / rollbacks.

Promotions and rollbacks are made elsewhere (``inspector models``, the GUI, ``inspector train``) in the
line's model registry; the follower polls the registry's ``deployed.json`` and swaps the engine's heads
between two frames. Every swap is logged as ``model_swap``; a damaged or foreign version is logged as
``model_error`` and the line keeps its current heads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inspector.engine import Inspector
    from inspector.training.deploy import DeploymentWatcher

MODEL_POLL_S = 1.0  # how often the registry's deployed.json is checked for a promotion / rollback

LogEvent = Callable[..., None]  # (kind, who, what, old="", new="") -> None


class ModelFollower:
    """Follows the deployments of the running line's registry (one line at a time: :meth:`follow` again
    after a changeover); off when ``enabled`` is False."""

    def __init__(self, model_dir: Path, log_event: LogEvent, *, enabled: bool = True) -> None:
        self.model_dir = model_dir
        self.enabled = enabled
        self._log_event = log_event
        self._watcher: DeploymentWatcher | None = None

    def follow(self, inspector: Inspector) -> None:
        """Apply the line's deployed version now (before the first frame), then follow it in the background."""
        self.stop()
        if not self.enabled:
            return
        from inspector.training.deploy import DeploymentWatcher
        from inspector.training.registry import ModelRegistry

        line = inspector.line.name
        registry = ModelRegistry(self.model_dir, line)

        def swapped(old: str, new: str) -> None:
            who, why = "registry", ""
            try:  # who deployed it, from the registry's history
                last = registry.deployment()["history"][-1]
                if str(last.get("version")) == new:
                    who = str(last.get("who") or who)
                    why = f" ({last.get('action', 'deploy')}{': ' + last['reason'] if last.get('reason') else ''})"
            except Exception:  # the swap happened; the name is a courtesy
                pass
            self._log_event("model_swap", who, f"line {line}: model {old} -> {new}{why}", old, new)

        def failed(exc: Exception) -> None:
            self._log_event("model_error", "registry",
                            f"line {line}: deployed model not applied, still running {inspector.model_version}: "
                            f"{exc}"[:500])

        watcher = DeploymentWatcher(inspector, registry, interval_s=MODEL_POLL_S, on_swap=swapped, on_error=failed)
        watcher.check()  # the deployed version before the first frame
        self._watcher = watcher.start()

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
