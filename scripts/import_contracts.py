"""An import-linter contract type for what the built-in `forbidden` cannot say: that a package
never imports given *submodules* of an external package (`pyarrow.parquet`, `pyarrow.dataset`)
while the package itself (`pyarrow`) stays allowed.

import-linter squashes external packages into their top-level name, so an edge
`daedalus.pit.sources -> pyarrow` does not say which part of pyarrow was imported; the import
statement's own text does (`import pyarrow.parquet as pq`, `from pyarrow import dataset`).
This contract reads it. It checks direct imports only (external packages are not analysed,
so an import of them through one of their own modules cannot be seen).

Registered in pyproject.toml (`contract_types`); lint-imports puts the working directory on
`sys.path`, so `scripts.import_contracts` is found when it runs from the repository root.
"""

from __future__ import annotations

import ast

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck

__all__ = ["ForbiddenSubmodulesContract"]


def _imported_names(statement: str) -> list[str]:
    """Every dotted name an import statement's text brings in (`from a import b` → a, a.b)."""
    try:
        tree = ast.parse(statement.strip())
    except SyntaxError:
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def _matches(name: str, forbidden: str) -> bool:
    return name == forbidden or name.startswith(forbidden + ".")


class ForbiddenSubmodulesContract(Contract):
    """`source_modules` (and their descendants) never import `forbidden_modules`, which may be
    submodules of external packages (e.g. `pyarrow.parquet`). Direct imports only."""

    type_name = "forbidden_submodules"

    source_modules = fields.ListField(subfield=fields.ModuleField())
    forbidden_modules = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        forbidden = [str(m) for m in self.forbidden_modules]  # type: ignore[attr-defined]
        tops = {f.split(".")[0] for f in forbidden}
        found: list[dict[str, object]] = []
        for source in self.source_modules:  # type: ignore[attr-defined]
            importers = {source.name} | set(graph.find_descendants(source.name))
            for importer in sorted(importers):
                for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                    if imported.split(".")[0] not in tops:
                        continue
                    for detail in graph.get_import_details(importer=importer, imported=imported):
                        text = str(detail["line_contents"])
                        hit = next(
                            (f for n in _imported_names(text) for f in forbidden if _matches(n, f)),
                            None,
                        )
                        if hit is not None:
                            found.append(
                                {
                                    "importer": importer,
                                    "imported": hit,
                                    "line_number": detail["line_number"],
                                    "line": text.strip(),
                                }
                            )
        return ContractCheck(kept=not found, metadata={"imports": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for item in check.metadata["imports"]:
            output.print_error(
                f"{item['importer']} is not allowed to import {item['imported']}:", bold=True
            )
            output.new_line()
            output.print_error(
                f"-   {item['importer']} -> {item['imported']} (l.{item['line_number']}): "
                f"{item['line']}",
                bold=False,
            )
            output.new_line()
