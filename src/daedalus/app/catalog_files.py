"""The catalog's YAML files as a surface serves them (MCP resources): listed and read only
where the application lets a catalog file be read from (symlinks resolved first)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from daedalus.app.clip import clip
from daedalus.app.errors import AppError

__all__ = ["OUTSIDE", "list_files", "read_file"]

_YAML_SUFFIXES = (".yaml", ".yml")  # what the catalog loader reads
OUTSIDE = "it resolves outside the workspace and the catalog directory (a symlink?); it is not read"

Guard = Callable[[Path, Path], None]


def _served(directory: Path, guard: Guard) -> list[tuple[Path, Path | None]]:
    """The directory's YAML files, each with its real path, None where `guard` refuses it (or
    it cannot be resolved)."""
    if not directory.is_dir():
        return []
    out: list[tuple[Path, Path | None]] = []
    for path in sorted(
        p for p in directory.iterdir() if p.suffix in _YAML_SUFFIXES and p.is_file()
    ):
        try:
            real: Path | None = path.resolve(strict=True)
            guard(path, real)  # type: ignore[arg-type]
        except (AppError, OSError, RuntimeError):
            real = None
        out.append((path, real))
    return out


def list_files(directory: Path, guard: Guard) -> list[dict[str, Any]]:
    """`{"name", "size"}` of each YAML file of `directory` that may be read."""
    return [
        {"name": path.name, "size": real.stat().st_size}
        for path, real in _served(directory, guard)
        if real is not None
    ]


def read_file(directory: Path, guard: Guard, name: str) -> str:
    """The text of the listed file `name` (a crafted name, "../x" or "a/b", is never found);
    AppError not_found for a file not listed, forbidden for one that may not be read."""
    found = next(((p, r) for p, r in _served(directory, guard) if p.name == name), None)
    if found is None:
        raise AppError(
            "not_found",
            f"no catalog file {clip(name, mark='…')!r} in {directory}",
            {"name": clip(name)},
        )
    if found[1] is None:
        raise AppError(
            "forbidden", f"catalog file {clip(name, mark='…')!r}: {OUTSIDE}", {"name": clip(name)}
        )
    # The resolved path, read as bytes: the text is exactly the file's.
    return found[1].read_bytes().decode("utf-8")
