"""Catalog errors: located, actionable messages, reported all at once.

A message never echoes a definition file at length: whatever it quotes from the file (a name, a
type, a window, a filter value, a did-you-mean suggestion, a YAML parser's complaint) is clipped
to `CLIP_WIDTH` (80) characters, the last of which is `…` when something was cut.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["CLIP_WIDTH", "CatalogError", "CatalogErrors", "UnknownName", "clip", "quoted"]

#: The most characters of a definition's text that an error message quotes in one place.
CLIP_WIDTH = 80
_ELLIPSIS = "…"


@attrs.frozen
class CatalogError:
    """One problem in a definition: where it is, what is wrong, and what was probably meant."""

    file: str
    line: int
    column: int
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.message}"
        return f"{text} — {self.hint}" if self.hint else text

    def to_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


class CatalogErrors(Exception):
    """Raised when a catalog does not load; carries every error found, in file order."""

    def __init__(self, errors: list[CatalogError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.file, e.line, e.column, e.message))
        count = len(self.errors)
        head = f"{count} error{'s' if count != 1 else ''} in the feature catalog"
        super().__init__(head + ":\n" + "\n".join(f"  {e}" for e in self.errors))


class UnknownName(LookupError):
    """A name (view, service, store, day…) that is not in the catalog; carries a suggestion."""

    def __init__(self, what: str, name: str, hint: str | None = None) -> None:
        self.what, self.name, self.hint = what, name, hint
        super().__init__(f"unknown {what} {name!r}" + (f" — {hint}" if hint else ""))


def clip(text: str, width: int = CLIP_WIDTH) -> str:
    """`text` if it fits in `width` characters, else its first `width - 1` and `…`."""
    return text if len(text) <= width else text[: width - 1] + _ELLIPSIS


def quoted(value: Any, width: int = CLIP_WIDTH) -> str:
    """`repr(value)` clipped to `width` characters, computed without building a long repr.

    Containers are shown item by item until the width is used up, so a huge (or aliased many
    times over) list or mapping costs no more than a short one.
    """
    return clip(_short_repr(value, width + 1), width)


def _short_repr(value: Any, budget: int) -> str:
    """A repr of `value`: exact when shorter than `budget`, else at least `budget` long."""
    if budget <= 0:
        return ""
    if isinstance(value, str | bytes):
        return repr(value[:budget])
    if isinstance(value, Mapping):
        return _joined("{", "}", value.items(), budget, mapping=True)
    if isinstance(value, tuple):
        return _joined("(", ",)" if len(value) == 1 else ")", value, budget)
    if isinstance(value, set | frozenset):
        return _joined("{", "}", value, budget) if value else repr(value)
    if isinstance(value, list):
        return _joined("[", "]", value, budget)
    try:
        text = repr(value)
    except Exception:  # a value whose repr fails (e.g. an int too long to print)
        text = f"<{type(value).__name__}>"
    return text[:budget]


def _joined(opening: str, closing: str, items: Any, budget: int, mapping: bool = False) -> str:
    """Items one by one, each given only the budget left, until the budget is used up."""
    text = opening
    for i, item in enumerate(items):
        if i:
            text += ", "
        if mapping:
            text += _short_repr(item[0], budget - len(text)) + ": "
            text += _short_repr(item[1], budget - len(text))
        else:
            text += _short_repr(item, budget - len(text))
        if len(text) >= budget:
            return text
    return text + closing
