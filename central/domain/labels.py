"""Bilingual labels: a value named by its key, its English label (any case) or its Chinese one,
as planners and dispatchers write them. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

E = TypeVar("E", bound=StrEnum)


def by_label(text: str, labels: Mapping[E, tuple[str, str]]) -> E | None:
    """The value ``text`` names ("in_progress", "In progress", "服务中"), or None."""
    t = text.strip()
    for value, (en, zh) in labels.items():
        if t in (value.value, zh) or t.lower() == en.lower():
            return value
    return None
