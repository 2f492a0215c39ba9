"""Errors of the PLC subsystem that an integrator can act on."""

from __future__ import annotations

from inspector.errors import InspectorError


class PlcError(InspectorError):
    """The PLC link cannot be set up as configured (missing dependency, unsupported setting)."""
