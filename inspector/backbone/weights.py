"""The ``inspector weights`` operations: list what is on this machine, fetch (online), import (offline).

Only :func:`fetch_weights` may use the network. An offline station gets weights by
``import``: the file is checked to load strictly into the architecture, copied atomically into
``model_dir/<model>/`` and recorded with its sha256 in ``model_dir/<model>/manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import open_clip

from inspector.backbone import checkpoint, resolve
from inspector.backbone.loading import build_model
from inspector.backbone.registry import register_model_configs
from inspector.errors import InspectorError, WeightsIntegrityError, WeightsNotFoundError
from inspector.files import atomic_write_text

logger = logging.getLogger(__name__)

WeightsSource = Literal["imported", "hf-cache", "openclip-cache"]
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
_HF_SNAPSHOT_RE = re.compile(r"models--(?P<repo>[^/\\]+)[/\\]snapshots[/\\]")


@dataclass(frozen=True)
class WeightsEntry:
    """One weights file available on this machine."""

    model: str
    name: str  # tag (caches) or file name (imported)
    source: WeightsSource
    path: Path
    size: int
    sha256: str | None = None  # imported: from the manifest; caches: not computed
    tag: str | None = None  # the open_clip tag the weights belong to, when known

    def yaml_snippet(self) -> str:
        """The ``pretrained:`` / ``sha256:`` lines for the station YAML (under ``model:``)."""
        by_tag = self.source == "imported" and self.tag and self._tag_resolves()
        pretrained = self.tag if by_tag else self.name
        lines = [f"name: {self.model}", f"pretrained: {pretrained}"]
        if self.sha256:
            lines.append(f"sha256: {self.sha256}")
        return "\n".join(lines)

    def _tag_resolves(self) -> bool:
        # A tag in the YAML resolves to this file only if it is the first imported file for the tag.
        found = resolve.imported_for_tag(self.path.parent.parent, self.model, self.tag or "")
        return found is not None and found.resolve() == self.path.resolve()


# --------------------------------------------------------------------------------------------
# list


def _imported_entries(model_dir: Path) -> list[WeightsEntry]:
    out: list[WeightsEntry] = []
    if not model_dir.is_dir():
        return out
    for folder in sorted(p for p in model_dir.iterdir() if p.is_dir()):
        manifest = resolve.read_manifest(model_dir, folder.name)
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.suffix.lower() not in checkpoint.WEIGHTS_SUFFIXES:
                continue
            record = manifest.get(path.name, {})
            sha = record.get("sha256")
            tag = record.get("tag")
            out.append(WeightsEntry(
                model=folder.name, name=path.name, source="imported", path=path, size=path.stat().st_size,
                sha256=sha if isinstance(sha, str) else None, tag=tag if isinstance(tag, str) else None,
            ))
    return out


def list_weights(model_dir: Path) -> list[WeightsEntry]:
    """Weights on this machine: imported into ``model_dir``, in the HF hub cache, in open_clip's cache.

    Never hashes cache files (they can be gigabytes); imported files carry the manifest sha256.
    """
    entries = _imported_entries(Path(model_dir))
    register_model_configs()
    for model, tag in open_clip.list_pretrained():
        cfg = open_clip.get_pretrained_cfg(model, tag)
        hit = resolve.find_in_hf_cache(cfg)
        if hit is not None:
            entries.append(WeightsEntry(model=model, name=tag, source="hf-cache", path=hit,
                                        size=hit.stat().st_size, tag=tag))
        url_path = resolve.openclip_cache_path(cfg)
        if url_path is not None and url_path.is_file():
            entries.append(WeightsEntry(model=model, name=tag, source="openclip-cache", path=url_path,
                                        size=url_path.stat().st_size, tag=tag))
    return entries


# --------------------------------------------------------------------------------------------
# fetch


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's connection errors (huggingface_hub 2.x uses httpx2, 1.x httpx)."""
    out: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        err = getattr(mod, "TransportError", None)
        if isinstance(err, type) and issubclass(err, BaseException):
            out.append(err)
    return tuple(out)


def _hub_host_resolves(endpoint: str) -> bool:
    """Whether the hub's host name resolves (a fast no-network check; skipped behind a proxy)."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    host = urlsplit(endpoint).hostname
    if not host:
        return True
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def _offline_message(model: str, tag: str, repo_id: str, why: str) -> str:
    return (f"Cannot download {model} / {tag} from the Hugging Face hub (repo {repo_id}): this machine has "
            f"no network access ({why}).\n"
            f" Fix: run `inspector weights fetch {model} {tag}` on a machine with internet, copy the printed "
            f"file here and run `inspector weights import FILE --model {model} --name {tag}`.")


def fetch_weights(model: str, tag: str, progress: bool = True) -> Path:
    """Download a tag's weights into the HF hub cache (the only networked operation); the file path.

    Prefers the ``.safetensors`` file, as open_clip does. Without network this fails with a
    message saying so and how to ``import`` a file copied from another machine.
    """
    import huggingface_hub
    from huggingface_hub import errors as hf_errors
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    resolve.check_model_name(model)
    if not resolve.is_known_tag(model, tag):
        tags = open_clip.list_pretrained_tags_by_model(model)
        msg = (f"{tag!r} is not an open_clip pretrained tag of {model}; "
               f"known tags: {', '.join(tags) if tags else '(none)'}")
        raise WeightsNotFoundError(msg)
    tag = resolve.canonical_tag(model, tag)
    cfg = open_clip.get_pretrained_cfg(model, tag)
    cand = resolve.hf_candidates(cfg)
    if cand is None:
        msg = f"{model} / {tag} has no Hugging Face hub source in open_clip {open_clip.__version__}"
        raise WeightsNotFoundError(msg)
    repo_id, names = cand
    if not _hub_host_resolves(huggingface_hub.constants.ENDPOINT):
        why = f"cannot resolve {urlsplit(huggingface_hub.constants.ENDPOINT).hostname}"
        raise WeightsNotFoundError(_offline_message(model, tag, repo_id, why))

    was_disabled = are_progress_bars_disabled()
    if not progress:
        disable_progress_bars()
    # `inspector` sets HF_HUB_OFFLINE=1 for everything else; an explicit fetch is the one exception.
    was_offline = huggingface_hub.constants.HF_HUB_OFFLINE
    huggingface_hub.constants.HF_HUB_OFFLINE = False
    try:
        for name in names:
            try:
                path = huggingface_hub.hf_hub_download(
                    repo_id=repo_id, filename=name, library_name="open_clip",
                    library_version=open_clip.__version__,
                )
            except hf_errors.RemoteEntryNotFoundError:
                logger.info("%s has no %s; trying the next file name", repo_id, name)
                continue
            except hf_errors.RepositoryNotFoundError as exc:  # includes gated repos
                msg = f"Hugging Face hub repo {repo_id} for {model} / {tag} is not accessible: {exc}"
                raise WeightsNotFoundError(msg) from None
            except hf_errors.HfHubHTTPError as exc:
                msg = f"huggingface.co refused {repo_id}/{name} for {model} / {tag}: {exc}"
                raise WeightsNotFoundError(msg) from None
            except (hf_errors.LocalEntryNotFoundError, ConnectionError, OSError, *_transport_errors()) as exc:
                why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                raise WeightsNotFoundError(_offline_message(model, tag, repo_id, why)) from None
            logger.info("fetched %s / %s: %s", model, tag, path)
            return Path(path)
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE = was_offline
        if not progress and not was_disabled:
            enable_progress_bars()
    msg = f"Hugging Face hub repo {repo_id} has none of {names} for {model} / {tag}"
    raise WeightsNotFoundError(msg)


# --------------------------------------------------------------------------------------------
# import


def _infer_tag(model: str, file: Path, name: str) -> str | None:
    """The open_clip tag of an imported file: from its new name, its own name or its HF cache path."""
    for stem in (Path(name).stem, file.stem):
        if resolve.is_known_tag(model, stem):
            return resolve.canonical_tag(model, stem)
    match = _HF_SNAPSHOT_RE.search(str(file.absolute()))
    if match:
        repo = match.group("repo").replace("--", "/")
        for tag in open_clip.list_pretrained_tags_by_model(model):
            cand = resolve.hf_candidates(open_clip.get_pretrained_cfg(model, tag))
            if cand is not None and cand[0] == repo:
                return tag
    return None


def _target_name(file: Path, name: str | None) -> str:
    suffix = file.suffix.lower()
    if name is None:
        target = file.name
    else:
        target = name if Path(name).suffix.lower() in checkpoint.WEIGHTS_SUFFIXES else f"{name}{suffix}"
        if Path(target).suffix.lower() != suffix:
            msg = f"--name {name!r} has suffix {Path(target).suffix!r} but the file is {suffix!r}; keep it"
            raise InspectorError(msg)
    if not _NAME_RE.match(target) or target == resolve.MANIFEST_NAME:
        msg = f"weights name {target!r} must be 1-128 of [A-Za-z0-9_.+-] (no folders); pass --name"
        raise InspectorError(msg)
    return target


def _copy_atomically(src: Path, dest: Path, expected_sha256: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
            while chunk := inp.read(8 << 20):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != expected_sha256:
            msg = f"{src} changed while it was being imported (sha256 differs); import it again"
            raise WeightsIntegrityError(msg)
        shutil.copymode(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_manifest(model_dir: Path, model: str, name: str, record: dict[str, Any]) -> None:
    path = model_dir / model / resolve.MANIFEST_NAME
    files = resolve.read_manifest(model_dir, model)
    files[name] = record
    data = {"version": 1, "model": model, "files": dict(sorted(files.items()))}
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def import_weights(file: Path, model: str, model_dir: Path, name: str | None = None) -> WeightsEntry:
    """Check that ``file`` loads strictly into ``model``, copy it into ``model_dir/<model>/`` and record it.

    Re-importing the same content is a no-op; a different file under an existing name is refused.
    """
    file = Path(file).expanduser()
    model_dir = Path(model_dir)
    if not file.is_file():
        msg = f"weights file {file} not found"
        raise WeightsNotFoundError(msg)
    resolve.check_model_name(model)
    target = _target_name(file, name)
    sha = checkpoint.file_sha256(file)

    # Strict load into the architecture (random init, CPU, fp32): proves the file fits.
    state_dict = checkpoint.read_state_dict(file)
    net = build_model(model)
    checkpoint.apply_state_dict(net, state_dict, file, model)
    del state_dict, net

    dest = model_dir / model / target
    if dest.exists():
        existing = checkpoint.file_sha256(dest)
        if existing != sha:
            msg = (f"{dest} already exists with different content (sha256 {existing[:12]}... vs "
                   f"{sha[:12]}...); pick another --name or remove the old file deliberately")
            raise InspectorError(msg)
        logger.info("%s is already imported as %s", file, dest)
    else:
        _copy_atomically(file, dest, sha)

    tag = _infer_tag(model, file, target)
    record = {
        "sha256": sha,
        "size": dest.stat().st_size,
        "tag": tag,
        "imported_from": str(file.absolute()),
        "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_manifest(model_dir, model, target, record)
    entry = WeightsEntry(model=model, name=target, source="imported", path=dest, size=record["size"],
                         sha256=sha, tag=tag)
    logger.info("imported %s -> %s; station YAML:\n%s", file, dest, entry.yaml_snippet())
    return entry
