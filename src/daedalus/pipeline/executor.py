"""Run a compiled pipeline day by day through the ports: skeleton, enrich, atomic commit."""

from __future__ import annotations

import contextlib
import datetime as dt
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
from daedalus.pipeline import DEFAULT_BATCH_ROWS
from daedalus.pipeline.inputs import InputPolicy, InputReport, check_inputs
from daedalus.pipeline.operators import FeatureJoin, Operator, OperatorPipeline
from daedalus.pipeline.runner import LocalDayRunner
from daedalus.pipeline.staleness import (
    INPUTS_KEY,
    FingerprintCache,
    SourceFingerprint,
    VisibleRange,
    day_input_digests,
    explain_stale,
    source_fingerprints,
    visible_ranges,
)
from daedalus.pipeline.stats import day_stats, stats_warnings
from daedalus.pit.compute import PitReport
from daedalus.pit.errors import PitError
from daedalus.pit.sources import read_source, source_reader, timestamps_to_micros
from daedalus.pit.spec import PitSpec, SourceSpec
from daedalus.ports import (
    AggregatorPort,
    DayBatch,
    DayRunnerPort,
    EnricherPort,
    PoolRequest,
    SinkPort,
    SourceReaderPort,
)

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "BatchTask",
    "Cancelled",
    "ComputedRows",
    "DayDecision",
    "DayResult",
    "PipelineError",
    "Plan",
    "RunIdentity",
    "RunSummary",
    "compute_rows",
    "current_identity",
    "day_range",
    "decide_days",
    "dry_run",
    "fingerprint_cache",
    "plan_batches",
    "project_day",
    "read_spine_day",
    "read_spine_days",
    "run_pipeline",
    "spine_days",
    "store_versions",
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
    #: Seconds per stage ("read", "skeleton", "enrich", "publish"); a batch's shared stages are
    #: counted on its first day only, so sums over days are the run's.
    stages: dict[str, float] = attrs.field(factory=dict, eq=False)
    #: The day's per-feature statistics as its manifest records them (`pipeline.stats`);
    #: None for a skipped day.
    stats: dict[str, Any] | None = attrs.field(default=None, eq=False, repr=False)

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
    batches: int = 0
    #: Seconds before the first batch (input checks, fingerprints, skip decisions).
    prepare_seconds: float = 0.0

    @property
    def written(self) -> int:
        return sum(d.status in ("written", "empty") for d in self.days)

    @property
    def skipped(self) -> int:
        return sum(d.status == "skipped" for d in self.days)

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.days)

    def stages(self) -> dict[str, float]:
        """Seconds per stage over the run: prepare, read, skeleton, enrich, publish."""
        totals = {"prepare": self.prepare_seconds}
        for day in self.days:
            for stage, seconds in day.stages.items():
                totals[stage] = totals.get(stage, 0.0) + seconds
        return {k: round(v, 3) for k, v in totals.items()}

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
            "batches": self.batches,
            "stages": self.stages(),
            "days": [d.to_dict() for d in self.days],
            "inputs": self.inputs.to_dict() if self.inputs else None,
            "warnings": [
                *(self.inputs.warnings() if self.inputs else []),
                *self.feature_warnings(),
            ],
        }

    def feature_warnings(self) -> list[str]:
        """Over the days this run wrote: features null or constant on every row, filters that
        matched nothing, days without spine rows (`pipeline.stats.stats_warnings`)."""
        return stats_warnings(
            [(d.day.isoformat(), d.status, d.stats) for d in self.days if d.status != "skipped"]
        )


def day_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from `start` to `end`, both included; raises PipelineError if start > end."""
    if start > end:
        raise PipelineError(f"start {start} is after end {end}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _micros(day: dt.date) -> int:
    return (day - EPOCH).days * DAY_US


class Plan:
    """A compiled plan bound to a workspace: what a run reads, computes and writes, taken from
    the typed operators (never from the catalog again). Its sources are read through `reader`
    (None: the registered default, the parquet reader)."""

    def __init__(
        self,
        pipeline: OperatorPipeline,
        workspace: str | Path,
        reader: SourceReaderPort | None = None,
    ) -> None:
        self.workspace = Path(workspace)
        self._reader = reader
        self.pipeline = pipeline.bind(self.workspace)
        spine = self.pipeline.spine
        self.spine_source = spine.source
        self.keys: list[str] = list(spine.keys)
        self.timestamp: str = spine.source.timestamp
        self.labels: list[str] = list(spine.labels)
        self.naive_spine = spine.source.naive_timestamps_are_utc
        self.spine_limit = spine.max_invalid_fraction
        self.schema = self.pipeline.schema
        self.joins: list[tuple[Operator, FeatureJoin]] = self.pipeline.feature_ops
        self.feature_ops: list[tuple[Operator, list[PitSpec]]] = [
            (op, list(join.specs)) for op, join in self.joins
        ]
        self.sources: dict[str, SourceSpec] = dict(
            (name, src) for name, src in self.pipeline.sources() if name != "spine"
        )
        self.pool_requests: list[PoolRequest] = list(self.pipeline.pool_requests)

    @property
    def reader(self) -> SourceReaderPort:
        """What reads the plan's sources (the default reader when none was given)."""
        return source_reader(self._reader)

    def input_files(self) -> dict[str, list[str]]:
        """Every input file, per source; raises PitError naming a source with no files."""
        reader = self.reader
        files = {"spine": reader.files(self.spine_source)}
        for name, source in self.sources.items():
            files[name] = reader.files(source)
        return files

    def check_inputs(
        self, files: dict[str, list[str]], days: Sequence[dt.date], policy: InputPolicy
    ) -> InputReport:
        """Every input file checked against its definition and the unusable rows counted
        (`daedalus.pipeline.inputs.check_inputs`); raises PitError before any write."""
        sources = {
            join.view: (join.source, join.keys, join.max_invalid_fraction)
            for _op, join in self.joins
        }
        return check_inputs(
            spine=self.spine_source,
            spine_keys=self.keys,
            spine_limit=self.spine_limit,
            sources=sources,
            files=files,
            days=days,
            policy=policy,
            reader=self.reader,
        )


@attrs.frozen
class RunIdentity:
    """What each day's manifest must still say for the day to be current: the contract and
    definition hashes, the embedding store versions, and per source the digest of the input
    rows the day can see (`daedalus.pipeline.staleness`): appending later data, touching or
    rewriting a file with the same rows makes no day stale."""

    contract_hash: str
    definition_hash: str
    store_versions: dict[str, str]
    fingerprints: dict[str, SourceFingerprint]
    visible: dict[str, VisibleRange]

    def for_day(self, day: dt.date) -> dict[str, Any]:
        return {
            "contract_hash": self.contract_hash,
            "definition_hash": self.definition_hash,
            "store_versions": self.store_versions,
            INPUTS_KEY: day_input_digests(self.fingerprints, self.visible, day),
        }

    def why_stale(self, manifest: dict[str, Any] | None, day: dt.date) -> list[str]:
        """Why a day whose manifest says `manifest` must be computed again (empty: current)."""
        return explain_stale(manifest, self.for_day(day), day, self.visible)

    def spine_days(self) -> list[dt.date]:
        """The days that have spine rows, in order."""
        return _days_of(self.fingerprints["spine"])


def _days_of(fingerprint: SourceFingerprint) -> list[dt.date]:
    found: set[int] = set()
    for f in fingerprint.files:
        found.update(int(h) // 24 for h in f.hours)
    return [EPOCH + dt.timedelta(days=d) for d in sorted(found)]


def spine_days(plan: Plan, cache: FingerprintCache | None = None) -> list[dt.date]:
    """The days the plan's spine has rows for, from the spine's files alone (no source is
    read, no embedding store opened). Raises PitError when the spine has no files."""
    spine = plan.spine_source
    reader = plan.reader
    files = reader.files(spine)
    fingerprint = source_fingerprints(
        files,
        spine.timestamp,
        cache=cache,
        root=plan.workspace,
        columns=spine.schema.names,
        reader=reader,
    )
    return _days_of(fingerprint)


def store_versions(plan: Plan, enricher: EnricherPort | None) -> dict[str, str]:
    """Each embedding store's version, after checking that it can serve the plan's requests.

    Raises EnrichError for a store that cannot serve, PipelineError without an enricher."""
    if not plan.pool_requests:
        return {}
    if enricher is None:
        raise PipelineError("the service asks for embeddings but no enricher is configured")
    return enricher.check(plan.pool_requests)


def current_identity(
    plan: Plan,
    versions: dict[str, str],
    files: dict[str, list[str]],
    cache: FingerprintCache | None = None,
) -> RunIdentity:
    """The identity of every day of `plan` as the inputs are now: each source's files
    fingerprinted (only files `cache` does not know are read), with the range each source's
    features can see. Raises PitError naming a file that cannot be read."""
    specs = [spec for _op, specs in plan.feature_ops for spec in specs]
    visible = {**visible_ranges(specs), "spine": VisibleRange.spine()}
    sources = {"spine": plan.spine_source, **plan.sources}
    reader = plan.reader
    fingerprints = {
        name: source_fingerprints(
            files[name],
            source.timestamp,
            cache=cache,
            root=plan.workspace,
            columns=source.schema.names,
            reader=reader,
        )
        for name, source in sources.items()
    }
    return RunIdentity(
        plan.pipeline.contract_hash,
        plan.pipeline.definition_hash,
        versions,
        fingerprints,
        visible,
    )


def fingerprint_cache(plan: Plan) -> FingerprintCache:
    """The workspace's cache of input file fingerprints (`.daedalus/fingerprints.json`)."""
    return FingerprintCache(plan.workspace / ".daedalus" / "fingerprints.json")


@attrs.frozen
class DayDecision:
    """Whether a day of a run is computed, and why (or why not)."""

    day: dt.date
    compute: bool
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "action": "compute" if self.compute else "skip",
            "why": list(self.reasons),
        }


def decide_days(
    plan: Plan,
    days: Sequence[dt.date],
    identity: RunIdentity,
    sink: SinkPort,
    *,
    force: bool = False,
) -> list[DayDecision]:
    """For each day: computed when forced, not written, stale (its contract, definitions, a
    store version or the input rows it can see changed) or damaged (its files no longer match
    its manifest); skipped when current."""
    out = []
    for day in days:
        if force:
            out.append(DayDecision(day, True, ("--force",)))
            continue
        manifest = sink.read_manifest(plan.pipeline.service, day)
        reasons = identity.why_stale(manifest, day)
        if not reasons:
            damaged = sink.verify_day(plan.pipeline.service, day, thorough=False)
            if damaged:
                reasons = [f"its files do not match its manifest ({len(damaged)} problem(s))"]
        out.append(DayDecision(day, bool(reasons), tuple(reasons) or ("current",)))
    return out


def run_pipeline(
    pipeline: OperatorPipeline,
    start: dt.date,
    end: dt.date,
    *,
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
    batch_rows: int = DEFAULT_BATCH_ROWS,
    reader: SourceReaderPort | None = None,
) -> RunSummary:
    """Train `pipeline` for every day from `start` to `end` (both included).

    Before any write it checks the dates, that every source and the spine have files, that the
    embedding stores can serve the requests, takes the output's lock (`sink.claim`, recorded
    with `holder`; another writer holding it is a SinkError), checks every input file and counts
    the rows that cannot take part (`Plan.check_inputs` under `policy`), checks that the runner
    can run days (a cluster runner connects); any failure raises (PipelineError, PitError,
    EnrichError, SinkError, ...) with nothing written. The lock is held until the run ends.
    Then a day whose manifest still matches (same contract, definitions, inputs and store
    versions) and whose files still match its manifest is skipped unless `force`. The other
    days are grouped into batches of consecutive days of at most `batch_rows` spine rows
    (`plan_batches`), handed to `runner` (default: one after another in this process; a
    cluster runner runs several at once elsewhere), which joins and aggregates a batch's spine
    rows with one aggregator call per feature operator, splits them by day, and for each day
    enriches the rows, checks them against the resolved schema and publishes the day
    atomically. A batched run writes the same bytes as a run of one day per batch. The first day that fails stops the run
    (days in flight are cancelled, none is left half-written) and its error propagates.
    `on_event` receives progress events, always in this thread; `should_cancel` is polled
    between steps and raises Cancelled, leaving no partial day. The inputs are read through
    `reader` (None: the registered default, the parquet reader); `aggregator` reads the
    sources through its own.
    """
    emit = on_event or (lambda _event: None)
    cancelled = should_cancel or (lambda: False)
    runner = runner or LocalDayRunner()
    days = day_range(start, end)
    if aggregator.engine.value != pipeline.engine:
        raise PipelineError(
            f"pipeline was compiled for {pipeline.engine}, aggregator is {aggregator.engine.value}"
        )
    prepared = time.perf_counter()
    plan = Plan(pipeline, workspace, reader)
    files = plan.input_files()
    versions = store_versions(plan, enricher)
    with sink.claim(pipeline.service, holder or {}):
        inputs = plan.check_inputs(files, days, policy or InputPolicy())
        cache = fingerprint_cache(plan)
        identity = current_identity(plan, versions, files, cache)
        decisions = decide_days(plan, days, identity, sink, force=force)
        with contextlib.suppress(OSError):  # a cache that cannot be saved is read again
            cache.save()
        runner.check()
        return _run_days(
            time.perf_counter() - prepared,
            plan,
            decisions,
            identity,
            inputs,
            aggregator,
            enricher,
            sink,
            emit,
            cancelled,
            runner,
            batch_rows,
        )


def dry_run(
    pipeline: OperatorPipeline,
    start: dt.date,
    end: dt.date,
    *,
    workspace: str | Path,
    enricher: EnricherPort | None,
    sink: SinkPort,
    force: bool = False,
    policy: InputPolicy | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    reader: SourceReaderPort | None = None,
) -> dict[str, Any]:
    """What `run_pipeline` would do, writing nothing: the inputs checked as a run checks them,
    then each day with its action (compute or skip) and why, and the batches. Raises as
    `run_pipeline` would before its first write."""
    days = day_range(start, end)
    plan = Plan(pipeline, workspace, reader)
    files = plan.input_files()
    versions = store_versions(plan, enricher)
    inputs = plan.check_inputs(files, days, policy or InputPolicy())
    cache = fingerprint_cache(plan)
    identity = current_identity(plan, versions, files, cache)
    decisions = decide_days(plan, days, identity, sink, force=force)
    todo = [d.day for d in decisions if d.compute]
    batches = plan_batches(todo, inputs.spine.rows_by_day, batch_rows)
    return {
        "service": pipeline.service,
        "engine": pipeline.engine,
        "out_dir": sink.location(pipeline.service),
        "days_to_compute": len(todo),
        "days_to_skip": len(days) - len(todo),
        "days": [d.to_dict() for d in decisions],
        "batches": [{"days": [d.isoformat() for d in b.days], "rows": b.rows} for b in batches],
        "inputs": inputs.to_dict(),
        "warnings": inputs.warnings(),
    }


def _run_days(
    prepare_seconds: float,
    plan: Plan,
    decisions: list[DayDecision],
    identity: RunIdentity,
    inputs: InputReport,
    aggregator: AggregatorPort,
    enricher: EnricherPort | None,
    sink: SinkPort,
    emit: Callable[[dict[str, Any]], None],
    cancelled: Callable[[], bool],
    runner: DayRunnerPort,
    batch_rows: int,
) -> RunSummary:
    pipeline = plan.pipeline
    emit(
        {
            "event": "run_started",
            "service": pipeline.service,
            "days": len(decisions),
            "engine": pipeline.engine,
            "runner": runner.name,
        }
    )
    started = time.perf_counter() - prepare_seconds  # the summary's seconds: the whole run
    results: list[DayResult] = []
    todo: list[dt.date] = []
    for decision in decisions:
        if cancelled():
            raise Cancelled(f"cancelled before {decision.day}")
        if decision.compute:
            todo.append(decision.day)
            continue
        manifest = sink.read_manifest(pipeline.service, decision.day) or {}
        rows = int(manifest.get("rows", 0))
        results.append(DayResult(decision.day, "skipped", rows, 0.0))
        emit({"event": "day_skipped", "day": decision.day.isoformat(), "rows": rows})
    batches = plan_batches(todo, inputs.spine.rows_by_day, batch_rows)
    identities = {day: identity.for_day(day) for day in todo}
    task = BatchTask(plan, identities, aggregator, enricher, sink, runner.name, inputs)
    started_days: set[dt.date] = set()
    done: set[dt.date] = set()

    def on_start(batch: DayBatch) -> None:
        started_days.update(batch.days)
        emit(
            {
                "event": "batch_started",
                "days": [d.isoformat() for d in batch.days],
                "rows": batch.rows,
            }
        )
        for day in batch.days:
            emit({"event": "day_started", "day": day.isoformat()})

    outcomes = runner.run(task, batches, on_start=on_start, should_stop=cancelled)
    try:
        for batch_results in outcomes:
            for result in batch_results:
                results.append(result)
                done.add(result.day)
                emit({"event": "day_done", **result.to_dict()})
            if cancelled() and len(done) < len(todo):
                break
    finally:
        close = getattr(outcomes, "close", None)
        if close is not None:  # leaving early (error, cancel) stops the batches in flight
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
        len(batches),
        prepare_seconds,
    )
    emit({"event": "run_done", **summary.to_dict()})
    return summary


def plan_batches(
    days: Sequence[dt.date], rows_by_day: dict[str, int], budget: int
) -> list[DayBatch]:
    """The days to compute grouped into batches of consecutive days, each holding at most
    `budget` spine rows (a day with more rows than the budget is a batch of its own)."""
    batches: list[DayBatch] = []
    current: list[dt.date] = []
    rows = 0
    for day in days:
        n = rows_by_day.get(day.isoformat(), 0)
        gap = bool(current) and (day - current[-1]).days != 1
        if current and (gap or rows + n > budget):
            batches.append(DayBatch(tuple(current), rows))
            current, rows = [], 0
        current.append(day)
        rows += n
    if current:
        batches.append(DayBatch(tuple(current), rows))
    return batches


@attrs.frozen(eq=False)
class BatchTask:
    """One batch's work, with everything it needs: what a day runner ships to where days run.

    Picklable as long as the adapters are (they hold settings, not connections), so a cluster
    runner can send it to other processes. `runner` is recorded in each day's manifest.
    """

    plan: Plan
    identities: dict[dt.date, dict[str, Any]]
    aggregator: AggregatorPort
    enricher: EnricherPort | None
    sink: SinkPort
    runner: str = "local"
    inputs: InputReport | None = None

    def __call__(self, batch: DayBatch, cancelled: Callable[[], bool]) -> list[DayResult]:
        """Compute the batch and publish each of its days; a PitError names the days."""
        try:
            return _run_batch(self, batch, cancelled)
        except PitError as exc:
            where = f"day {batch.first}" if len(batch.days) == 1 else f"days {batch}"
            raise PitError(f"{where}: {exc}", code=exc.code) from exc


def read_spine_day(plan: Plan, day: dt.date) -> pa.Table:
    """The spine rows with timestamps in `[day, day + 1)`, in the order they were read."""
    return read_spine_days(plan, day, day)


def read_spine_days(plan: Plan, first: dt.date, last: dt.date) -> pa.Table:
    """The spine rows with timestamps in `[first, last + 1)`, in the order they were read."""
    columns = [*plan.keys, plan.timestamp, *plan.labels]
    return read_source(
        plan.spine_source, columns, _micros(first), _micros(last) + DAY_US, reader=plan.reader
    )


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


def _split_by_day(table: pa.Table, plan: Plan, batch: DayBatch) -> list[pa.Table]:
    """The batch's rows of each of its days, each in the order it was read."""
    if len(batch.days) == 1:
        return [table]
    micros = timestamps_to_micros(
        table[plan.timestamp], plan.timestamp, naive_is_utc=plan.naive_spine, where="spine"
    )
    index = pa.array((micros - _micros(batch.first)) // DAY_US)
    return [table.filter(pc.equal(index, i)) for i in range(len(batch.days))]


@attrs.frozen(eq=False)
class ComputedRows:
    """What `compute_rows` gives: the rows in the contract's order and types (embeddings
    included), the run report of the aggregator calls, seconds per feature operator (by
    operator id) and for "enrich", and, when embeddings were pooled, the stores' versions and
    where the pooling ran ("process" or "ray")."""

    table: pa.Table
    report: PitReport
    timings: dict[str, float]
    store_versions: dict[str, str] = attrs.field(factory=dict)
    enriched_in: str | None = None


def compute_rows(
    plan: Plan,
    spine: pa.Table,
    aggregator: AggregatorPort,
    enricher: EnricherPort | None,
    *,
    cancelled: Callable[[], bool] | None = None,
    where: str = "the computation",
) -> ComputedRows:
    """The features and embeddings of `plan` for `spine`'s rows, row for row in its order: one
    aggregator call per feature operator (each given only the keys and the timestamp), the
    projection onto the contract (`project_day`), then one pooling pass of the embeddings
    (`EnricherPort.pool_table`). This is what a training batch computes, so any caller gets the
    bits a run writes for the same rows. `spine` holds the plan's keys and timestamp, plus its
    labels; `cancelled` is polled between steps (raises Cancelled naming `where`). Raises
    PitError for a bad spine or source, EnrichError for a store that cannot serve."""
    cancelled = cancelled or (lambda: False)
    timings: dict[str, float] = {}
    report = PitReport()
    features: dict[str, pa.Array] = {}
    probe = spine.select([*plan.keys, plan.timestamp])
    for op, specs in plan.feature_ops:
        if cancelled():
            raise Cancelled(f"cancelled during {where}")
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
    del probe, features
    if not plan.pool_requests:
        return ComputedRows(table, report, timings)
    if enricher is None:
        raise PipelineError("the service asks for embeddings but no enricher is configured")
    if cancelled():
        raise Cancelled(f"cancelled during {where}")
    pooled = enricher.pool_table(table, plan.pool_requests)  # one enrich pass for all the rows
    timings["enrich"] = pooled.seconds
    return ComputedRows(pooled.table, report, timings, pooled.store_versions, pooled.where)


def _run_batch(task: BatchTask, batch: DayBatch, cancelled: Callable[[], bool]) -> list[DayResult]:
    plan = task.plan
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    spine = read_spine_days(plan, batch.first, batch.last)
    timings["read_spine"] = time.perf_counter() - t0
    rows = compute_rows(
        plan, spine, task.aggregator, task.enricher, cancelled=cancelled, where=str(batch.first)
    )
    del spine
    table, report, store_versions = rows.table, rows.report, rows.store_versions
    timings.update(rows.timings)
    enriched_in = rows.enriched_in
    stale = {
        name: version
        for name, version in store_versions.items()
        if version != task.identities[batch.first]["store_versions"].get(name)
    }
    if stale:  # a store changed since the run checked it: its days would lie about it
        raise PipelineError(
            f"embedding store(s) {', '.join(sorted(stale))} changed during the run; run again",
            code="conflict",
        )
    shared = {
        "batch": {
            "days": [d.isoformat() for d in batch.days],
            "rows": table.num_rows,
            "enriched_in": enriched_in,
        },
        "report": report.to_dict(),
    }
    results = []
    stages = {
        "read": timings["read_spine"],
        "skeleton": sum(timings[op.id] for op, _specs in plan.feature_ops),
        "enrich": timings.get("enrich", 0.0),
    }
    for day, day_table in zip(batch.days, _split_by_day(table, plan, batch), strict=True):
        if cancelled():
            raise Cancelled(f"cancelled during {day}")
        result = _publish_day(task, day, day_table, dict(timings), shared, cancelled)
        if not results:
            result.stages.update(stages)
        results.append(result)
    return results


def _publish_day(
    task: BatchTask,
    day: dt.date,
    table: pa.Table,
    timings: dict[str, float],
    shared: dict[str, Any],
    cancelled: Callable[[], bool],
) -> DayResult:
    """Stage one day's rows and publish the day atomically with its manifest."""
    plan, sink = task.plan, task.sink
    t0 = time.perf_counter()
    # one part a day, written from one contiguous table: the same bytes however the day was
    # batched; its per-feature statistics (manifest "stats") are computed from that same
    # table, so they are the same bits wherever and however the day was computed
    table = table.combine_chunks()
    stats = day_stats(
        table,
        plan.schema,
        specs=[spec for _op, specs in plan.feature_ops for spec in specs],
        embeddings=[r.name for r in plan.pool_requests],
    )
    timings = {**timings, "stats": time.perf_counter() - t0}
    staging = sink.begin_day(plan.pipeline.service, day)
    try:
        sink.write_staged(staging, "part-00000.parquet", table)
        if cancelled():
            raise Cancelled(f"cancelled during {day}")
        manifest = {
            **task.identities[day],
            "service": plan.pipeline.service,
            "day": day.isoformat(),
            "rows": table.num_rows,
            "engine": plan.pipeline.engine,
            "runner": task.runner,
            "worker": f"{os.getpid()}@{socket.gethostname()}",  # the process that computed it
            **shared,
            "inputs": task.inputs.for_day(day) if task.inputs else None,
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "stats": stats,
            "daedalus_version": daedalus.__version__,
            "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        path = sink.commit_day(plan.pipeline.service, day, staging, manifest, plan.schema)
    except BaseException:
        sink.abort_day(staging)
        raise
    status = "written" if table.num_rows else "empty"
    seconds = time.perf_counter() - t0
    return DayResult(day, status, table.num_rows, seconds, path, {"publish": seconds}, stats)
