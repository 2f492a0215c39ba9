"""Exceptions the station raises on bad input; each message names the thing and the fix."""

from __future__ import annotations


class InspectorError(Exception):
    """Base class for errors an operator or engineer can act on."""


class ConfigError(InspectorError):
    """A station config file is missing, unreadable or invalid."""

    def __init__(self, path: str, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = [f"{path}: invalid station config ({len(problems)} problem(s)); nothing was applied"]
        lines += [f"  {key}: {what}" for key, what in problems]
        super().__init__("\n".join(lines))


class WeightsNotFoundError(InspectorError):
    """Backbone weights could not be found locally (and we never download implicitly)."""


class WeightsIntegrityError(InspectorError):
    """A weights file does not match its recorded sha256 or is not a safe checkpoint."""


class ImageDecodeError(InspectorError):
    """An image file or frame could not be decoded or has the wrong shape / dtype."""


class NotFittedError(InspectorError, RuntimeError):
    """A head was used before its fitted state was set up."""
