"""Application errors: one kind per failure a caller can act on, each with a stable code."""

from __future__ import annotations

from typing import Any

__all__ = ["AppError"]


class AppError(Exception):
    """A use case failed for a reason the caller can act on.

    `kind` is stable across surfaces: `invalid_catalog`, `not_found`, `invalid_argument`,
    `invalid_input`, `conflict`, `forbidden`, `internal`. `data` carries the details (e.g. the
    located catalog errors) as JSON-ready values.
    """

    def __init__(self, kind: str, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out
