"""Errors of the compute layer: raised before any work, naming what is wrong and where."""

from __future__ import annotations

__all__ = ["PitError"]


class PitError(ValueError):
    """Bad input to a point-in-time computation (spine, source or spec).

    `code` is a stable machine-readable kind (`missing_column`, `null_key`, `naive_timestamps`,
    `bad_type`, `missing_source`, `overflow`, …) that surfaces map to their own error codes.
    """

    def __init__(self, message: str, *, code: str = "invalid_input") -> None:
        super().__init__(message)
        self.code = code
