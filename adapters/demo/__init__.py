"""Seeded synthetic demo workspace (events, impressions, profiles, artworks, Lance embeddings)."""

from daedalus.adapters.demo.generator import (
    MARKER_KIND,
    MARKER_NAME,
    SCALES,
    DemoScale,
    DemoSummary,
    WorkspaceNotEmptyError,
    is_demo_workspace,
    write_demo_workspace,
)

__all__ = [
    "MARKER_KIND",
    "MARKER_NAME",
    "SCALES",
    "DemoScale",
    "DemoSummary",
    "WorkspaceNotEmptyError",
    "is_demo_workspace",
    "write_demo_workspace",
]
