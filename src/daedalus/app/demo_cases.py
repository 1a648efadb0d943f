"""Demo use case: write the seeded AI-artwork demo workspace."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daedalus.app.errors import AppError

__all__ = ["SCALES", "DemoCases"]

SCALES = ("tiny", "small", "medium", "large")


class DemoCases:
    """Creates demo workspaces with the writer the container provides."""

    def __init__(
        self,
        writer: Callable[..., Any],
        read_start: Callable[[Path], dt.date | None] = lambda _root: None,
    ) -> None:
        self._writer = writer
        self._read_start = read_start

    def start(self, directory: Path) -> dt.date | None:
        """The first day of the demo workspace at `directory` (its marker's), or None."""
        return self._read_start(directory)

    def init(
        self, directory: Path, scale: str = "small", seed: int = 7, overwrite: bool = False
    ) -> dict[str, Any]:
        """Write a demo workspace into `directory`, unless the same one is already complete there.

        The same scale and seed already complete: nothing written (`written` False, `status`
        `unchanged`). Another complete demo workspace, or a non-empty unrelated directory: a
        `conflict` unless `overwrite`. An interrupted one is written again. `status` is
        `created`, `completed`, `rewritten` or `unchanged`.
        """
        if scale not in SCALES:
            raise AppError(
                "invalid_argument",
                f"scale must be one of {', '.join(SCALES)}, got {scale!r}",
                {"field": "scale"},
            )
        try:
            summary = self._writer(directory, scale=scale, seed=seed, overwrite=overwrite)
        except FileExistsError as exc:
            data: dict[str, Any] = {"directory": str(directory)}
            existing = getattr(exc, "existing", None)
            if existing:  # a complete demo workspace of another scale or seed
                data["existing"] = existing
            raise AppError("conflict", str(exc), data) from exc
        except ValueError as exc:
            raise AppError("invalid_argument", str(exc)) from exc
        status = getattr(summary, "status", "created")
        return {
            "workspace": str(Path(directory).resolve()),
            "written": status != "unchanged",
            "status": status,
            "scale": scale,
            "seed": seed,
            "start": summary.start.isoformat(),
            "end": summary.end.isoformat(),
            "rows": {
                "events": summary.event_rows,
                "impressions": summary.impression_rows,
                "user_profiles": summary.user_profile_rows,
                "artworks": summary.artwork_rows,
                "embeddings": summary.embedding_rows,
            },
            "lance_version": summary.lance_version,
        }
