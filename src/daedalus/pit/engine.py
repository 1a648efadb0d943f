"""Choosing a compute engine explicitly: `Engine`, `get_aggregate_pit_table(engine)`, and the
one registry the composition root fills.

The core never names an engine's module. The composition root (`daedalus.engines`, used by
the dependency-injector container) registers, per `Engine`, a factory of its `AggregatorPort`
and a loader of its module-level `aggregate_pit_table`, plus the default `SourceReaderPort`;
it imports the adapters inside those factories, so import-linter sees every dependency and
nothing loads DuckDB or Polars before an engine is used. The registry asks for that
registration once, on its first lookup (`COMPOSITION_ROOT`).

This module imports only the standard library at run time: surfaces derive their `engine`
argument's choices from `Engine` without loading Arrow (`daeda --help` stays light).
"""

from __future__ import annotations

import enum
import importlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daedalus.ports import AggregatorPort, SourceReaderPort

__all__ = [
    "COMPOSITION_ROOT",
    "ENGINES",
    "ENGINE_NAMES",
    "Engine",
    "EngineRegistry",
    "UnknownEngine",
    "default_source_reader",
    "get_aggregate_pit_table",
    "parse_engine",
    "register_engine",
    "register_source_reader",
]


class Engine(enum.StrEnum):
    """The compute engines; both give bit-for-bit the same answer."""

    DUCKDB = "duckdb"
    POLARS = "polars"


#: The engines' names, in declaration order (the `engine` argument's choices everywhere).
ENGINE_NAMES: tuple[str, ...] = tuple(e.value for e in Engine)

#: The composition module that fills `ENGINES` when it is imported. The one module the core
#: names: it is the composition root (outside the core's import-linter contracts), not an
#: adapter.
COMPOSITION_ROOT = "daedalus.engines"

#: `aggregate_pit_table(spine, specs, *, timestamp="ts", naive_timestamps_are_utc=False,
#: report=None, reader=None) -> pyarrow.Table`
AggregatePitTable = Callable[..., Any]


class UnknownEngine(ValueError):
    """An engine name that is not an `Engine`: names the argument (`field`) and the choices."""

    def __init__(self, value: Any, field: str = "engine") -> None:
        self.value = value
        self.field = field
        self.choices = ENGINE_NAMES
        super().__init__(f"unknown engine {value!r}; choose one of: {', '.join(ENGINE_NAMES)}")


def parse_engine(value: Any, field: str = "engine") -> Engine:
    """`value` (an `Engine` or its name) as an `Engine`; the one place an engine name is
    checked. Raises UnknownEngine (a ValueError) naming `field` and listing the choices."""
    if isinstance(value, Engine):
        return value
    if isinstance(value, str):
        try:
            return Engine(value)
        except ValueError:
            pass
    raise UnknownEngine(value, field)


class _State(enum.Enum):
    EMPTY = 0
    LOADING = 1
    LOADED = 2


class EngineRegistry:
    """Per engine, how to build its aggregator and where its `aggregate_pit_table` is; and the
    default source reader. Filled by the composition root; read by the compute API, the
    container and the core's defaults."""

    def __init__(self, composition_root: str | None = COMPOSITION_ROOT) -> None:
        self._composition_root = composition_root
        self._aggregators: dict[Engine, Callable[..., AggregatorPort]] = {}
        self._functions: dict[Engine, Callable[[], AggregatePitTable]] = {}
        self._reader: Callable[[], SourceReaderPort] | None = None
        self._state = _State.EMPTY
        self._lock = threading.RLock()

    # -- filled by the composition root ------------------------------------------------------

    def register(
        self,
        engine: Engine | str,
        *,
        aggregator: Callable[..., AggregatorPort],
        function: Callable[[], AggregatePitTable],
    ) -> None:
        """Register `engine`: `aggregator(reader=None)` builds its AggregatorPort (reading
        through `reader`, None: the default reader); `function()` returns its module-level
        `aggregate_pit_table`. Both import the adapter only when called."""
        chosen = parse_engine(engine)
        with self._lock:
            self._aggregators[chosen] = aggregator
            self._functions[chosen] = function

    def register_source_reader(self, factory: Callable[[], SourceReaderPort]) -> None:
        """The default SourceReaderPort (the parquet reader in production)."""
        with self._lock:
            self._reader = factory

    # -- lookups -----------------------------------------------------------------------------

    def _compose(self) -> None:
        """Have the composition root register itself, once (its import does it)."""
        if self._state is not _State.EMPTY or self._composition_root is None:
            return
        with self._lock:
            if self._state is not _State.EMPTY:
                return
            self._state = _State.LOADING
            try:
                importlib.import_module(self._composition_root)
            except BaseException:
                self._state = _State.EMPTY
                raise
            self._state = _State.LOADED

    def engines(self) -> tuple[Engine, ...]:
        """The registered engines."""
        self._compose()
        return tuple(e for e in Engine if e in self._aggregators)

    def aggregator(
        self, engine: Engine | str, reader: SourceReaderPort | None = None
    ) -> AggregatorPort:
        """A new aggregator of `engine` reading through `reader` (None: the default reader).
        Raises UnknownEngine for a name that is not an engine, LookupError for an engine that
        nothing registered."""
        chosen = parse_engine(engine)
        self._compose()
        factory = self._aggregators.get(chosen)
        if factory is None:
            raise LookupError(f"engine {chosen.value!r} is not registered")
        return factory(reader=reader)

    def aggregate_pit_table(self, engine: Engine | str) -> AggregatePitTable:
        """The module-level `aggregate_pit_table` of `engine` (see `get_aggregate_pit_table`)."""
        chosen = parse_engine(engine)
        self._compose()
        loader = self._functions.get(chosen)
        if loader is None:
            raise LookupError(f"engine {chosen.value!r} is not registered")
        return loader()

    def source_reader(self) -> SourceReaderPort:
        """The default source reader (a new one each call: readers hold no state)."""
        self._compose()
        if self._reader is None:
            raise LookupError("no source reader is registered")
        return self._reader()


#: The one registry of the process, filled by `daedalus.engines` on first use.
ENGINES = EngineRegistry()


def register_engine(
    engine: Engine | str,
    *,
    aggregator: Callable[..., AggregatorPort],
    function: Callable[[], AggregatePitTable],
) -> None:
    """Register an engine in `ENGINES` (see `EngineRegistry.register`)."""
    ENGINES.register(engine, aggregator=aggregator, function=function)


def register_source_reader(factory: Callable[[], SourceReaderPort]) -> None:
    """Register the default source reader in `ENGINES`."""
    ENGINES.register_source_reader(factory)


def default_source_reader() -> SourceReaderPort:
    """The registered default source reader (the parquet reader)."""
    return ENGINES.source_reader()


def get_aggregate_pit_table(engine: Engine | str) -> AggregatePitTable:
    """The `aggregate_pit_table(spine, specs, **options)` function of `engine`, resolved
    through the registry the composition root fills.

    Raises UnknownEngine (a ValueError) for an unknown engine name, listing the choices.
    """
    return ENGINES.aggregate_pit_table(engine)
