"""Run a compiled pipeline day by day through the ports: skeleton, enrich, atomic commit."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
import pyarrow.compute as pc

import daedalus
from daedalus.catalog.dtypes import parse_dtype
from daedalus.catalog.registry import ENTITIES, TIMESTAMP_TYPE, FeatureCatalog
from daedalus.pipeline.inputs import InputPolicy, InputReport, check_inputs
from daedalus.pipeline.operators import Operator, OperatorPipeline, OpKind
from daedalus.pipeline.runner import LocalDayRunner
from daedalus.pit.compute import PitReport
from daedalus.pit.errors import PitError
from daedalus.pit.sources import expand_paths, read_source
from daedalus.pit.spec import AsOfSpec, PitSpec, SourceSpec, specs_for_view
from daedalus.ports import (
    AggregatorPort,
    DayRunnerPort,
    EnricherPort,
    PoolRequest,
    SinkPort,
    StoreRef,
)

__all__ = [
    "Cancelled",
    "DayResult",
    "DayTask",
    "PipelineError",
    "Plan",
    "RunSummary",
    "current_identity",
    "day_range",
    "is_current",
    "project_day",
    "run_pipeline",
]

DAY_US = 86_400_000_000
EPOCH = dt.date(1970, 1, 1)


class PipelineError(ValueError):
    """A training run that cannot start (bad dates, missing inputs); raised before any write."""

    def __init__(self, message: str, *, code: str = "invalid_argument") -> None:
        super().__init__(message)
        self.code = code


class Cancelled(RuntimeError):
    """The run was cancelled between two steps; no partial day was published."""


@attrs.frozen
class DayResult:
    """What happened to one day."""

    day: dt.date
    status: str  # "written", "skipped" or "empty"
    rows: int
    seconds: float
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "status": self.status,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "path": self.path,
        }


@attrs.frozen
class RunSummary:
    """The outcome of a run: days written and skipped, rows, time, where the output is."""

    service: str
    engine: str
    out_dir: str
    days: tuple[DayResult, ...]
    seconds: float
    runner: str = "local"
    inputs: InputReport | None = None

    @property
    def written(self) -> int:
        return sum(d.status in ("written", "empty") for d in self.days)

    @property
    def skipped(self) -> int:
        return sum(d.status == "skipped" for d in self.days)

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.days)

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "engine": self.engine,
            "runner": self.runner,
            "out_dir": self.out_dir,
            "days_written": self.written,
            "days_skipped": self.skipped,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "days": [d.to_dict() for d in self.days],
            "inputs": self.inputs.to_dict() if self.inputs else None,
            "warnings": self.inputs.warnings() if self.inputs else [],
        }


def day_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from `start` to `end`, both included; raises PipelineError if start > end."""
    if start > end:
        raise PipelineError(f"start {start} is after end {end}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _micros(day: dt.date) -> int:
    return (day - EPOCH).days * DAY_US


def _fingerprint(paths: Sequence[str]) -> list[list[Any]]:
    """Cheap identity of input files: path, size and modification time."""
    out = []
    for path in paths:
        st = os.stat(path)
        out.append([path, st.st_size, st.st_mtime_ns])
    return out


def _sha(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class Plan:
    """Everything a run needs, resolved and checked once before any day is touched."""

    def __init__(
        self, pipeline: OperatorPipeline, catalog: FeatureCatalog, workspace: Path
    ) -> None:
        self.pipeline = pipeline
        self.catalog = catalog
        self.workspace = workspace
        svc = catalog.service(pipeline.service)
        self.service = svc
        self.schema = catalog.resolved_schema(svc)
        spine_op = pipeline.op("spine")
        self.keys: list[str] = list(spine_op.params["keys"])
        self.timestamp: str = spine_op.params["timestamp"]
        self.labels: dict[str, str] = dict(spine_op.params["labels"])
        self.naive_spine = bool(spine_op.params["naive_timestamps_are_utc"])
        spine_schema = pa.schema(
            [
                *(pa.field(k, pa.int64()) for k in self.keys),
                pa.field(self.timestamp, TIMESTAMP_TYPE),
                *(pa.field(n, parse_dtype(t)) for n, t in self.labels.items()),
            ]
        )
        self.spine_source = SourceSpec(
            name=f"spine of {svc.name}",
            timestamp=self.timestamp,
            schema=spine_schema,
            paths=(str(workspace / spine_op.params["path"]),),
            naive_timestamps_are_utc=self.naive_spine,
        )
        self.spine_limit = svc.spine.max_invalid_fraction
        self.sources: dict[str, SourceSpec] = {}
        self.feature_ops: list[tuple[Operator, list[PitSpec]]] = []
        for op in pipeline.operators:
            if op.kind not in (OpKind.ASOF_JOIN, OpKind.ROLLING_AGGREGATE):
                continue
            view = catalog.views[op.params["view"]]
            source = self.sources.setdefault(view.name, SourceSpec.from_view(view, root=workspace))
            names = [f["name"] for f in op.params["features"]]
            aliases = {f["name"]: f["output"] for f in op.params["features"]}
            specs = specs_for_view(view, source, names, aliases)
            specs = [s for s in specs if isinstance(s, AsOfSpec) == (op.kind is OpKind.ASOF_JOIN)]
            self.feature_ops.append((op, specs))
        self.pool_requests: list[PoolRequest] = []
        if any(o.kind is OpKind.ENRICH for o in pipeline.operators):
            for emb in pipeline.op("enrich").params["embeddings"]:
                store = catalog.stores[emb["store"]]
                ref = StoreRef(
                    store.name,
                    str(workspace / store.path),
                    store.id_column,
                    store.vector_column,
                    store.dim,
                )
                self.pool_requests.append(PoolRequest(emb["name"], emb["source"], ref))

    def input_files(self) -> dict[str, list[str]]:
        """Every input file, per source; raises PitError naming a source with no files."""
        files = {"spine": expand_paths(self.spine_source)}
        for name, source in self.sources.items():
            files[name] = expand_paths(source)
        return files

    def check_inputs(
        self, files: dict[str, list[str]], days: Sequence[dt.date], policy: InputPolicy
    ) -> InputReport:
        """Every input file checked against its definition and the unusable rows counted
        (`daedalus.pipeline.inputs.check_inputs`); raises PitError before any write."""
        sources = {}
        for name, source in self.sources.items():
            view = self.catalog.views[name]
            keys = [k for e in view.entities for k in ENTITIES[e].join_keys]
            sources[name] = (source, keys, view.source.max_invalid_fraction)
        return check_inputs(
            spine=self.spine_source,
            spine_keys=self.keys,
            spine_limit=self.spine_limit,
            sources=sources,
            files=files,
            days=days,
            policy=policy,
        )


def current_identity(
    plan: Plan, enricher: EnricherPort | None, files: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """What a day's manifest must still say for the day to be current: the contract and
    definition hashes, a fingerprint of every input file (`files`, else the plan's), and the
    embedding store versions.

    Raises PitError for a source without files and EnrichError for a store that cannot serve.
    """
    files = plan.input_files() if files is None else files
    store_versions: dict[str, str] = {}
    if plan.pool_requests:
        if enricher is None:
            raise PipelineError("the service asks for embeddings but no enricher is configured")
        store_versions = enricher.check(plan.pool_requests)
    return {
        "contract_hash": plan.pipeline.contract_hash,
        "definition_hash": plan.pipeline.definition_hash,
        "inputs_hash": _sha({k: _fingerprint(v) for k, v in files.items()}),
        "store_versions": store_versions,
    }


def is_current(manifest: dict[str, Any] | None, identity: dict[str, Any]) -> bool:
    """True when a committed day's manifest matches the current identity."""
    return manifest is not None and all(manifest.get(k) == v for k, v in identity.items())


def run_pipeline(
    pipeline: OperatorPipeline,
    start: dt.date,
    end: dt.date,
    *,
    catalog: FeatureCatalog,
    workspace: str | Path,
    aggregator: AggregatorPort,
    enricher: EnricherPort | None,
    sink: SinkPort,
    force: bool = False,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    runner: DayRunnerPort | None = None,
    policy: InputPolicy | None = None,
    holder: dict[str, Any] | None = None,
) -> RunSummary:
    """Train `pipeline` for every day from `start` to `end` (both included).

    Before any write it checks the dates, that every source and the spine have files, that the
    embedding stores can serve the requests, takes the output's lock (`sink.claim`, recorded
    with `holder`; another writer holding it is a SinkError), checks every input file and counts
    the rows that cannot take part (`Plan.check_inputs` under `policy`), checks that the runner
    can run days (a cluster runner connects); any failure raises (PipelineError, PitError,
    EnrichError, SinkError, ...) with nothing written. The lock is held until the run ends.
    Then a day whose manifest still matches (same contract, definitions, inputs and store
    versions) and whose files still match its manifest is skipped unless `force`; every other
    day is handed to `runner` (default: one after another in this process; a cluster runner
    runs several at once elsewhere), which joins and aggregates the spine rows of `[D, D+1)`,
    enriches them, checks them against the resolved schema and publishes the day atomically. The first day that fails stops the run
    (days in flight are cancelled, none is left half-written) and its error propagates.
    `on_event` receives progress events, always in this thread; `should_cancel` is polled
    between steps and raises Cancelled, leaving no partial day.
    """
    emit = on_event or (lambda _event: None)
    cancelled = should_cancel or (lambda: False)
    runner = runner or LocalDayRunner()
    days = day_range(start, end)
    if aggregator.engine.value != pipeline.engine:
        raise PipelineError(
            f"pipeline was compiled for {pipeline.engine}, aggregator is {aggregator.engine.value}"
        )
    plan = Plan(pipeline, catalog, Path(workspace))
    files = plan.input_files()
    identity = current_identity(plan, enricher, files)
    with sink.claim(pipeline.service, holder or {}):
        inputs = plan.check_inputs(files, days, policy or InputPolicy())
        runner.check()
        return _run_days(
            plan, days, identity, inputs, aggregator, enricher, sink, force, emit, cancelled, runner
        )


def _run_days(
    plan: Plan,
    days: list[dt.date],
    identity: dict[str, Any],
    inputs: InputReport,
    aggregator: AggregatorPort,
    enricher: EnricherPort | None,
    sink: SinkPort,
    force: bool,
    emit: Callable[[dict[str, Any]], None],
    cancelled: Callable[[], bool],
    runner: DayRunnerPort,
) -> RunSummary:
    pipeline = plan.pipeline
    emit(
        {
            "event": "run_started",
            "service": pipeline.service,
            "days": len(days),
            "engine": pipeline.engine,
            "runner": runner.name,
        }
    )
    started = time.perf_counter()
    results: list[DayResult] = []
    todo: list[dt.date] = []
    for day in days:
        if cancelled():
            raise Cancelled(f"cancelled before {day}")
        previous = sink.read_manifest(pipeline.service, day)
        if (
            not force
            and is_current(previous, identity)
            # a day whose files no longer match its manifest (damaged) is computed again
            and not sink.verify_day(pipeline.service, day, thorough=False)
        ):
            assert previous is not None
            results.append(DayResult(day, "skipped", int(previous.get("rows", 0)), 0.0))
            emit({"event": "day_skipped", "day": day.isoformat()})
        else:
            todo.append(day)
    task = DayTask(plan, identity, aggregator, enricher, sink, runner.name, inputs)
    started_days: set[dt.date] = set()
    done: set[dt.date] = set()

    def on_start(day: dt.date) -> None:
        started_days.add(day)
        emit({"event": "day_started", "day": day.isoformat()})

    outcomes = runner.run(task, todo, on_start=on_start, should_stop=cancelled)
    try:
        for result in outcomes:
            results.append(result)
            done.add(result.day)
            emit({"event": "day_done", **result.to_dict()})
            if cancelled() and len(done) < len(todo):
                break
    finally:
        close = getattr(outcomes, "close", None)
        if close is not None:  # leaving early (error, cancel) stops the days in flight
            close()
    if len(done) < len(todo):
        first = min(d for d in todo if d not in done)
        if cancelled():
            raise Cancelled(f"cancelled {'during' if first in started_days else 'before'} {first}")
        raise RuntimeError(f"the {runner.name} day runner stopped before {first} was done")
    summary = RunSummary(
        pipeline.service,
        pipeline.engine,
        sink.location(pipeline.service),
        tuple(sorted(results, key=lambda r: r.day)),
        time.perf_counter() - started,
        runner.name,
        inputs,
    )
    emit({"event": "run_done", **summary.to_dict()})
    return summary


@attrs.frozen(eq=False)
class DayTask:
    """One day's work, with everything it needs: what a day runner ships to where days run.

    Picklable as long as the adapters are (they hold settings, not connections), so a cluster
    runner can send it to other processes. `runner` is recorded in each day's manifest.
    """

    plan: Plan
    identity: dict[str, Any]
    aggregator: AggregatorPort
    enricher: EnricherPort | None
    sink: SinkPort
    runner: str = "local"
    inputs: InputReport | None = None

    def __call__(self, day: dt.date, cancelled: Callable[[], bool]) -> DayResult:
        """Compute and publish `day`; a PitError names the day (days may finish in any order)."""
        try:
            return _run_day(
                self.plan,
                day,
                self.identity,
                self.aggregator,
                self.enricher,
                self.sink,
                cancelled,
                runner=self.runner,
                inputs=self.inputs,
            )
        except PitError as exc:
            raise PitError(f"day {day}: {exc}", code=exc.code) from exc


def read_spine_day(plan: Plan, day: dt.date) -> pa.Table:
    """The spine rows with timestamps in `[day, day + 1)`, in the order they were read."""
    columns = [*plan.keys, plan.timestamp, *plan.labels]
    return read_source(plan.spine_source, columns, _micros(day), _micros(day) + DAY_US)


def project_day(plan: Plan, spine: pa.Table, features: dict[str, pa.Array]) -> pa.Table:
    """The day's rows in the order and with the exact types of the resolved schema."""
    columns: list[pa.Array | pa.ChunkedArray] = []
    fields = [f for f in plan.schema if f.name in spine.column_names or f.name in features]
    for field in fields:
        col = features[field.name] if field.name in features else spine[field.name]
        if (
            pa.types.is_timestamp(field.type)
            and pa.types.is_timestamp(col.type)
            and col.type.tz is None
        ):
            col = pc.assume_timezone(col, "UTC")  # allowed only where the spine says so
        columns.append(col if col.type.equals(field.type) else col.cast(field.type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _run_day(
    plan: Plan,
    day: dt.date,
    identity: dict[str, Any],
    aggregator: AggregatorPort,
    enricher: EnricherPort | None,
    sink: SinkPort,
    cancelled: Callable[[], bool],
    *,
    runner: str = "local",
    inputs: InputReport | None = None,
) -> DayResult:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    spine = read_spine_day(plan, day)
    timings["read_spine"] = time.perf_counter() - t0
    report = PitReport()
    features: dict[str, pa.Array] = {}
    probe = spine.select([*plan.keys, plan.timestamp])
    for op, specs in plan.feature_ops:
        if cancelled():
            raise Cancelled(f"cancelled during {day}")
        t1 = time.perf_counter()
        out = aggregator.aggregate_pit_table(
            probe,
            specs,
            timestamp=plan.timestamp,
            naive_timestamps_are_utc=plan.naive_spine,
            report=report,
        )
        for spec in specs:
            features[spec.name] = out[spec.name]
        timings[op.id] = time.perf_counter() - t1
    table = project_day(plan, spine, features)
    if cancelled():
        raise Cancelled(f"cancelled during {day}")
    staging = sink.begin_day(plan.pipeline.service, day)
    try:
        t2 = time.perf_counter()
        if plan.pool_requests:
            assert enricher is not None
            skeleton = sink.write_staged(staging, "_skeleton/skeleton.parquet", table)
            enriched = enricher.enrich(skeleton, staging, plan.pool_requests)
            timings["enrich"] = enriched.seconds or (time.perf_counter() - t2)
        else:
            sink.write_staged(staging, "part-00000.parquet", table)
        if cancelled():
            raise Cancelled(f"cancelled during {day}")
        manifest = {
            **identity,
            "service": plan.pipeline.service,
            "day": day.isoformat(),
            "rows": table.num_rows,
            "engine": plan.pipeline.engine,
            "runner": runner,
            "worker": f"{os.getpid()}@{socket.gethostname()}",  # the process that computed it
            "report": report.to_dict(),
            "inputs": inputs.for_day(day) if inputs else None,
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "daedalus_version": daedalus.__version__,
            "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        t3 = time.perf_counter()
        path = sink.commit_day(plan.pipeline.service, day, staging, manifest, plan.schema)
        timings["commit"] = time.perf_counter() - t3
    except BaseException:
        sink.abort_day(staging)
        raise
    status = "written" if table.num_rows else "empty"
    return DayResult(day, status, table.num_rows, time.perf_counter() - t0, path)
