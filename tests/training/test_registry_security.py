"""Model registry under failure: a version folder appears whole or not at all, deployed.json is replaced
atomically, and a crash at any point of a write leaves the previous state readable and unchanged."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import inspector.training.registry as registry_module
from inspector.files import atomic_write_text
from inspector.training.registry import DEPLOYED_FILE, ModelRegistry
from tests.training.conftest import tiny_adapter

METRICS = {"gate": {"passed": True, "compared_to": "base", "reasons": []},
           "deployment": {"score_stats": [0.5, 2.0], "map_stats": None, "threshold": 1.0}}
CARD = {"backbone": {"key": "tiny|random"}, "heads": ["patch"]}


def _visible(registry: ModelRegistry) -> list[str]:
    return sorted(p.name for p in registry.folder.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("stage", ["adapter", "metrics", "rename"])
def test_failure_while_registering_leaves_no_half_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          stage: str) -> None:
    registry = ModelRegistry(tmp_path / "models", "ring")
    registry.register(tiny_adapter(), METRICS, CARD)
    before = _visible(registry)

    def boom(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    if stage == "adapter":
        monkeypatch.setattr(registry_module, "save_adapter", boom)
    elif stage == "metrics":
        real_write_text = Path.write_text

        def fail_on_card(self: Path, *args: object, **kwargs: object) -> int:
            if self.name == "card.json":  # metrics.json was written, the card was not
                raise OSError(28, "No space left on device")
            return real_write_text(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", fail_on_card)
    else:
        monkeypatch.setattr(registry_module.os, "rename", boom)
    with pytest.raises(OSError, match="No space"):
        registry.register(tiny_adapter(), METRICS, CARD)
    monkeypatch.undo()
    assert _visible(registry) == before  # no v2, half-written or not
    assert not list(registry.folder.glob(".staging-*"))  # the staging folder is cleaned up
    assert [v.version for v in registry.versions()] == ["v1"]
    assert registry.register(tiny_adapter(), METRICS, CARD).version == "v2"


def test_a_crash_leaves_staging_invisible(tmp_path: Path) -> None:
    """A process killed mid-register leaves only a hidden .staging-* folder: never listed, never loaded."""
    registry = ModelRegistry(tmp_path / "models", "ring")
    info = registry.register(tiny_adapter(), METRICS, CARD)
    staging = registry.folder / ".staging-deadbeef"
    shutil.copytree(info.path, staging)
    (staging / "card.json").unlink()
    assert [v.version for v in registry.versions()] == ["v1"]
    torn = registry.folder / "v2"
    torn.mkdir()  # a torn rename target (or a hand-made folder): ignored, and its number is not reused
    (torn / "metrics.json").write_text("{}")
    assert [v.version for v in registry.versions()] == ["v1"]
    assert registry.register(tiny_adapter(), METRICS, CARD).version == "v3"


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_failure_while_deploying_keeps_the_previous_pointer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            where: str) -> None:
    registry = ModelRegistry(tmp_path / "models", "ring")
    for _ in range(2):
        registry.register(tiny_adapter(), METRICS, CARD)
    registry.promote("v1", who="anna")
    pointer = registry.folder / DEPLOYED_FILE
    before = pointer.read_bytes()
    events: list[tuple] = []

    def boom(*_args: object, **_kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    if where == "write":
        real_fdopen = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda *a, **k: _HalfWriter(real_fdopen(*a, **k)))
    elif where == "fsync":
        monkeypatch.setattr(os, "fsync", boom)
    else:
        monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        registry.promote("v2", who="bob", audit=lambda *e: events.append(e))
    monkeypatch.undo()
    assert pointer.read_bytes() == before and registry.deployed() == "v1"
    assert not events  # a change that did not happen is not recorded as made
    assert sorted(p.name for p in registry.folder.iterdir() if p.name.startswith(f".{DEPLOYED_FILE}")) == []
    json.loads(pointer.read_text())  # still valid JSON


class _HalfWriter:
    """A file object that writes half of what it is given, then fails (disk full mid-write)."""

    def __init__(self, fh: object) -> None:
        self._fh = fh

    def write(self, text: str) -> int:
        self._fh.write(text[: len(text) // 2])  # type: ignore[attr-defined]
        self._fh.flush()  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    def __getattr__(self, name: str) -> object:
        return getattr(self._fh, name)

    def __enter__(self) -> _HalfWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()  # type: ignore[attr-defined]


def test_atomic_write_text_never_exposes_a_half_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "deployed.json"
    atomic_write_text(target, '{"stack": ["base"]}\n')
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        seen.append(Path(dst).read_text())  # what a reader sees just before the swap: the old content
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write_text(target, '{"stack": ["base", "v1"]}\n')
    assert seen == ['{"stack": ["base"]}\n'] and json.loads(target.read_text())["stack"] == ["base", "v1"]


def test_damaged_pointer_is_a_clear_error(tmp_path: Path) -> None:
    from inspector.training.errors import RegistryError

    registry = ModelRegistry(tmp_path / "models", "ring")
    registry.register(tiny_adapter(), METRICS, CARD)
    pointer = registry.folder / DEPLOYED_FILE
    for text in ('{"stack": ["base", "v1"', "[]", '{"stack": []}'):
        pointer.write_text(text)
        with pytest.raises(RegistryError, match="fix or delete it") as info:
            registry.deployed()
        assert str(pointer) in str(info.value)


def test_a_damaged_version_is_not_deployed(tmp_path: Path) -> None:
    """Promotion loads the version first: a corrupt adapter is refused and deployed.json keeps the old one."""
    from inspector.training.errors import RegistryError
    from inspector.training.registry import ADAPTER_FILE

    registry = ModelRegistry(tmp_path / "models", "ring")
    for _ in range(2):
        registry.register(tiny_adapter(), METRICS, CARD)
    registry.promote("v1", who="anna")
    (registry.folder / "v2" / ADAPTER_FILE).write_bytes(b"\x00garbage, not safetensors")
    events: list[tuple] = []
    with pytest.raises(RegistryError, match="cannot be loaded"):
        registry.promote("v2", who="bob", audit=lambda *e: events.append(e))
    assert registry.deployed() == "v1" and not events
