"""The import-linter contracts of pyproject.toml hold, and they really catch a bad import."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

#: Every package the contracts name, so each source module exists in the throwaway tree.
PACKAGES = ("catalog", "pit", "pipeline", "app", "adapters")


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_real_code_keeps_every_contract() -> None:
    assert LINT_IMPORTS.exists(), f"no lint-imports next to {sys.executable}"
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert f"Contracts: {len(contracts['contracts'])} kept, 0 broken." in result.stdout


def make_fake_daedalus(root: Path, catalog_module: str) -> None:
    """A minimal `daedalus` tree named like the real one, plus the real pyproject.toml."""
    package = root / "daedalus"
    for sub in ("", *PACKAGES):
        (package / sub).mkdir(parents=True, exist_ok=True)
        (package / sub / "__init__.py").write_text('"""Throwaway package."""\n')
    (package / "ports.py").write_text('"""Ports."""\n')
    (package / "aggregation.py").write_text('"""Aggregation."""\n')
    (package / "pit" / "kernel.py").write_text("X = 1\n")
    (package / "catalog" / "model.py").write_text(catalog_module)
    # The SAME contracts: the real file, verbatim (import-linter reads [tool.importlinter]),
    # with the contract types it registers.
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    (root / "scripts").mkdir(exist_ok=True)
    shutil.copy(REPO / "scripts" / "import_contracts.py", root / "scripts" / "import_contracts.py")


def test_the_throwaway_tree_keeps_every_contract_when_it_is_clean(tmp_path: Path) -> None:
    make_fake_daedalus(tmp_path, "import json\n")
    result = lint_imports(tmp_path, pythonpath=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # It analysed the throwaway tree (its files, plus `json`), not the installed package.
    analysed = re.search(r"Analyzed (\d+) files", result.stdout)
    assert analysed is not None, result.stdout
    assert int(analysed[1]) <= len(list(tmp_path.rglob("*.py"))) + 1


@pytest.mark.parametrize(
    ("offending", "contract", "edge"),
    [
        (
            "import duckdb\n",
            "The core never imports an adapter or an adapter library",
            "daedalus.catalog.model -> duckdb (l.1)",
        ),
        (
            '"""Model."""\n\nfrom daedalus.pit.kernel import X\n',
            "Definitions (catalog) know neither compute nor training",
            "daedalus.catalog.model -> daedalus.pit.kernel (l.3)",
        ),
        (
            '"""Model."""\n\nimport pyarrow.parquet as pq\n',
            "The core reads stored sources only through the SourceReaderPort",
            "daedalus.catalog.model -> pyarrow.parquet (l.3)",
        ),
        (
            "from pyarrow import dataset\n",
            "The core reads stored sources only through the SourceReaderPort",
            "daedalus.catalog.model -> pyarrow.dataset (l.1)",
        ),
        (
            "import glob\n",
            "The core reads stored sources only through the SourceReaderPort",
            "daedalus.catalog.model -> glob (l.1)",
        ),
    ],
    ids=["adapter-library", "compute", "parquet-reading", "dataset-reading", "globbing"],
)
def test_a_forbidden_import_in_the_catalog_breaks_the_contract(
    tmp_path: Path, offending: str, contract: str, edge: str
) -> None:
    make_fake_daedalus(tmp_path, offending)
    result = lint_imports(tmp_path, pythonpath=tmp_path)
    assert result.returncode != 0, result.stdout
    assert f"{contract} BROKEN" in result.stdout
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert f"Contracts: {len(contracts['contracts']) - 1} kept, 1 broken." in result.stdout
    assert edge in result.stdout
