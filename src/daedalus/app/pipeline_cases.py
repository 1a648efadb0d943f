"""Pipeline use cases: compile, train, status, days, preview, audit (JSON-ready answers)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from daedalus.app.application import FORMATS
from daedalus.app.catalog_cases import CatalogCases
from daedalus.app.errors import AppError
from daedalus.app.jsonable import jsonable
from daedalus.catalog.errors import UnknownName
from daedalus.pipeline.audit import audit_day
from daedalus.pipeline.compiler import compile_service
from daedalus.pipeline.executor import (
    DEFAULT_BATCH_ROWS,
    Cancelled,
    PipelineError,
    Plan,
    RunIdentity,
    current_identity,
    fingerprint_cache,
    run_pipeline,
    spine_days,
    store_versions,
)
from daedalus.pipeline.executor import dry_run as run_dry
from daedalus.pipeline.inputs import InputPolicy
from daedalus.pipeline.operators import OperatorPipeline
from daedalus.pipeline.plan_diff import contract_diff, redefined, stale_summary
from daedalus.pipeline.runner import LocalDayRunner
from daedalus.pipeline.stats import dataset_report, describe_spec
from daedalus.pit.engine import UnknownEngine, parse_engine
from daedalus.pit.errors import PitError
from daedalus.ports import (
    AggregatorPort,
    DayRunnerPort,
    EmbeddingStorePort,
    EnricherPort,
    EnrichError,
    SinkError,
    SinkPort,
    SourceReaderPort,
    StoreRef,
)

__all__ = ["FORMATS", "PipelineCases", "engine_argument", "parse_day"]


def engine_argument(value: Any, field: str = "engine") -> str:
    """An `engine` argument as the engine's name: the application's one check of it (the
    names come from `Engine`). Raises AppError(invalid_argument) naming the field and listing
    the choices."""
    try:
        return parse_engine(value, field).value
    except UnknownEngine as exc:
        raise AppError(
            "invalid_argument", str(exc), {"field": exc.field, "choices": list(exc.choices)}
        ) from None


def parse_day(value: str | dt.date, what: str = "day") -> dt.date:
    """A `YYYY-MM-DD` date; raises AppError(invalid_argument) naming the argument."""
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise AppError(
            "invalid_argument", f"{what} must be a date YYYY-MM-DD, got {value!r}", {"field": what}
        ) from None


@contextmanager
def translate_errors() -> Iterator[None]:
    """Domain errors → AppError with a stable kind, so every surface reports them alike."""
    try:
        yield
    except AppError:
        raise
    except UnknownName as exc:
        raise AppError("not_found", str(exc), {"name": exc.name, "what": exc.what}) from exc
    except PipelineError as exc:
        raise AppError(exc.code, str(exc)) from exc
    except PitError as exc:
        raise AppError("invalid_input", str(exc), {"code": exc.code}) from exc
    except EnrichError as exc:
        raise AppError("invalid_input", str(exc), {"code": "embedding_store"}) from exc
    except SinkError as exc:
        kind = {"storage": "storage", "contract": "internal"}.get(exc.code, "conflict")
        raise AppError(kind, str(exc), exc.data) from exc
    except Cancelled as exc:
        raise AppError("cancelled", str(exc)) from exc
    except OSError as exc:  # a filesystem fault outside the sink (inputs, the run store)
        where = f" {exc.filename}" if exc.filename else ""
        raise AppError("storage", f"cannot access{where}: {exc.strerror or exc}") from exc


class PipelineCases:
    """Training and inspecting a service's datasets. The adapters come from the container."""

    def __init__(
        self,
        *,
        workspace: Path,
        catalog_cases: CatalogCases,
        aggregator_for: Callable[[str], AggregatorPort],
        sink: SinkPort,
        enricher: Callable[[], EnricherPort],
        open_store: Callable[[StoreRef], EmbeddingStorePort],
        default_engine: str = "duckdb",
        day_runner: Callable[[], DayRunnerPort] = LocalDayRunner,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        source_reader: Callable[[], SourceReaderPort] | None = None,
    ) -> None:
        self.workspace = workspace
        self.catalog_cases = catalog_cases
        self._aggregator_for = aggregator_for
        self.sink = sink
        self._enricher = enricher
        self._open_store = open_store
        self.default_engine = default_engine
        self._day_runner = day_runner
        self.batch_rows = batch_rows
        self._source_reader = source_reader

    @property
    def _reader(self) -> SourceReaderPort | None:
        """What reads the inputs (None: the registered default, the parquet reader)."""
        return None if self._source_reader is None else self._source_reader()

    def _engine(self, engine: str | None) -> str:
        return engine_argument(engine or self.default_engine)

    @staticmethod
    def policy(
        max_invalid_fraction: float | None = None, allow_duplicate_spine_rows: bool = False
    ) -> InputPolicy:
        """A run's input policy; raises AppError(invalid_argument) for a fraction outside 0..1."""
        if max_invalid_fraction is not None and (
            isinstance(max_invalid_fraction, bool)
            or not isinstance(max_invalid_fraction, int | float)
            or not 0.0 <= max_invalid_fraction <= 1.0
        ):
            raise AppError(
                "invalid_argument",
                f"max_invalid_fraction must be a number from 0 to 1, got {max_invalid_fraction!r}",
                {"field": "max_invalid_fraction"},
            )
        return InputPolicy(
            None if max_invalid_fraction is None else float(max_invalid_fraction),
            bool(allow_duplicate_spine_rows),
        )

    def pipeline(self, service: str, engine: str | None = None) -> OperatorPipeline:
        with translate_errors():
            return compile_service(service, self.catalog_cases.catalog(), self._engine(engine))

    def compile(self, service: str, engine: str | None = None, fmt: str = "text") -> dict[str, Any]:
        """The service's operator DAG, as text, Mermaid or JSON."""
        if fmt not in FORMATS:
            raise AppError(
                "invalid_argument",
                f"format must be one of {', '.join(FORMATS)}, got {fmt!r}",
                {"field": "format"},
            )
        pipeline = self.pipeline(service, engine)
        rendered: Any = {
            "text": pipeline.to_text,
            "mermaid": pipeline.to_mermaid,
            "json": pipeline.to_dict,
        }[fmt]()
        return {"service": service, "format": fmt, "pipeline": rendered}

    def _needs_enricher(self, pipeline: OperatorPipeline) -> EnricherPort | None:
        return (
            self._enricher() if any(o.kind.value == "enrich" for o in pipeline.operators) else None
        )

    def train(
        self,
        service: str,
        start: str | dt.date,
        end: str | dt.date,
        *,
        engine: str | None = None,
        force: bool = False,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        policy: InputPolicy | None = None,
        holder: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Train the service for every day from start to end; see `run_pipeline`. `holder`
        says who trains (recorded in the output's lock for a second writer to read)."""
        first, last = parse_day(start, "start"), parse_day(end, "end")
        pipeline = self.pipeline(service, engine)
        with translate_errors():
            summary = run_pipeline(
                pipeline,
                first,
                last,
                workspace=self.workspace,
                aggregator=self._aggregator_for(pipeline.engine),
                enricher=self._needs_enricher(pipeline),
                sink=self.sink,
                force=force,
                on_event=on_event,
                should_cancel=should_cancel,
                runner=self._day_runner(),
                policy=policy,
                holder=holder,
                batch_rows=self.batch_rows,
                reader=self._reader,
            )
        return summary.to_dict()

    def _require_workspace(self) -> None:
        if not self.workspace.is_dir():
            raise AppError(
                "invalid_input",
                f"workspace {self.workspace} does not exist",
                {"field": "workspace"},
            )

    def status(self, service: str) -> dict[str, Any]:
        """The days written and whether each is current (and if not, why), the days the spine
        has that are not written, and whether each day's files match its manifest."""
        pipeline = self.pipeline(service)
        self._require_workspace()  # as train says: nothing can be checked
        with translate_errors():
            plan = Plan(pipeline, self.workspace, self._reader)
            try:
                versions = store_versions(plan, self._needs_enricher(pipeline))
                identity: RunIdentity | None = current_identity(
                    plan, versions, plan.input_files(), fingerprint_cache(plan)
                )
                problem = None
            except (PitError, EnrichError) as exc:  # inputs gone: days exist but can't be checked
                identity, problem = None, str(exc)
            written = self.sink.list_days(service)
            days = []
            for day in written:
                manifest = self.sink.read_manifest(service, day) or {}
                problems = self.sink.verify_day(service, day, thorough=False)
                why = None if identity is None else identity.why_stale(manifest, day)
                days.append(
                    {
                        "day": day.isoformat(),
                        "rows": manifest.get("rows"),
                        "engine": manifest.get("engine"),
                        "runner": manifest.get("runner"),
                        "written_at": manifest.get("written_at"),
                        "current": None if why is None else not why,
                        "why": why or [],
                        "files_ok": not problems,
                        "problems": problems,
                    }
                )
            missing = [] if identity is None else sorted(set(identity.spine_days()) - set(written))
        return {
            "service": service,
            "out_dir": self.sink.location(service),
            "days": days,
            "missing": [d.isoformat() for d in missing],
            "problem": problem,
        }

    def catalog_plan(self) -> dict[str, Any]:
        """What the catalog as it is now does to every service's trained output, without
        training: per service, the contract diff between the schema of its most recently
        written day (read from the day's part file) and the resolved schema now (columns
        added, removed, retyped, reordered; a removed or retyped column is a contract break),
        and which written days are stale and why (`RunIdentity.why_stale`, as `status`).
        `ok` is False when any service's contract breaks."""
        catalog = self.catalog_cases.catalog()
        services = []
        for name in sorted(catalog.services):
            pipeline = self.pipeline(name)
            with translate_errors():
                services.append(self._plan_service(pipeline))
        breaking = [s["service"] for s in services if s["contract"] and s["contract"]["breaking"]]
        changed = [s["service"] for s in services if s["state"] not in ("unchanged", "not trained")]
        return {
            "ok": not breaking,
            "services": services,
            "breaking": breaking,
            "changed": changed,
        }

    def _plan_service(self, pipeline: OperatorPipeline) -> dict[str, Any]:
        service = pipeline.service
        entry: dict[str, Any] = {
            "service": service,
            "out_dir": self.sink.location(service),
            "contract_hash": pipeline.contract_hash,
            "definition_hash": pipeline.definition_hash,
            "columns": len(pipeline.schema),
        }
        written = self.sink.list_days(service)
        if not written:
            return {
                **entry,
                "state": "not trained",
                "days_written": 0,
                "trained": None,
                "contract": None,
                "stale": stale_summary([]),
                "problem": None,
            }
        manifests = {d: self.sink.read_manifest(service, d) or {} for d in written}
        order = sorted(written, key=lambda d: (str(manifests[d].get("written_at") or ""), d))
        trained_schema = None
        baseline = None
        for day in reversed(order):  # the most recently written day whose files can be read
            try:
                trained_schema = self.sink.read_day(service, day, limit=0).schema
            except SinkError:
                continue
            baseline = day
            break
        diff = None
        plan = Plan(pipeline, self.workspace, self._reader)
        if trained_schema is not None:
            diff = contract_diff(pa.schema(list(trained_schema)), pipeline.schema)
            recorded_stats = (manifests[baseline].get("stats") or {}).get("columns") or {}
            now = {
                spec.name: describe_spec(spec) for _op, specs in plan.feature_ops for spec in specs
            }
            diff["redefined"] = redefined(recorded_stats, now)
        try:
            versions = store_versions(plan, self._needs_enricher(pipeline))
            identity: RunIdentity | None = current_identity(
                plan, versions, plan.input_files(), fingerprint_cache(plan)
            )
            problem = None
        except (PitError, EnrichError) as exc:  # inputs gone: staleness cannot be decided
            identity, problem = None, str(exc)
        why = [
            (d.isoformat(), [] if identity is None else identity.why_stale(manifests[d], d))
            for d in written
        ]
        stale = stale_summary(why)
        recorded = manifests[baseline] if baseline is not None else manifests[order[-1]]
        if diff is not None and diff["breaking"]:
            state = "contract break"
        elif diff is not None and diff["changed"]:
            state = "contract change"
        elif stale["stale"]:
            state = "stale"
        else:
            state = "unchanged" if identity is not None else "unknown"
        return {
            **entry,
            "state": state,
            "days_written": len(written),
            "trained": {
                "day": None if baseline is None else baseline.isoformat(),
                "contract_hash": recorded.get("contract_hash"),
                "definition_hash": recorded.get("definition_hash"),
                "written_at": recorded.get("written_at"),
                "contracts_in_output": len({m.get("contract_hash") for m in manifests.values()}),
            },
            "definition_changed": recorded.get("definition_hash") != pipeline.definition_hash,
            "contract": diff,
            "stale": stale,
            "days": [{"day": d, "why": w} for d, w in why if w],
            "problem": problem
            or (None if trained_schema is not None else "no written day's files can be read"),
        }

    def dataset_stats(
        self, service: str, start: str | dt.date | None = None, end: str | dt.date | None = None
    ) -> dict[str, Any]:
        """The per-feature statistics of a service's written days from `start` to `end` (both
        optional, included), read from their manifests (no data is read again): per feature
        its totals over the range and its values per day, and the warnings they support
        (`pipeline.stats.dataset_report`)."""
        first = None if start is None else parse_day(start, "start")
        last = None if end is None else parse_day(end, "end")
        if first is not None and last is not None and first > last:
            raise AppError(
                "invalid_argument", f"start {first} is after end {last}", {"field": "start"}
            )
        self.pipeline(service)  # the service must exist
        with translate_errors():
            days = [
                d
                for d in self.sink.list_days(service)
                if (first is None or d >= first) and (last is None or d <= last)
            ]
            manifests = [(d.isoformat(), self.sink.read_manifest(service, d) or {}) for d in days]
        report = dataset_report(service, manifests)
        return jsonable({**report, "out_dir": self.sink.location(service)})

    def spine_days(self, service: str) -> list[str]:
        """The days (YYYY-MM-DD) the service's spine has rows for, read from the spine's files
        alone: cheap enough for a scheduler to ask at start-up (no source read, no store
        opened, Ray not imported)."""
        pipeline = self.pipeline(service)
        self._require_workspace()
        with translate_errors():
            plan = Plan(pipeline, self.workspace, self._reader)
            return [d.isoformat() for d in spine_days(plan, fingerprint_cache(plan))]

    def dry_run(
        self,
        service: str,
        start: str | dt.date,
        end: str | dt.date,
        *,
        engine: str | None = None,
        force: bool = False,
        max_invalid_fraction: float | None = None,
        allow_duplicate_spine_rows: bool = False,
    ) -> dict[str, Any]:
        """What a training run would do, writing nothing: each day to compute or skip, and why,
        and the batches. Raises as the run would before its first write."""
        first, last = parse_day(start, "start"), parse_day(end, "end")
        pipeline = self.pipeline(service, engine)
        policy = self.policy(max_invalid_fraction, allow_duplicate_spine_rows)
        with translate_errors():
            return run_dry(
                pipeline,
                first,
                last,
                workspace=self.workspace,
                enricher=self._needs_enricher(pipeline),
                sink=self.sink,
                force=force,
                policy=policy,
                batch_rows=self.batch_rows,
                reader=self._reader,
            )

    def verify(self, service: str, day: str | dt.date | None = None) -> dict[str, Any]:
        """Every part file of the written days (or of `day`) checked against its manifest:
        present, no extra file, size, sha256 and rows. `ok` is False on any difference."""
        self.pipeline(service)  # the service must exist
        with translate_errors():
            if day is None:
                days = self.sink.list_days(service)
            else:
                d = parse_day(day)
                if self.sink.read_manifest(service, d) is None:
                    raise AppError(
                        "not_found", f"day {d} of {service!r} is not written", {"day": str(d)}
                    )
                days = [d]
            checked = [
                {"day": d.isoformat(), "problems": self.sink.verify_day(service, d)} for d in days
            ]
        return {
            "service": service,
            "out_dir": self.sink.location(service),
            "days": checked,
            "days_checked": len(checked),
            "ok": all(not d["problems"] for d in checked),
        }

    def manifest(self, service: str, day: str | dt.date) -> dict[str, Any]:
        """The manifest of a written day."""
        d = parse_day(day)
        with translate_errors():
            self.catalog_cases.catalog().service(service)  # the service must exist
        manifest = self.sink.read_manifest(service, d)
        if manifest is None:
            raise AppError(
                "not_found", f"day {d} of {service!r} is not written", {"day": d.isoformat()}
            )
        return manifest

    def preview(self, service: str, day: str | dt.date, limit: int = 10) -> dict[str, Any]:
        """The first `limit` rows of a written day, as JSON-ready records."""
        if not 1 <= limit <= 1000:
            raise AppError("invalid_argument", "limit must be from 1 to 1000", {"field": "limit"})
        d = parse_day(day)
        self.manifest(service, d)
        with translate_errors():
            table = self.sink.read_day(service, d, limit=limit)
        return {
            "service": service,
            "day": d.isoformat(),
            "columns": table.column_names,
            "rows": jsonable(table.to_pylist()),  # one format on every surface (ISO 8601)
        }

    def audit(
        self, service: str, day: str | dt.date, sample: int = 100, seed: int = 0
    ) -> dict[str, Any]:
        """Recompute `sample` rows of a written day by brute force; list every difference."""
        if not 1 <= sample <= 100_000:
            raise AppError(
                "invalid_argument", "sample must be from 1 to 100000", {"field": "sample"}
            )
        d = parse_day(day)
        self.manifest(service, d)
        pipeline = self.pipeline(service)
        with translate_errors():
            report = audit_day(
                pipeline,
                d,
                workspace=self.workspace,
                sink=self.sink,
                open_store=self._open_store,
                sample=sample,
                seed=seed,
                reader=self._reader,
            )
        return jsonable(report.to_dict())
