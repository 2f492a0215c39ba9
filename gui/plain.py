"""Pydantic's validation errors in the words of the screen the engineer typed into.

"prompts.normal_states: List should have at least 1 item after validation, not 0" becomes
"Normal states: add at least one".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

# Config key paths -> the labels of the fields on screen.
FIELD_LABELS = {
    "object_name": "Object name",
    "prompts.normal_states": "Normal states",
    "prompts.anomalous_states": "Anomalous states",
    "prompts.defects": "Defect classes",
    "decision.threshold": "Threshold",
    "normal_states": "Normal states",
    "anomalous_states": "Anomalous states",
    "defects": "Defect classes",
}


def _label(loc: tuple[Any, ...], labels: Mapping[str, str]) -> str:
    keys = [str(p) for p in loc if not isinstance(p, int)]
    for n in range(len(keys), 0, -1):
        dotted = ".".join(keys[:n])
        if dotted in labels:
            return labels[dotted]
    return ".".join(keys).replace("_", " ").capitalize() or "Value"


def _phrase(error: Mapping[str, Any]) -> str:
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return "add at least one" if n == 1 else f"add at least {n}"
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} entries"
    if kind == "string_too_short":
        return "must not be blank"
    if kind == "string_too_long":
        return f"at most {ctx.get('max_length')} characters"
    if kind == "missing":
        return "required"
    if kind in ("float_parsing", "int_parsing", "float_type", "int_type"):
        return "must be a number"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        word = {"greater_than": "above", "greater_than_equal": "at least", "less_than": "below",
                "less_than_equal": "at most"}[kind]
        bound = next(iter(ctx.values()), "")
        return f"must be {word} {bound:g}" if isinstance(bound, (int, float)) else f"must be {word} {bound}"
    msg = str(error.get("msg", "invalid"))
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def plain_errors(exc: ValidationError, labels: Mapping[str, str] = FIELD_LABELS) -> list[str]:
    """One "Field: what to do" line per problem, in the order pydantic found them, without repeats."""
    out: list[str] = []
    for error in exc.errors():
        line = f"{_label(tuple(error.get('loc', ())), labels)}: {_phrase(error)}"
        if line not in out:
            out.append(line)
    return out
