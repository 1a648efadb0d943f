#!/usr/bin/env python3
"""Set up the project's virtualenv and run its jobs: `demo` (train the demo) or `test` (CI checks).

Needs only Python 3.11+ and pip. The virtualenv lives in `.venv`; it is (re)installed when
pyproject.toml or setup.py changed since the last install.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".daedalus-install-stamp"


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    result = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env)
    if result.returncode != 0:
        sys.exit(result.returncode)


def setup() -> None:
    """Create .venv and install the project (editable, strict) with its dev extra."""
    digest = hashlib.sha256(
        b"".join((ROOT / f).read_bytes() for f in ("pyproject.toml", "setup.py"))
    ).hexdigest()
    if not (BIN / "python").exists():
        run(sys.executable, "-m", "venv", VENV)
    if STAMP.exists() and STAMP.read_text() == digest:
        # Strict editable installs link files one by one: relink so new modules are importable.
        run(BIN / "python", "-m", "pip", "install", "-q", "--no-deps", "-e", ".",
            "--config-settings", "editable_mode=strict")  # fmt: skip
        return
    run(BIN / "python", "-m", "pip", "install", "-q", "--upgrade", "pip")
    run(BIN / "python", "-m", "pip", "install", "-q", "-e", ".[dev]",
        "--config-settings", "editable_mode=strict")  # fmt: skip
    STAMP.write_text(digest)


def test(extra: list[str]) -> None:
    """Lint, check the layering, run the default test suite (slow tests excluded)."""
    setup()
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")
    run(BIN / "lint-imports")
    run(BIN / "python", "-m", "pytest", "-m", "not slow", *extra)


def demo(extra: list[str]) -> None:
    """Create the demo workspace (if absent) and train the demo feature service end to end."""
    setup()
    workspace = ROOT / "demo"
    marker_path = workspace / "workspace.json"
    if not marker_path.exists() or not json.loads(marker_path.read_text()).get("complete"):
        run(BIN / "daeda", "demo", "init", workspace, "--scale", "small")
    run(BIN / "daeda", "catalog", "validate", "feature_views")
    marker = json.loads(marker_path.read_text())
    run(BIN / "daeda", "pipeline", "train", "feed_ranking", "--workspace", workspace,
        "--catalog", "feature_views", "--start", marker["start"], "--end", marker["end"], *extra)  # fmt: skip


def main() -> None:
    jobs = {"setup": lambda _: setup(), "test": test, "demo": demo}
    if len(sys.argv) < 2 or sys.argv[1] not in jobs:
        print(f"usage: python3 scripts/dev.py {{{'|'.join(jobs)}}} [args…]", file=sys.stderr)
        sys.exit(2)
    jobs[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
