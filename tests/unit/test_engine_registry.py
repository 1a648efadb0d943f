"""One engine registry, filled by the composition root: every path that takes an engine name
resolves it through `daedalus.pit.engine`, refuses an unknown one the same way, and no core
module names an adapter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from daedalus.app.application import USE_CASES
from daedalus.app.errors import AppError
from daedalus.app.pipeline_cases import engine_argument
from daedalus.app.settings import Settings
from daedalus.container import build_container
from daedalus.pit.engine import (
    ENGINE_NAMES,
    ENGINES,
    Engine,
    EngineRegistry,
    UnknownEngine,
    get_aggregate_pit_table,
    parse_engine,
)
from tests.fakes import InMemoryAggregator, InMemorySourceReader

SRC = Path(__file__).resolve().parents[2] / "src" / "daedalus"
#: The core: what the import-linter contracts forbid from naming adapters.
CORE = [
    *sorted((SRC / "catalog").rglob("*.py")),
    *sorted((SRC / "pit").rglob("*.py")),
    *sorted((SRC / "pipeline").rglob("*.py")),
    *sorted((SRC / "app").rglob("*.py")),
    SRC / "ports.py",
    SRC / "aggregation.py",
]


def test_the_registry_maps_every_engine() -> None:
    assert ENGINES.engines() == tuple(Engine)
    assert ENGINE_NAMES == ("duckdb", "polars")


@pytest.mark.parametrize("bad", ["spark", "DuckDB", "", None, 3])
def test_an_unknown_engine_is_refused_naming_the_field_and_the_choices(bad: object) -> None:
    with pytest.raises(UnknownEngine) as info:
        parse_engine(bad)
    assert info.value.field == "engine" and info.value.choices == ENGINE_NAMES
    assert str(info.value) == f"unknown engine {bad!r}; choose one of: duckdb, polars"
    assert isinstance(info.value, ValueError)


def test_the_compute_api_refuses_an_unknown_engine() -> None:
    with pytest.raises(ValueError, match="unknown engine 'spark'; choose one of: duckdb, polars"):
        get_aggregate_pit_table("spark")


def test_the_container_builds_aggregators_from_the_registry(tmp_path: Path) -> None:
    container = build_container(Settings(tmp_path, tmp_path / "feature_views", tmp_path / "out"))
    reader = InMemorySourceReader()
    container.source_reader.override(reader)
    aggregator_for = container.aggregator_for()
    duck = aggregator_for("duckdb")
    assert duck.engine is Engine.DUCKDB and aggregator_for(Engine.DUCKDB) is duck
    assert getattr(duck, "reader", None) is reader  # reads through the one source reader
    with pytest.raises(UnknownEngine, match="unknown engine 'spark'"):
        aggregator_for("spark")


def test_the_container_has_no_second_engine_chooser(tmp_path: Path) -> None:
    container = build_container(Settings(tmp_path, tmp_path / "feature_views", tmp_path / "out"))
    assert not hasattr(container, "aggregator")  # the old Selector is gone
    assert container.engines() is ENGINES


def test_the_application_refuses_an_unknown_engine_as_an_argument() -> None:
    with pytest.raises(AppError) as info:
        engine_argument("spark")
    assert info.value.kind == "invalid_argument"
    assert info.value.data == {"field": "engine", "choices": ["duckdb", "polars"]}
    assert "choose one of: duckdb, polars" in str(info.value)
    assert engine_argument(Engine.POLARS) == "polars"


def test_every_use_case_takes_the_engines_of_the_registry() -> None:
    schemas = [p.schema for case in USE_CASES for p in case.params if p.name == "engine"]
    assert schemas, "no use case takes an engine"
    assert all(s["enum"] == list(ENGINE_NAMES) for s in schemas)


def test_a_registry_builds_what_was_registered_with_the_given_reader() -> None:
    registry = EngineRegistry(composition_root=None)
    built = []

    def factory(reader=None):
        built.append(reader)
        return InMemoryAggregator(reader)

    registry.register("polars", aggregator=factory, function=lambda: "fn")
    reader = InMemorySourceReader()
    assert registry.aggregator(Engine.POLARS, reader).reader is reader
    assert built == [reader]
    assert registry.aggregate_pit_table("polars") == "fn"
    with pytest.raises(LookupError, match="'duckdb' is not registered"):
        registry.aggregator("duckdb")
    with pytest.raises(UnknownEngine):
        registry.aggregator("spark")
    with pytest.raises(LookupError, match="no source reader"):
        registry.source_reader()


def _names_adapters(path: Path) -> list[str]:
    """Imports of, and string constants naming, `daedalus.adapters` modules in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if "daedalus.adapters" in node.value:
                found.append(f"{path.name}:{node.lineno}: {node.value[:60]!r}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "daedalus.adapters"
        ):
            found.append(f"{path.name}:{node.lineno}: from {node.module}")
        elif isinstance(node, ast.Import):
            found += [
                f"{path.name}:{node.lineno}: import {a.name}"
                for a in node.names
                if a.name.startswith("daedalus.adapters")
            ]
    return found


def test_no_core_module_names_an_adapter() -> None:
    assert len(CORE) > 20
    offenders = [hit for path in CORE for hit in _names_adapters(path)]
    assert offenders == []


def test_the_only_dynamic_import_of_the_core_outside_its_own_package_is_the_registry_hook() -> None:
    """The core imports nothing by name at run time except the composition root (once, from
    the registry) and its own lazily exported names."""
    dynamic = []
    for path in CORE:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "import_module"
            ):
                dynamic.append(str(path.relative_to(SRC)))
    assert sorted(dynamic) == ["pit/__init__.py", "pit/engine.py"]


def test_choosing_an_engine_loads_no_engine_and_no_arrow() -> None:
    code = (
        "import sys\n"
        "from daedalus.pit.engine import ENGINE_NAMES, ENGINES\n"
        "import daedalus.app.application\n"
        "assert ENGINES.engines()\n"
        "heavy = [m for m in ('duckdb', 'polars', 'pyarrow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
