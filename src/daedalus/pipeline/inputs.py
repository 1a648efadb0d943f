"""A run's inputs checked before any write: every file against its definition, and the rows that
cannot take part counted, reported and refused above a threshold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from daedalus.pit.errors import PitError
from daedalus.pit.sources import file_problems, read_source, source_reader, timestamps_to_micros
from daedalus.pit.spec import SourceSpec
from daedalus.ports import SourceFile, SourceReaderPort, SourceReadError

__all__ = [
    "DEFAULT_MAX_INVALID_FRACTION",
    "InputPolicy",
    "InputReport",
    "SourceCounts",
    "SpineCounts",
    "check_inputs",
]

#: The share of a source's rows that may be unusable (null event time, null entity key) when
#: neither the run nor the definition says otherwise.
DEFAULT_MAX_INVALID_FRACTION = 0.01
#: Problems listed in one error message (the total is always given).
_LISTED = 20
DAY_US = 86_400_000_000
EPOCH = dt.date(1970, 1, 1)


@attrs.frozen
class InputPolicy:
    """How a run treats rows that cannot take part.

    `max_invalid_fraction` overrides every definition's `max_invalid_fraction` for this run
    (None: the definition's value, else `DEFAULT_MAX_INVALID_FRACTION`).
    `allow_duplicate_spine_rows` keeps spine rows that repeat the entity keys and timestamp of
    another row (they are always counted); without it they are an error.
    """

    max_invalid_fraction: float | None = attrs.field(default=None)
    allow_duplicate_spine_rows: bool = False

    @max_invalid_fraction.validator
    def _fraction(self, _attribute: Any, value: float | None) -> None:
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"max_invalid_fraction must be from 0 to 1, got {value!r}")

    def limit(self, declared: float | None) -> float:
        """The threshold for one source: this run's, else the definition's, else the default."""
        if self.max_invalid_fraction is not None:
            return self.max_invalid_fraction
        return DEFAULT_MAX_INVALID_FRACTION if declared is None else declared


@attrs.frozen
class SourceCounts:
    """One source's files and the rows of them that cannot take part (they match nothing)."""

    files: int
    rows: int
    null_timestamp: int
    null_key: int
    unusable: int  # rows with a null timestamp or a null key (each row counted once)
    limit: float

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class SpineCounts:
    """The spine's files, its rows without a timestamp, and its duplicate rows in the run."""

    files: int
    rows: int
    null_timestamp: int
    limit: float
    duplicate_rows: int  # rows in the run's days repeating the keys and timestamp of another
    duplicates_by_day: dict[str, int] = attrs.field(factory=dict)
    rows_by_day: dict[str, int] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class InputReport:
    """What the input check found: counts per source and for the spine (run summary, manifest)."""

    sources: dict[str, SourceCounts]
    spine: SpineCounts

    def to_dict(self) -> dict[str, Any]:
        return {
            "spine": self.spine.to_dict(),
            "sources": {k: v.to_dict() for k, v in self.sources.items()},
        }

    def for_day(self, day: dt.date) -> dict[str, Any]:
        """The part of the report a day's manifest records."""
        iso = day.isoformat()
        return {
            "spine_rows": self.spine.rows_by_day.get(iso, 0),
            "spine_duplicate_rows": self.spine.duplicates_by_day.get(iso, 0),
            "spine_null_timestamp": self.spine.null_timestamp,
            "sources": {
                k: {"rows": v.rows, "null_timestamp": v.null_timestamp, "null_key": v.null_key}
                for k, v in self.sources.items()
            },
        }

    def warnings(self) -> list[str]:
        """Rows that were counted and left out, in words (empty when every row took part)."""
        out = []
        for name, counts in [("spine", self.spine), *self.sources.items()]:
            parts = []
            if counts.null_timestamp:
                parts.append(f"{counts.null_timestamp:,} with a null timestamp")
            if isinstance(counts, SourceCounts) and counts.null_key:
                parts.append(f"{counts.null_key:,} with a null key")
            if parts:
                out.append(
                    f"{name}: {' and '.join(parts)} of {counts.rows:,} rows can match nothing "
                    f"(limit {counts.limit:.2%})"
                )
        if self.spine.duplicate_rows:
            out.append(
                f"spine: {self.spine.duplicate_rows:,} row(s) repeat the keys and timestamp of "
                "another row in the run's days (kept)"
            )
        return out


def _footer(reader: SourceReaderPort, path: str, problems: list[str]) -> SourceFile | None:
    try:
        return reader.footer(path)
    except SourceReadError as exc:
        problems.append(f"{path}: not a readable parquet file ({exc.reason[:120]})")
        return None


def _count_file(
    reader: SourceReaderPort, footer: SourceFile, keys: Sequence[str], timestamp: str
) -> tuple[int, int, int]:
    """(null timestamps, null keys, rows with either) of one file: read only when the footer's
    statistics do not already say there are none."""
    if footer.nulls([*keys, timestamp]) is False:
        return 0, 0, 0
    try:
        table = reader.read_file(footer.path, [*keys, timestamp])
    except SourceReadError as exc:
        raise PitError(f"{exc.where}: cannot read: {exc.reason}", code="bad_source") from exc
    null_ts = table[timestamp].is_null()
    null_key = None
    for key in keys:
        mask = table[key].is_null()
        null_key = mask if null_key is None else pc.or_(null_key, mask)
    assert null_key is not None
    either = pc.or_(null_ts, null_key)
    return (
        int(pc.sum(null_ts).as_py() or 0),
        int(pc.sum(null_key).as_py() or 0),
        int(pc.sum(either).as_py() or 0),
    )


def _check_files(
    reader: SourceReaderPort,
    source: SourceSpec,
    paths: Sequence[str],
    keys: Sequence[str],
    problems: list[str],
) -> tuple[int, int, int, int]:
    """Check every file of a source; (rows, null timestamps, null keys, unusable rows)."""
    rows = null_ts = null_key = unusable = 0
    for path in paths:
        footer = _footer(reader, path, problems)
        if footer is None:
            continue
        found = file_problems(source, path, footer.schema)
        if found:
            problems.extend(found)
            continue
        rows += footer.rows
        a, b, c = _count_file(reader, footer, keys, source.timestamp)
        null_ts, null_key, unusable = null_ts + a, null_key + b, unusable + c
    return rows, null_ts, null_key, unusable


def _refuse(name: str, what: str, unusable: int, rows: int, limit: float, setting: str) -> str:
    return (
        f"{name}: {unusable:,} of {rows:,} rows ({unusable / rows:.2%}) have {what}, above the "
        f"limit of {limit:.2%}; fix the data, or raise the limit ({setting} or "
        "--max-invalid-fraction)"
    )


def check_inputs(
    *,
    spine: SourceSpec,
    spine_keys: Sequence[str],
    spine_limit: float | None,
    sources: dict[str, tuple[SourceSpec, Sequence[str], float | None]],
    files: dict[str, list[str]],
    days: Sequence[dt.date],
    policy: InputPolicy,
    reader: SourceReaderPort | None = None,
) -> InputReport:
    """Check every input file of a run before anything is written, and count what cannot take
    part.

    `sources` maps each view to its SourceSpec, its entity keys and its declared
    `max_invalid_fraction`; `files` holds the expanded files per source ("spine" for the spine).
    Every file's footer is read and its schema checked against the definition (a declared
    column missing, a type that cannot be read losslessly, a tz-naive time where the definition
    does not allow it, an unreadable file). Rows with a null timestamp or a null key are counted
    (from the footers' statistics, reading those columns only when the statistics show nulls or
    lack counts) and refused above the limit; a spine row with a null key is always an error;
    spine rows of the run's days that repeat the keys and timestamp of another are counted, and
    refused unless `policy.allow_duplicate_spine_rows`.

    Files are read through `reader` (None: the registered default, the parquet reader).

    Raises PitError (code "bad_input") naming every file, column and type at fault, or the
    counts and the limit that were exceeded.
    """
    reader = source_reader(reader)
    problems: list[str] = []
    counts: dict[str, SourceCounts] = {}
    for name, (source, keys, declared) in sources.items():
        rows, null_ts, null_key, unusable = _check_files(
            reader, source, files[name], keys, problems
        )
        limit = policy.limit(declared)
        counts[name] = SourceCounts(len(files[name]), rows, null_ts, null_key, unusable, limit)
        if rows and unusable / rows > limit:
            what = "a null timestamp or a null key"
            problems.append(
                _refuse(name, what, unusable, rows, limit, f"source.max_invalid_fraction of {name}")
            )
    rows, null_ts, null_key, _unusable = _check_files(
        reader, spine, files["spine"], spine_keys, problems
    )
    limit = policy.limit(spine_limit)
    if null_key:
        problems.append(
            f"spine: {null_key:,} row(s) have a null entity key ({', '.join(spine_keys)}); every "
            "spine row needs its keys"
        )
    if rows and null_ts / rows > limit:
        problems.append(
            _refuse("spine", "a null timestamp", null_ts, rows, limit, "spine.max_invalid_fraction")
        )
    if problems:  # a file read by several views is reported once
        raise _input_error(list(dict.fromkeys(problems)))
    by_day, dup_by_day = _spine_days(spine, spine_keys, days, reader)
    duplicates = sum(dup_by_day.values())
    spine_counts = SpineCounts(
        len(files["spine"]), rows, null_ts, limit, duplicates, dup_by_day, by_day
    )
    if duplicates and not policy.allow_duplicate_spine_rows:
        listed = ", ".join(f"{d}: {n:,}" for d, n in sorted(dup_by_day.items())[:10])
        raise PitError(
            f"spine: {duplicates:,} row(s) repeat the entity keys and timestamp of another row "
            f"({listed}); remove the duplicates (a spine file copied twice?), or pass "
            "--allow-duplicate-spine-rows to keep them",
            code="duplicate_spine_rows",
        )
    return InputReport(counts, spine_counts)


def _input_error(problems: list[str]) -> PitError:
    head = "\n  ".join(problems[:_LISTED])
    more = f"\n  … and {len(problems) - _LISTED} more" if len(problems) > _LISTED else ""
    noun = "problem" if len(problems) == 1 else "problems"
    return PitError(
        f"the inputs were refused before any write ({len(problems)} {noun}):\n  {head}{more}",
        code="bad_input",
    )


def _spine_days(
    spine: SourceSpec, keys: Sequence[str], days: Sequence[dt.date], reader: SourceReaderPort
) -> tuple[dict[str, int], dict[str, int]]:
    """Rows per day and duplicate rows per day (same keys and timestamp) over the run's days."""
    if not days:
        return {}, {}
    lo = (min(days) - EPOCH).days * DAY_US
    hi = (max(days) - EPOCH).days * DAY_US + DAY_US
    # every spine column: a value that cannot be decoded is found here, before any write
    table = read_source(spine, spine.schema.names, lo, hi, reader=reader)
    micros = timestamps_to_micros(
        table[spine.timestamp],
        spine.timestamp,
        naive_is_utc=spine.naive_timestamps_are_utc,
        where="spine",
    )
    day_index = (micros - lo) // DAY_US
    first = min(days)
    by_day = {
        (first + dt.timedelta(days=int(i))).isoformat(): int(n)
        for i, n in zip(*np.unique(day_index, return_counts=True), strict=True)
    }
    key_table = table.select(keys).append_column("__t", pa.array(micros))
    grouped = key_table.append_column("__d", pa.array(day_index)).group_by([*keys, "__t", "__d"])
    dup = grouped.aggregate([([], "count_all")])
    repeated = dup.filter(pc.greater(dup["count_all"], 1))
    dup_by_day: dict[str, int] = {}
    for d, n in zip(repeated["__d"].to_pylist(), repeated["count_all"].to_pylist(), strict=True):
        iso = (first + dt.timedelta(days=int(d))).isoformat()
        dup_by_day[iso] = dup_by_day.get(iso, 0) + int(n) - 1
    return by_day, dup_by_day
