"""Catalog errors: located, actionable messages, reported all at once."""

from __future__ import annotations

import attrs

__all__ = ["CatalogError", "CatalogErrors", "UnknownName"]


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
