"""Put a registry version into a running engine, between two frames, and keep it in step with the registry.

:func:`apply_version` loads a version and calls ``Inspector.install_adapter`` (or
``remove_adapter`` for ``base``); the engine holds its lock for the swap, so a frame is judged
entirely by the old or entirely by the new version and its result names which.
:class:`DeploymentWatcher` polls ``deployed.json`` so a station process follows promotions and
rollbacks made by ``inspector models`` or the GUI in another process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from inspector.training.errors import IncompatibleModelError
from inspector.training.registry import BASE, DEPLOYED_FILE, ModelRegistry

if TYPE_CHECKING:
    from inspector.engine import Inspector

_logger = logging.getLogger(__name__)


def base_threshold(inspector: Inspector) -> float | None:
    """The threshold of the base heads: the line's fixed one, else the engine's own calibration."""
    if inspector.line.decision.threshold is not None:
        return float(inspector.line.decision.threshold)
    return float(inspector.calibration.threshold) if inspector.calibration is not None else None


Choose = Callable[[str], float | None]  # version -> the threshold it runs with (None: its own)


def version_threshold(registry: ModelRegistry, version: str) -> float | None:
    """The threshold calibrated with ``version`` (metrics["deployment"]["threshold"]); None for base / none."""
    if version == BASE:
        return None
    value = (registry.get(version).metrics.get("deployment") or {}).get("threshold")
    return float(value) if value is not None else None


def apply_version(inspector: Inspector, registry: ModelRegistry, version: str, threshold: float | None = None) -> str:
    """Hot-swap the engine to ``version`` (``base`` removes the adapter); returns the version it ran before.

    The swap and the threshold change in one step under the engine's lock: ``threshold`` when given
    (the station's live threshold record for that version), else the version's own calibrated one
    (base: :func:`base_threshold`).
    """
    old = inspector.model_version
    if version == BASE:
        inspector.remove_adapter(threshold=threshold if threshold is not None else base_threshold(inspector))
        _logger.info("line %s: %s -> base heads", inspector.line.name, old)
        return old
    loaded = registry.load(version)
    here = inspector.model_key
    if loaded.model_key != here:
        msg = (f"version {version} of line {registry.line} was trained for {loaded.model_key}, this engine runs "
               f"{here}; retrain the line for this backbone (`inspector train`)")
        raise IncompatibleModelError(msg)
    if threshold is None:
        threshold = loaded.threshold
    inspector.install_adapter(loaded.adapter, version, loaded.score_stats, loaded.map_stats, threshold)
    _logger.info("line %s: %s -> %s (threshold %s)", inspector.line.name, old, version,
                 f"{threshold:.4f}" if threshold is not None else "kept")
    return old


def apply_deployed(inspector: Inspector, registry: ModelRegistry, choose: Choose | None = None) -> str:
    """Bring the engine to the registry's deployed version; returns the version the engine then runs.

    ``base`` means "no trained adapter": an engine without one (the base heads, or a GUI refit of
    them, which has its own version label) already runs it and is left as it is.
    """
    version = registry.deployed()
    if version == BASE and inspector.adapter is None:
        return inspector.model_version
    if version != inspector.model_version:
        apply_version(inspector, registry, version, choose(version) if choose is not None else None)
    return version


class DeploymentWatcher:
    """Background thread: follows ``deployed.json`` of one line and hot-swaps the engine.

    Errors (a damaged version, an incompatible adapter) are logged and reported through
    ``on_error``; the engine keeps running what it ran. ``choose`` gives the threshold a version runs
    with (the station's threshold book), applied in the same step as the swap. Stop with :meth:`stop`
    or use as a context manager.
    """

    def __init__(self, inspector: Inspector, registry: ModelRegistry, interval_s: float = 1.0,
                 on_swap: Callable[[str, str], None] | None = None,
                 on_error: Callable[[Exception], None] | None = None, choose: Choose | None = None) -> None:
        self.inspector = inspector
        self.choose = choose
        self.registry = registry
        self.interval_s = interval_s
        self.on_swap = on_swap
        self.on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"deploy-watch-{registry.line}", daemon=True)
        self._seen: tuple[int, int] | None = None

    def start(self) -> DeploymentWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def __enter__(self) -> DeploymentWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = (self.registry.folder / DEPLOYED_FILE).stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def check(self) -> None:
        """One poll: apply the deployed version if deployed.json changed since the last poll."""
        stamp = self._stamp()
        if stamp == self._seen and self._seen is not None:
            return
        self._seen = stamp
        try:
            before = self.inspector.model_version
            version = apply_deployed(self.inspector, self.registry, self.choose)
            if version != before and self.on_swap is not None:
                self.on_swap(before, version)
        except Exception as exc:
            _logger.error("line %s: cannot apply the deployed model: %s", self.registry.line, exc)
            if self.on_error is not None:
                self.on_error(exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._stop.wait(self.interval_s)
