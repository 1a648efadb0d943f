"""The application API every surface calls: one method per use case, described once in USE_CASES.

The CLI, the JSON-RPC server, the MCP server and Dagster hold no feature logic: they translate
their inputs into these calls and the answers (JSON-ready dicts) into their outputs. USE_CASES
is the single description of names, parameters and whether a case writes, from which the RPC
method table, its OpenRPC document and the MCP tools' input schemas are derived.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from daedalus.app import catalog_files
from daedalus.app.arguments import check_arguments
from daedalus.app.clip import clip
from daedalus.app.errors import AppError
from daedalus.app.settings import Settings
from daedalus.pit.engine import ENGINE_NAMES

if TYPE_CHECKING:  # only passed in: the table stays light to import (`daeda --help`)
    from daedalus.app.catalog_cases import CatalogCases
    from daedalus.app.demo_cases import DemoCases
    from daedalus.app.jobs import JobCases
    from daedalus.app.pipeline_cases import PipelineCases

__all__ = ["FORMATS", "USE_CASES", "Application", "Param", "UseCase"]

#: The formats pipeline.compile renders a DAG in.
FORMATS = ("text", "mermaid", "json")

#: The most characters of a caller's value (a path) that an error message quotes.
_QUOTE = 200


def _clip(text: str) -> str:
    return clip(text, _QUOTE)


def _quote(text: str) -> str:
    return repr(_clip(text))


@attrs.frozen
class Param:
    """One parameter of a use case, with its JSON-schema type."""

    name: str
    schema: dict[str, Any]
    description: str
    required: bool = True
    default: Any = None


@attrs.frozen
class UseCase:
    """A use case: its method name (`noun.verb`), what it does, its parameters, and whether it
    writes or starts work (surfaces guard those, e.g. with a bearer token)."""

    name: str
    method: str
    summary: str
    params: tuple[Param, ...] = ()
    writes: bool = False

    def input_schema(self) -> dict[str, Any]:
        props = {}
        for p in self.params:
            prop = {**p.schema, "description": p.description}
            if not p.required and p.default is not None:
                prop["default"] = p.default
            props[p.name] = prop
        return {
            "type": "object",
            "properties": props,
            "required": [p.name for p in self.params if p.required],
            "additionalProperties": False,
        }


_DATE = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$", "format": "date"}
_NAME = {"type": "string", "minLength": 1, "maxLength": 200}
_SERVICE = Param("service", _NAME, "A feature service name, e.g. feed_ranking.")
_DAY = Param("day", _DATE, "A day (YYYY-MM-DD) that has been written.")
_ENGINE = Param(
    "engine",
    {"type": "string", "enum": list(ENGINE_NAMES)},  # from `Engine`, the one list of engines
    "The compute engine (both give the same bits).",
    required=False,
)

_TRAIN_PARAMS = (
    _SERVICE,
    Param("start", _DATE, "First day (YYYY-MM-DD)."),
    Param("end", _DATE, "Last day, included."),
    _ENGINE,
    Param(
        "force",
        {"type": "boolean"},
        "Recompute days that are current.",
        required=False,
        default=False,
    ),
    Param(
        "max_invalid_fraction",
        {"type": "number", "minimum": 0, "maximum": 1},
        "The largest share of any source's rows that may be unusable (null time or key) for "
        "this run (default: each definition's max_invalid_fraction, else 0.01).",
        required=False,
    ),
    Param(
        "allow_duplicate_spine_rows",
        {"type": "boolean"},
        "Keep spine rows that repeat the keys and timestamp of another (counted); without it "
        "they are an error.",
        required=False,
        default=False,
    ),
)

USE_CASES: tuple[UseCase, ...] = (
    UseCase(
        "catalog_list",
        "catalog.list",
        "List entities, feature views, feature services and embedding stores.",
    ),
    UseCase(
        "catalog_describe",
        "catalog.describe",
        "Describe one view, service, embedding store or entity.",
        (Param("name", _NAME, "The view, service, store or entity name."),),
    ),
    UseCase(
        "catalog_validate",
        "catalog.validate",
        "Check a catalog directory and list every error with file, line and column.",
        (
            Param(
                "directory",
                {"type": "string"},
                "A directory inside the workspace (default: the configured catalog).",
                required=False,
            ),
        ),
    ),
    UseCase(
        "catalog_validate_data",
        "catalog.validate_data",
        "Check the catalog against the workspace's data without training: every file of every "
        "source and spine against its declared schema (column, declared and found type, time "
        "zone), and every filter value against the values that occur (with the closest ones).",
    ),
    UseCase(
        "catalog_plan",
        "catalog.plan",
        "What the catalog as it is now does to each service's trained output, without "
        "training: the contract diff against the last written day (columns added, removed, "
        "retyped, reordered; removed or retyped is a contract break) and which written days "
        "become stale and why.",
    ),
    UseCase(
        "service_schema",
        "service.schema",
        "The resolved schema (the column-level contract) of a service.",
        (_SERVICE,),
    ),
    UseCase(
        "pipeline_compile",
        "pipeline.compile",
        "Compile a service into its operator DAG.",
        (
            _SERVICE,
            Param(
                "format",
                {"type": "string", "enum": list(FORMATS)},
                "text, mermaid or json.",
                required=False,
                default="text",
            ),
            _ENGINE,
        ),
    ),
    UseCase(
        "train_start",
        "pipeline.train",
        "Start training a service over a date range as a background job; returns the job.",
        _TRAIN_PARAMS,
        writes=True,
    ),
    UseCase(
        "train_dry_run",
        "pipeline.dry_run",
        "What pipeline.train would do, writing nothing: the inputs checked, each day to compute "
        "or skip and why, and the batches.",
        _TRAIN_PARAMS,
    ),
    UseCase(
        "job_status",
        "job.status",
        "A job's state, progress, result or error.",
        (Param("job_id", _NAME, "The job id returned by pipeline.train."),),
    ),
    UseCase(
        "job_list",
        "job.list",
        "The most recent jobs, newest first.",
        (
            Param(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": 1000},
                "How many.",
                required=False,
                default=20,
            ),
        ),
    ),
    UseCase(
        "job_cancel",
        "job.cancel",
        "Cancel a queued or running job (no partial day is left).",
        (Param("job_id", _NAME, "The job to cancel."),),
        writes=True,
    ),
    UseCase(
        "days_list",
        "days.list",
        "The days written for a service and whether each is current.",
        (_SERVICE,),
    ),
    UseCase("day_manifest", "days.manifest", "The manifest of a written day.", (_SERVICE, _DAY)),
    UseCase(
        "day_preview",
        "days.preview",
        "The first rows of a written day.",
        (
            _SERVICE,
            _DAY,
            Param(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": 1000},
                "How many rows.",
                required=False,
                default=10,
            ),
        ),
    ),
    UseCase(
        "day_audit",
        "days.audit",
        "Recompute sampled rows of a written day by brute force and check every row against "
        "the spine (labels, row count, missing, extra or duplicated rows); lists each difference.",
        (
            _SERVICE,
            _DAY,
            Param(
                "sample",
                {"type": "integer", "minimum": 1, "maximum": 100000},
                "How many rows to check.",
                required=False,
                default=100,
            ),
            Param("seed", {"type": "integer"}, "Which rows.", required=False, default=0),
        ),
    ),
    UseCase(
        "dataset_stats",
        "dataset.stats",
        "Per-feature statistics of a service's written days (null count, min, max, distinct "
        "values, list lengths) from their manifests, with warnings about features that are "
        "null or constant on every row, filters that matched nothing and empty days.",
        (
            _SERVICE,
            Param("start", _DATE, "First day (default: the first written).", required=False),
            Param("end", _DATE, "Last day, included (default: the last written).", required=False),
        ),
    ),
    UseCase(
        "days_verify",
        "days.verify",
        "Check a service's written days (or one day) against their manifests: every part "
        "file's size, checksum and rows.",
        (
            _SERVICE,
            Param("day", _DATE, "Only this day (default: every written day).", required=False),
        ),
    ),
)


class Application:
    """The use cases, with their inputs checked (paths confined to the workspace)."""

    def __init__(
        self,
        settings: Settings,
        catalog: CatalogCases,
        pipeline: PipelineCases,
        jobs: JobCases,
        demo: DemoCases | None = None,
    ) -> None:
        self.settings = settings
        self._catalog = catalog
        self._pipeline = pipeline
        self.jobs = jobs
        self._demo = demo
        # Every catalog file is resolved and confined before it is read: a `*.yaml` in the
        # catalog that links outside must not be read (its text would be quoted in errors).
        catalog.file_guard = self.confine_catalog_file

    def confine(self, path: str | Path, what: str = "path") -> Path:
        """`path` resolved (symlinks included) inside the workspace; raises AppError(forbidden)
        if it escapes. The message quotes at most `_QUOTE` characters of `path`."""
        candidate = Path(path)
        resolved = (
            candidate if candidate.is_absolute() else self.settings.workspace / candidate
        ).resolve()
        if not resolved.is_relative_to(self.settings.workspace):
            raise AppError(
                "forbidden",
                f"{what} {_quote(str(path))} is outside the workspace {self.settings.workspace}",
                {"field": what},
            )
        return resolved

    def confine_catalog_file(self, path: Path, real: Path) -> None:
        """Refuse (AppError forbidden, naming `path`) a catalog file whose real path (`real`,
        symlinks resolved) is outside both the workspace and the configured catalog directory
        (which the operator chose, and which may lie outside the workspace). Nothing of the
        file is read or quoted."""
        roots = (self.settings.workspace, self.settings.catalog_dir)
        if not any(real.is_relative_to(root) for root in roots):
            raise AppError(
                "forbidden",
                f"catalog file {_quote(str(path))} resolves outside the workspace "
                f"{self.settings.workspace} (a symlink?); it was not read",
                {"file": _clip(str(path))},
            )

    def call(self, name: str, arguments: dict[str, Any], **options: Any) -> Any:
        """Run use case `name` with keyword `arguments` (already schema-checked by the surface).

        `options` are in-process extras no schema describes (the CLI trains with `wait` and
        `on_event`); remote surfaces pass none."""
        case = next((c for c in USE_CASES if c.name == name), None)
        if case is None:
            raise AppError("not_found", f"unknown use case {name!r}")
        known = {p.name for p in case.params}
        extra = set(arguments) - known
        if extra:
            raise AppError(
                "invalid_argument",
                f"unexpected argument(s) {', '.join(sorted(extra))} for {case.method}",
                {"field": sorted(extra)[0]},
            )
        missing = [p.name for p in case.params if p.required and p.name not in arguments]
        if missing:
            raise AppError(
                "invalid_argument",
                f"missing argument(s) {', '.join(missing)} for {case.method}",
                {"field": missing[0]},
            )
        return getattr(self, name)(**arguments, **options)

    def request(self, name: str, arguments: dict[str, Any]) -> Any:
        """Run use case `name` for a remote caller (JSON-RPC, MCP): `arguments` are JSON values,
        checked against the case's schema first (`ArgumentsError`, kind invalid_argument, lists
        every violation) and converted as the case takes them."""
        case = next((c for c in USE_CASES if c.name == name), None)
        if case is None:
            raise AppError("not_found", f"unknown use case {_quote(name)}")
        return self.call(name, check_arguments(case, arguments))

    def catalog_files(self) -> list[dict[str, Any]]:
        """`{"name", "size"}` of each YAML file of the catalog directory that may be read
        (`confine_catalog_file`, symlinks resolved), for a surface that serves them."""
        return catalog_files.list_files(self.settings.catalog_dir, self.confine_catalog_file)

    def catalog_file(self, name: str) -> str:
        """The text of the catalog file `name` (as `catalog_files` lists it); AppError
        not_found for another name, forbidden for a file that resolves outside."""
        return catalog_files.read_file(self.settings.catalog_dir, self.confine_catalog_file, name)

    # -- the use cases ------------------------------------------------------------------------

    def catalog_list(self) -> dict[str, Any]:
        return self._catalog.list_catalog()

    def catalog_describe(self, name: str) -> dict[str, Any]:
        return self._catalog.describe(name)

    def catalog_validate(self, directory: str | None = None) -> dict[str, Any]:
        target = self.confine(directory, "directory") if directory is not None else None
        return self._catalog.validate(target)

    def catalog_validate_data(self) -> dict[str, Any]:
        return self._catalog.validate_data(self.settings.workspace)

    def catalog_plan(self) -> dict[str, Any]:
        return self._pipeline.catalog_plan()

    def dataset_stats(
        self, service: str, start: str | None = None, end: str | None = None
    ) -> dict[str, Any]:
        return self._pipeline.dataset_stats(service, start, end)

    def dataset_stats_html(self, report: dict[str, Any]) -> str:
        """`dataset_stats`' answer as a self-contained HTML page (inline SVG charts)."""
        from daedalus.pipeline.stats import render_html

        return render_html(report)

    def service_schema(self, service: str) -> dict[str, Any]:
        return self._catalog.service_schema(service)

    def pipeline_compile(
        self, service: str, format: str = "text", engine: str | None = None
    ) -> dict[str, Any]:
        return self._pipeline.compile(service, engine, format)

    def train_start(
        self,
        service: str,
        start: str,
        end: str,
        engine: str | None = None,
        force: bool = False,
        max_invalid_fraction: float | None = None,
        allow_duplicate_spine_rows: bool = False,
        *,
        wait: bool = False,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """The job, started in the background; with `wait` (in-process callers) run here and
        returned finished, `on_event` receiving its progress events."""
        return self.jobs.start_training(
            service,
            start,
            end,
            engine=engine,
            force=force,
            max_invalid_fraction=max_invalid_fraction,
            allow_duplicate_spine_rows=allow_duplicate_spine_rows,
            wait=wait,
            on_event=on_event,
        )

    def train_dry_run(
        self,
        service: str,
        start: str,
        end: str,
        engine: str | None = None,
        force: bool = False,
        max_invalid_fraction: float | None = None,
        allow_duplicate_spine_rows: bool = False,
    ) -> dict[str, Any]:
        return self._pipeline.dry_run(
            service,
            start,
            end,
            engine=engine,
            force=force,
            max_invalid_fraction=max_invalid_fraction,
            allow_duplicate_spine_rows=allow_duplicate_spine_rows,
        )

    def job_status(self, job_id: str) -> dict[str, Any]:
        return self.jobs.status(job_id)

    def job_list(self, limit: int = 20) -> dict[str, Any]:
        return {"jobs": self.jobs.list(limit)}

    def job_cancel(self, job_id: str) -> dict[str, Any]:
        return self.jobs.cancel(job_id)

    def days_list(self, service: str) -> dict[str, Any]:
        return self._pipeline.status(service)

    def day_manifest(self, service: str, day: str) -> dict[str, Any]:
        return self._pipeline.manifest(service, day)

    def day_preview(self, service: str, day: str, limit: int = 10) -> dict[str, Any]:
        return self._pipeline.preview(service, day, limit)

    def day_audit(self, service: str, day: str, sample: int = 100, seed: int = 0) -> dict[str, Any]:
        return self._pipeline.audit(service, day, sample, seed)

    def days_verify(self, service: str, day: str | None = None) -> dict[str, Any]:
        return self._pipeline.verify(service, day)

    # -- the demo workspace (the CLI's `demo init`; Dagster's fallback first partition) -------

    def _demo_cases(self) -> DemoCases:
        if self._demo is None:
            raise AppError("internal", "this application was built without the demo cases")
        return self._demo

    def demo_init(
        self, directory: str | Path, scale: str = "small", seed: int = 7, overwrite: bool = False
    ) -> dict[str, Any]:
        """Write the seeded demo workspace into `directory` (see `DemoCases.init`)."""
        return self._demo_cases().init(Path(directory), scale, seed, overwrite)

    def demo_start(self) -> str | None:
        """The first day the workspace's demo marker records (YYYY-MM-DD), or None."""
        day = self._demo_cases().start(self.settings.workspace)
        return None if day is None else day.isoformat()
