"""Where a backbone's weights are on this machine: a local file, a locally cached tag, or random.

Nothing here touches the network. A tag is resolved from the station's imported weights
(``model_dir/<model>/`` with its ``manifest.json``), the Hugging Face hub cache and open_clip's
own download cache; a miss raises :class:`WeightsNotFoundError` naming the exact commands that
fix it (:func:`fix_hint`).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import open_clip
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

from inspector.backbone.checkpoint import WEIGHTS_SUFFIXES, file_sha256
from inspector.backbone.registry import register_model_configs
from inspector.errors import WeightsIntegrityError, WeightsNotFoundError

logger = logging.getLogger(__name__)

RANDOM = "random"
MANIFEST_NAME = "manifest.json"

WeightsKind = Literal["tag", "file", "random"]


@dataclass(frozen=True)
class ResolvedWeights:
    """Where the weights for (model, pretrained) are on this machine."""

    kind: WeightsKind
    path: Path | None
    sha256: str | None
    # The open_clip tag whose preprocessing (mean/std) and activation the weights were trained
    # with: the tag itself, or the one recorded when the file was imported.
    tag: str | None = None


def openclip_cache_dir() -> Path:
    """open_clip's download cache for URL tags (its default, ``~/.cache/clip``)."""
    return Path(os.path.expanduser("~/.cache/clip"))


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache (``HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hf_candidates(cfg: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """(repo_id, filenames in preference order) of a tag's hf_hub entry, as open_clip downloads it."""
    hub = cfg.get("hf_hub") or ""
    if not hub:
        return None
    repo_id, filename = os.path.split(hub)
    filename = filename or HF_WEIGHTS_NAME
    names: list[str] = []
    if filename == HF_WEIGHTS_NAME:
        names.append(HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith((".bin", ".pth")):
        names.append(filename[:-4] + ".safetensors")
    names.append(filename)
    return repo_id, names


def _hf_repo_cache(repo_id: str) -> Path:
    return hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def find_in_hf_cache(cfg: Mapping[str, Any]) -> Path | None:
    """The tag's weights file in the local HF hub cache, without any network access."""
    from huggingface_hub import try_to_load_from_cache

    cand = hf_candidates(cfg)
    if cand is None:
        return None
    repo_id, names = cand
    for name in names:
        hit = try_to_load_from_cache(repo_id, name, cache_dir=hf_cache_dir())
        if isinstance(hit, str) and os.path.isfile(hit):
            return Path(hit)
    return None


def _url_expected_sha256(url: str) -> str:
    """The sha256 (or prefix) open_clip checks for a URL download; '' when none."""
    filename = os.path.basename(url)
    if "openaipublic" in url:
        return url.split("/")[-2]
    if "mlfoundations" in url:
        return os.path.splitext(filename)[0].split("-")[-1]
    return ""


def openclip_cache_path(cfg: Mapping[str, Any]) -> Path | None:
    """Where open_clip stores a URL tag's download (whether or not it is there)."""
    url = cfg.get("url") or ""
    return openclip_cache_dir() / os.path.basename(url) if url else None


def read_manifest(model_dir: Path, model: str) -> dict[str, dict[str, Any]]:
    """``model_dir/<model>/manifest.json`` files section: file name -> record ({} when absent)."""
    path = Path(model_dir) / model / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable weights manifest %s: %s", path, exc)
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return {str(k): v for k, v in files.items() if isinstance(v, dict)} if isinstance(files, dict) else {}


def imported_for_tag(model_dir: Path, model: str, tag: str) -> Path | None:
    """An imported file recorded for this tag, or named ``<tag>.<ext>``."""
    folder = Path(model_dir) / model
    for name, record in sorted(read_manifest(model_dir, model).items()):
        if record.get("tag") == tag and (folder / name).is_file():
            return folder / name
    for suffix in WEIGHTS_SUFFIXES:
        if (folder / f"{tag}{suffix}").is_file():
            return folder / f"{tag}{suffix}"
    return None


def _tag_of_imported(path: Path, model_dir: Path | None, model: str) -> str | None:
    """The tag recorded in the manifest for an imported file (None when not imported or unknown)."""
    if model_dir is None:
        return None
    folder = (Path(model_dir) / model).resolve()
    if path.resolve().parent != folder:
        return None
    tag = read_manifest(model_dir, model).get(path.name, {}).get("tag")
    if tag is None and is_known_tag(model, path.stem):
        tag = path.stem
    return tag if isinstance(tag, str) and is_known_tag(model, tag) else None


def check_model_name(model: str) -> None:
    """Raise WeightsNotFoundError with close matches when ``model`` is not an open_clip architecture."""
    register_model_configs()
    models = open_clip.list_models()
    if model in models:
        return
    close = difflib.get_close_matches(model, models, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    msg = (f"Unknown open_clip architecture {model!r}.{hint} "
           "Run `python -c \"import open_clip; print(open_clip.list_models())\"` for all names.")
    raise WeightsNotFoundError(msg)


def is_known_tag(model: str, tag: str) -> bool:
    """Whether open_clip has a pretrained config for (model, tag)."""
    return bool(open_clip.get_pretrained_cfg(model, tag))


def canonical_tag(model: str, tag: str) -> str:
    """open_clip's normalised tag (lower case, '-' -> '_') when known, else ``tag``."""
    clean = tag.lower().replace("-", "_")
    return clean if clean in open_clip.list_pretrained_tags_by_model(model) else tag


def fix_hint(model: str, tag: str, model_dir: Path | None) -> str:
    """The exact commands that put a tag's weights on an offline station."""
    dir_opt = f" --model-dir {model_dir}" if model_dir is not None else ""
    return (f"Fix: on a machine with internet run `inspector weights fetch {model} {tag}`, copy the file "
            f"to this station and run `inspector weights import FILE --model {model} --name {tag}{dir_opt}`; "
            "or set model.pretrained to a local .safetensors file; "
            "or use `pretrained: random` for a demo (untrained).")


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.lower().endswith(WEIGHTS_SUFFIXES)


def resolve_weights(model: str, pretrained: str, model_dir: Path | None) -> ResolvedWeights:
    """Find the weights for (model, pretrained) on this machine, without any network access.

    ``pretrained`` is ``random``, a known open_clip tag, or a file (absolute, relative to the
    current directory, or a file name in ``model_dir/<model>/``).
    """
    check_model_name(model)
    if pretrained == RANDOM:
        return ResolvedWeights(kind="random", path=None, sha256=None)
    model_dir = Path(model_dir) if model_dir is not None else None

    if is_known_tag(model, pretrained):
        tag = canonical_tag(model, pretrained)
        cfg = open_clip.get_pretrained_cfg(model, tag)
        looked: list[str] = []
        found: Path | None = None
        if model_dir is not None:
            looked.append(f"{model_dir / model}{os.sep}")
            found = imported_for_tag(model_dir, model, tag)
        if found is None:
            cand = hf_candidates(cfg)
            if cand is not None:
                looked.append(str(_hf_repo_cache(cand[0])))
                found = find_in_hf_cache(cfg)
        if found is None:
            url_path = openclip_cache_path(cfg)
            if url_path is not None:
                looked.append(str(url_path))
                if url_path.is_file():
                    found = url_path
                    _check_url_download(url_path, cfg["url"])
        if found is None:
            msg = (f"No local weights for {model} / {tag} (looked in: {', '.join(looked)}).\n"
                   f" {fix_hint(model, tag, model_dir)}")
            raise WeightsNotFoundError(msg)
        logger.info("weights for %s/%s: %s", model, tag, found)
        return ResolvedWeights(kind="tag", path=found, sha256=file_sha256(found), tag=tag)

    candidates = [Path(pretrained).expanduser()]
    if model_dir is not None and not Path(pretrained).is_absolute():
        candidates.append(model_dir / model / pretrained)
    for path in candidates:
        if path.is_file():
            return ResolvedWeights(kind="file", path=path, sha256=file_sha256(path),
                                   tag=_tag_of_imported(path, model_dir, model))

    where = ", ".join(str(p.absolute()) for p in candidates)
    if _looks_like_path(pretrained):
        msg = (f"Weights file {pretrained!r} for {model} not found (looked in: {where}). "
               f"Check the path in model.pretrained, or import the file with "
               f"`inspector weights import FILE --model {model}"
               f"{f' --model-dir {model_dir}' if model_dir is not None else ''}`.")
        raise WeightsNotFoundError(msg)
    tags = open_clip.list_pretrained_tags_by_model(model)
    close = difflib.get_close_matches(pretrained.lower(), tags, n=3, cutoff=0.5)
    known = f"its open_clip tags are: {', '.join(tags)}" if tags else "open_clip has no tags for it"
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    msg = (f"model.pretrained {pretrained!r} is neither an open_clip tag of {model} nor a weights file "
           f"(looked in: {where}); {known}.{hint} "
           "Use a tag, a .safetensors file, or `random` (untrained demo).")
    raise WeightsNotFoundError(msg)


def _check_url_download(path: Path, url: str) -> None:
    expected = _url_expected_sha256(url)
    if expected and not file_sha256(path).startswith(expected):
        msg = (f"{path} does not match the checksum in its download URL ({expected[:16]}...): the "
               f"download is incomplete or corrupt. Delete it and fetch the weights again.")
        raise WeightsIntegrityError(msg)
