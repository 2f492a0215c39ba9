"""What can stop a retraining, each with what the line engineer can do about it."""

from __future__ import annotations

from inspector.errors import InspectorError


class TrainingError(InspectorError):
    """Base class of training, registry and promotion errors."""


class InsufficientDataError(TrainingError):
    """The few-shot folder has too few usable images for training and validation."""


class TrainingDivergedError(TrainingError):
    """A loss became NaN / inf: training stopped, nothing was registered, the deployed model stays."""


class TrainingCancelledError(TrainingError):
    """Training was cancelled by the user; nothing was registered."""


class RegistryError(TrainingError):
    """A registry version is missing, incomplete or unreadable."""


class IncompatibleModelError(TrainingError):
    """A registered adapter was trained on a different backbone / input size than the running line."""
