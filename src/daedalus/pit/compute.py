"""The compute API: point-in-time rolling aggregates and as-of joins over an Arrow spine.

Every feature is turned into exact integer window work for a `WindowKernel` (the engine), and
the kernel's integers are turned back into typed values here. Because the kernel only ever does
integer arithmetic, every engine that honours the kernel contract returns the same bits:

- count → COUNT of an indicator; count_distinct → two lifetime COUNTs, of the rows before t
  and of the rows whose value recurs or leaves the window before t (`distinct_bounds`);
- sum, mean, stddev of floats → exact SUMs of limbs of each value (and of its square),
  rounded once, correctly (`daedalus.pit.exact`): a sum equals `math.fsum` of the window; the
  limbs cover the column's dense exponent band, and the few values far outside it (sparse
  bands) are summed by a second kernel call over their rows alone, then added exactly;
- min, max → MIN / MAX of an order-preserving int64 key (IEEE totalOrder for floats);
- first, last, last_n → MIN / MAX of each row's rank in the total order (ts, created, value),
  plus COUNT for last_n, which then reads the newest n rows of the window by rank;
- as-of → MAX of rank (ts, created, read position) over rows whose visibility time
  `max(ts + delay, created)` is before t; the TTL is checked on the chosen row.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from daedalus.catalog.dtypes import format_dtype
from daedalus.catalog.functions import is_value_type_supported
from daedalus.catalog.model import AggFunction, FilterDef
from daedalus.pit import exact
from daedalus.pit.errors import PitError
from daedalus.pit.kernel import (
    KEY,
    PROBE_TIME,
    WindowKernel,
    WindowOp,
    WindowRequest,
    key_chunks,
)
from daedalus.pit.sources import read_source, timestamps_to_micros
from daedalus.pit.spec import AggregationSpec, AsOfSpec, PitSpec, SourceSpec

if TYPE_CHECKING:
    from daedalus.ports import SourceReaderPort

__all__ = ["PitReport", "compute_pit_table", "spine_times", "validate_spine"]


@attrs.define
class PitReport:
    """What a computation noticed in its inputs (for the run report and manifests)."""

    source_rows: dict[str, int] = attrs.field(factory=dict)
    nan_values: dict[str, int] = attrs.field(factory=dict)
    null_key_rows: dict[str, int] = attrs.field(factory=dict)
    asof_ties: dict[str, int] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, dict[str, int]]:
        return attrs.asdict(self)


# -- the spine -------------------------------------------------------------------------------


def validate_spine(
    spine: pa.Table, keys: Sequence[str], timestamp: str, *, naive_is_utc: bool = False
) -> None:
    """Raise PitError if the spine lacks a key or the timestamp, or has null keys/times."""
    missing = [c for c in [*keys, timestamp] if c not in spine.column_names]
    if missing:
        raise PitError(
            f"spine lacks column(s) {', '.join(map(repr, missing))} "
            f"(has: {', '.join(spine.column_names)})",
            code="missing_column",
        )
    for key in keys:
        col = spine[key]
        if not pa.types.is_integer(col.type):
            raise PitError(
                f"spine key {key!r} must be an integer column, got {col.type}", code="bad_type"
            )
        if col.null_count:
            raise PitError(
                f"spine has {col.null_count} row(s) with a null {key!r}; every row needs its keys",
                code="null_key",
            )
    timestamps_to_micros(spine[timestamp], timestamp, naive_is_utc=naive_is_utc, where="spine")


def spine_times(spine: pa.Table, timestamp: str, *, naive_is_utc: bool = False) -> np.ndarray:
    """The spine's timestamps as int64 microseconds UTC."""
    return timestamps_to_micros(
        spine[timestamp], timestamp, naive_is_utc=naive_is_utc, where="spine"
    )


def _validate_spec(spec: PitSpec) -> None:
    schema = spec.source.schema
    where = f"feature {spec.name!r}"
    needed = [*spec.keys, spec.source.timestamp]
    if spec.source.created_timestamp:
        needed.append(spec.source.created_timestamp)
    if isinstance(spec, AsOfSpec):
        needed.append(spec.column)
    else:
        needed += [f.column for f in spec.filters]
        if spec.column:
            needed.append(spec.column)
    for col in needed:
        if col not in schema.names:
            raise PitError(
                f"{where}: source {spec.source.name!r} has no column {col!r}", code="missing_column"
            )
    if isinstance(spec, AggregationSpec):
        reason = is_value_type_supported(spec.function, spec.input_type)
        if reason:
            raise PitError(
                f"{where}: {reason}; column {spec.column!r} is {format_dtype(spec.input_type)}",
                code="bad_type",
            )
        if spec.function is AggFunction.LAST_N and not (spec.n and spec.n > 0):
            raise PitError(f"{where}: last_n needs n >= 1", code="bad_spec")


# -- value keys ------------------------------------------------------------------------------


def _np(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return col.to_numpy(zero_copy_only=False)


def _valid(col: pa.ChunkedArray) -> np.ndarray:
    """True where the value is present (not null, and not NaN for floats)."""
    mask = _np(pc.is_valid(col)).astype(bool)
    if pa.types.is_floating(col.type):
        mask &= ~np.isnan(_np(pc.fill_null(col, 0.0)).astype(np.float64))
    return mask


def _order_key(col: pa.ChunkedArray) -> tuple[np.ndarray, Any]:
    """An int64 key whose order is the value order, and what is needed to map keys back.

    Floats use IEEE totalOrder (so -0.0 < +0.0); text and binary use the rank of the value
    among the column's distinct values; integers, booleans and times are themselves.
    """
    t = col.type
    if pa.types.is_floating(t):
        values = _np(pc.fill_null(pc.cast(col, pa.float64()), 0.0)).astype(np.float64)
        return exact.float_order_key(values), None
    if pa.types.is_boolean(t):
        return _np(pc.fill_null(col, False)).astype(np.int64), None
    if pa.types.is_timestamp(t):
        return timestamps_to_micros(
            pc.fill_null(col, 0), "value", naive_is_utc=True, where="value"
        ), None
    if pa.types.is_date32(t):
        return _np(pc.fill_null(pc.cast(col, pa.int32()), 0)).astype(np.int64), None
    if pa.types.is_unsigned_integer(t) and t.bit_width == 64:
        raw = _np(pc.fill_null(col, 0)).astype(np.uint64)
        return (raw ^ np.uint64(1 << 63)).view(np.int64), None
    if pa.types.is_integer(t):
        return _np(pc.fill_null(col, 0)).astype(np.int64), None
    # text, binary, decimal: rank among the distinct values
    encoded = pc.dictionary_encode(
        col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    )
    dictionary = encoded.dictionary
    order = _np(pc.sort_indices(dictionary)).astype(np.int64)
    rank_of_code = np.empty(len(order), dtype=np.int64)
    rank_of_code[order] = np.arange(len(order), dtype=np.int64)
    codes = _np(pc.fill_null(encoded.indices, 0)).astype(np.int64)
    ranks = rank_of_code[codes] if len(order) else np.zeros(len(codes), dtype=np.int64)
    return ranks, dictionary.take(pa.array(order))


def _from_order_key(keys: np.ndarray, mask: np.ndarray, t: pa.DataType, lookup: Any) -> pa.Array:
    """Map order keys back to values of type `t`; rows where `mask` is False are null."""
    mask_arr = pa.array(~mask)
    if pa.types.is_floating(t):
        values = pa.array(exact.float_from_order_key(keys), pa.float64())
        return pc.cast(pc.if_else(mask_arr, pa.nulls(len(keys), pa.float64()), values), t)
    if lookup is not None:
        if len(lookup) == 0:  # no values at all: every window is empty
            return pa.nulls(len(keys), t)
        taken = lookup.take(pa.array(np.where(mask, keys, 0)))
        return pc.if_else(mask_arr, pa.nulls(len(keys), t), pc.cast(taken, t))
    if pa.types.is_unsigned_integer(t) and t.bit_width == 64:
        raw = pa.array(keys.view(np.uint64) ^ np.uint64(1 << 63), pa.uint64())
    elif pa.types.is_boolean(t):
        raw = pa.array(keys.astype(bool))
    elif pa.types.is_timestamp(t):
        raw = pa.array(keys, pa.int64()).cast(pa.timestamp("us", tz=t.tz)).cast(t)
    elif pa.types.is_date32(t):
        raw = pa.array(keys.astype(np.int32), pa.int32()).cast(pa.date32())
    else:
        raw = pa.array(keys, pa.int64()).cast(t)
    return pc.if_else(mask_arr, pa.nulls(len(keys), t), raw)


# -- one source group ------------------------------------------------------------------------


class _Group:
    """The specs that read one source with the same keys: one read, one kernel call."""

    def __init__(self, source: SourceSpec, keys: tuple[str, ...], specs: list[PitSpec]) -> None:
        self.source = source
        self.keys = keys
        self.specs = specs
        self.columns: dict[str, np.ndarray] = {}  # int64 (+ mask) columns for the kernel
        self.masks: dict[str, np.ndarray] = {}
        self.requests: dict[tuple[Any, ...], WindowRequest] = {}
        self.cache: dict[tuple[Any, ...], Any] = {}
        # The sparse bands' second kernel call (see `sparse_inputs`), and its result: the
        # probes' rows it answered and its table.
        self.sparse_columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.sparse_requests: dict[tuple[Any, ...], WindowRequest] = {}
        self.sparse_result: tuple[np.ndarray, pa.Table] | None = None
        # Each row's key as one int64 (set by `_encode_keys`, shared with the spine's).
        self.key: np.ndarray | None = None

    # reading ---------------------------------------------------------------------------------

    def read(
        self,
        t_min: int,
        t_max: int,
        report: PitReport,
        spine: pa.Table | None = None,
        reader: SourceReaderPort | None = None,
    ) -> None:
        """Read the rows that can be visible to probes in `[t_min, t_max)` through `reader`
        (None: the registered default); with `spine` (the probes, holding the keys), only the
        rows whose every key value is probed."""
        src = self.source
        columns = [*self.keys, src.timestamp]
        if src.created_timestamp:
            columns.append(src.created_timestamp)
        for spec in self.specs:
            if isinstance(spec, AsOfSpec):
                columns.append(spec.column)
            else:
                columns += [f.column for f in spec.filters]
                if spec.column:
                    columns.append(spec.column)
        lookbacks = [_lookback(s) for s in self.specs]
        lo = (
            None
            if any(b is None for b in lookbacks)
            else t_min - max(b for b in lookbacks if b is not None)
        )
        min_delay = min(s.delay_us for s in self.specs)
        # Columns only compared with filter values are read dictionary-encoded (see
        # `filter_mask`): most are strings with a handful of distinct values.
        filter_only = {
            f.column for s in self.specs if isinstance(s, AggregationSpec) for f in s.filters
        }
        filter_only -= {*self.keys, src.timestamp, src.created_timestamp}
        filter_only -= {s.column for s in self.specs}
        table = read_source(
            src, columns, lo, t_max - min_delay, dictionary=sorted(filter_only), reader=reader
        )
        where = f"source of {src.name!r}"
        key_valid = np.ones(table.num_rows, dtype=bool)
        for key in self.keys:
            if not pa.types.is_integer(table[key].type):
                raise PitError(
                    f"{where}: key {key!r} must be an integer column, got {table[key].type}",
                    code="bad_type",
                )
            key_valid &= _np(pc.is_valid(table[key])).astype(bool)
        null_keys = int((~key_valid).sum())
        if null_keys:
            report.null_key_rows[src.name] = report.null_key_rows.get(src.name, 0) + null_keys
            table = _filter_rows(table, pa.array(key_valid))
        for name in table.column_names:
            if pa.types.is_floating(table[name].type):
                nans = int(pc.sum(pc.is_nan(table[name])).as_py() or 0)
                if nans:
                    report.nan_values[f"{src.name}.{name}"] = nans
        report.source_rows[src.name] = table.num_rows
        if spine is not None and table.num_rows:
            table = _rows_of_keys(table, spine, self.keys)
        self.table = table
        self.ts = timestamps_to_micros(
            table[src.timestamp],
            src.timestamp,
            naive_is_utc=src.naive_timestamps_are_utc,
            where=where,
        )
        self.created: np.ndarray | None = None
        if src.created_timestamp:
            created = table[src.created_timestamp]
            # A row without a created timestamp is taken as known when it happened.
            filled = pc.coalesce(created, table[src.timestamp]) if created.null_count else created
            self.created = timestamps_to_micros(
                filled,
                src.created_timestamp,
                naive_is_utc=src.naive_timestamps_are_utc,
                where=where,
            )

    def split(self, t_min: int) -> list[_Group]:
        """This group as tiers of specs by how far back they look, each over only the rows it
        can see: `[t_min - lookback, ...)` (see `_tiers`). One kernel call per tier.

        Probes a day after a month of history see the month only through their long windows:
        the short ones (1h, 1d, 7d) then rank, encode and aggregate a few days of rows, not the
        month. Every feature depends only on the rows inside its window (design §4) and every
        encoding is exact, so the bits are the same as in one call over every row (the key
        cut, `_rows_of_keys`, rests on the same fact). A group with an as-of feature stays
        whole (its tie count is per group).
        """
        if len(self.specs) < 2 or any(isinstance(s, AsOfSpec) for s in self.specs):
            return [self]
        tiers = _tiers(self.ts, t_min, [_lookback(s) for s in self.specs])
        if len(tiers) < 2:
            return [self]
        return [
            self.subset(
                None if lookback is None else self.ts >= t_min - lookback,
                [self.specs[i] for i in indices],
            )
            for lookback, indices in tiers
        ]

    def subset(self, mask: np.ndarray | None, specs: list[PitSpec] | None = None) -> _Group:
        """A group of `specs` (default: these) over the rows of `mask` (None: every row), which
        keep their order (ties go to the row read last)."""
        part = _Group(self.source, self.keys, self.specs if specs is None else specs)
        key = self.key
        if mask is None or bool(mask.all()):
            part.table, part.ts, part.created, part.key = self.table, self.ts, self.created, key
        else:
            part.table = _filter_rows(self.table, pa.array(mask))
            part.ts = self.ts[mask]
            part.created = None if self.created is None else self.created[mask]
            part.key = None if key is None else key[mask]
        return part

    # kernel columns --------------------------------------------------------------------------

    def _add(self, name: str, values: np.ndarray, mask: np.ndarray | None = None) -> str:
        self.columns[name] = values
        if mask is not None:
            self.masks[name] = mask
        return name

    def time_column(self, delay_us: int) -> str:
        name = f"__ts_{delay_us}"
        if name not in self.columns:
            self._add(name, self.ts + np.int64(delay_us) if delay_us else self.ts)
        return name

    def visible_column(self, delay_us: int) -> str:
        name = f"__vis_{delay_us}"
        if name not in self.columns:
            shifted = self.ts + np.int64(delay_us)
            self._add(name, shifted if self.created is None else np.maximum(shifted, self.created))
        return name

    def filter_mask(self, filters: tuple[FilterDef, ...]) -> np.ndarray:
        key = ("filter", filters)
        if key not in self.cache:
            mask = np.ones(self.table.num_rows, dtype=bool)
            for flt in filters:
                col = self.table[flt.column]
                values = pa.array(list(flt.values), type=self.source.schema.field(flt.column).type)
                mask &= _is_in(col, values)
            self.cache[key] = mask
        return self.cache[key]

    def float_values(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """A numeric column as float64 (nulls read as 0.0) and its mask of present values
        (not null, not NaN): converted once, shared by every float feature of the column."""
        key = ("float", column)
        if key not in self.cache:
            col = self.table[column]
            values = _np(pc.fill_null(pc.cast(col, pa.float64()), 0.0)).astype(
                np.float64, copy=False
            )
            present = ~np.isnan(values)
            if col.null_count:
                present &= _np(pc.is_valid(col)).astype(bool, copy=False)
            self.cache[key] = (values, present)
        return self.cache[key]

    def valid_mask(self, column: str | None, filters: tuple[FilterDef, ...]) -> np.ndarray:
        key = ("valid", column, filters)
        if key not in self.cache:
            mask = self.filter_mask(filters)
            if column is not None:
                if pa.types.is_floating(self.table[column].type):
                    mask = mask & self.float_values(column)[1]
                else:
                    mask = mask & _valid(self.table[column])
            # One object for "every row": features whose rows are all valid share kernel work.
            self.cache[key] = self.all_rows() if bool(mask.all()) else mask
        return self.cache[key]

    def all_rows(self) -> np.ndarray:
        if "all_rows" not in self.cache:
            self.cache["all_rows"] = np.ones(self.table.num_rows, dtype=bool)
        return self.cache["all_rows"]

    def indicator(self, column: str | None, filters: tuple[FilterDef, ...]) -> str:
        mask = self.valid_mask(column, filters)
        key = ("indicator", id(mask))  # the same rows, the same indicator column
        if key not in self.cache:
            self.cache[key] = self._add(f"__ind_{len(self.columns)}", self.indicator_values(), mask)
        return self.cache[key]

    def indicator_values(self) -> np.ndarray:
        """The values of every indicator column: any int64 column without nulls will do.

        Indicators are only ever COUNTed, and COUNT reads validity, never values, so they
        share the timestamps' memory (no new 8 bytes per row); their masks differ.
        """
        return self.ts

    def order_key(self, column: str) -> tuple[np.ndarray, Any]:
        key = ("order", column)
        if key not in self.cache:
            col = self.table[column]
            if pa.types.is_floating(col.type):  # the shared float64 copy, nulls as 0.0
                self.cache[key] = (exact.float_order_key(self.float_values(column)[0]), None)
            else:
                self.cache[key] = _order_key(col)
        return self.cache[key]

    def value_key_column(self, column: str, filters: tuple[FilterDef, ...]) -> str:
        key = ("valuekey", column, filters)
        if key not in self.cache:
            keys, _ = self.order_key(column)
            mask = self.valid_mask(column, filters)
            self.cache[key] = self._add(f"__val_{len(self.columns)}", keys, mask)
        return self.cache[key]

    def distinct_values(self, column: str) -> np.ndarray:
        """Each row's value as an int64 that is equal exactly when the values are the same
        number or string (the order key, with -0.0 read as +0.0)."""
        keys, _ = self.order_key(column)
        if pa.types.is_floating(self.table[column].type):
            keys = np.where(
                keys == exact.float_order_key(np.array([-0.0]))[0],
                exact.float_order_key(np.array([0.0]))[0],
                keys,
            )
        return keys

    def finite_float_values(
        self, column: str, filters: tuple[FilterDef, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(values as float64 with non-finite/invalid set to 0, mask of finite valid values)."""
        key = ("finite", column, filters)
        if key not in self.cache:
            valid = self.valid_mask(column, filters)
            values = (
                self.float_values(column)[0]
                if pa.types.is_floating(self.table[column].type)
                else _np(pc.fill_null(pc.cast(self.table[column], pa.float64()), 0.0)).astype(
                    np.float64, copy=False
                )
            )
            is_finite = np.isfinite(values)
            finite = valid & is_finite
            # Rows outside the mask are skipped by the kernel: their values need only be finite.
            encodable = values if bool(is_finite.all()) else np.where(finite, values, 0.0)
            self.cache[key] = (encodable, finite)
        return self.cache[key]

    def limb_columns(
        self, column: str, filters: tuple[FilterDef, ...], *, square: bool = False
    ) -> tuple[list[str], int, int, list[tuple[list[str], int, int]]]:
        """Kernel columns holding the exact limbs of each value (or its square), the base
        exponent and the limb width (floats: as wide as sums over this table allow, so fewer
        columns; see `exact.sum_limb_bits`), and the sparse bands of floats whose exponents lie
        outside the dense band (`exact.encode_float_bands`): per band, its columns in the second
        kernel call (`sparse_column`), base exponent and limb width."""
        key = ("limbs", column, filters, square)
        if key not in self.cache:
            t = self.table[column].type
            sparse: list[tuple[list[str], int, int]] = []
            if pa.types.is_integer(t) and not square:
                values = _np(pc.fill_null(pc.cast(self.table[column], pa.int64()), 0)).astype(
                    np.int64
                )
                enc = exact.encode_int_limbs(values)
                mask = self.valid_mask(column, filters)
            else:
                values, mask = self.finite_float_values(column, filters)
                if pa.types.is_integer(t):
                    raw = _np(pc.fill_null(self.table[column], 0)).astype(np.int64)
                    if np.any(np.abs(raw[mask]) > 2**53):
                        raise PitError(
                            f"stddev of {column!r}: integer values beyond 2**53 are not supported",
                            code="bad_type",
                        )
                banded = (
                    exact.encode_float_square_bands(values)
                    if square
                    else exact.encode_float_bands(values, exact.sum_limb_bits(len(values)))
                )
                enc = banded.dense
                for band in banded.sparse:
                    # Rows outside the mask (filtered out) were encoded with their values:
                    # the main call skips them by the mask, the sparse call by leaving them out.
                    keep = mask[band.rows]
                    if not bool(keep.any()):
                        continue
                    rows, limbs = band.rows, band.encoding.limbs
                    if not bool(keep.all()):
                        rows, limbs = rows[keep], limbs[keep]
                    names = [self.sparse_column(rows, limbs[:, k]) for k in range(limbs.shape[1])]
                    sparse.append((names, band.encoding.base_exp, band.encoding.limb_bits))
            names = [
                self._add(
                    f"__limb_{len(self.columns)}", np.ascontiguousarray(enc.limbs[:, k]), mask
                )
                for k in range(enc.limbs.shape[1])
            ]
            self.cache[key] = (names, enc.base_exp, enc.limb_bits, sparse)
        return self.cache[key]

    # The sparse bands' call: a second kernel call over only the rows of sparse bands (values
    # far from their column's bulk), and only the probes of their keys.

    def sparse_column(self, rows: np.ndarray, values: np.ndarray) -> str:
        """A column of the sparse call: `values` at the table rows `rows` (the same array for
        every limb of a band), 0 at its other rows."""
        name = f"__sparse_{len(self.sparse_columns)}"
        self.sparse_columns[name] = (rows, values)
        return name

    def sparse_request(self, op: WindowOp, column: str, time: str, window_us: int | None) -> str:
        key = (op, column, time, window_us)
        if key not in self.sparse_requests:
            self.sparse_requests[key] = WindowRequest(
                f"__q{len(self.sparse_requests)}", op, column, time, window_us
            )
        return self.sparse_requests[key].output

    def sparse_inputs(
        self, probe_key: np.ndarray, probe_time: np.ndarray
    ) -> tuple[pa.Table, pa.Table, np.ndarray] | None:
        """The sparse call's events and probes, and the probes' rows in the whole probe table
        (None when no probe has a key with sparse rows). Built before `release`."""
        if not self.sparse_requests:
            return None
        # A band's limb columns share its row array: the union is over distinct arrays.
        bands = {id(r): r for r, _ in self.sparse_columns.values()}
        if len(bands) == 1:
            (rows,) = bands.values()
        else:
            present = np.zeros(self.table.num_rows, dtype=bool)
            for r in bands.values():
                present[r] = True
            rows = np.flatnonzero(present)
        keys = self.key[rows]
        probed = np.flatnonzero(np.isin(probe_key, np.unique(keys)))
        if not len(probed):
            return None
        arrays = {KEY: pa.array(keys, pa.int64())}
        for time in dict.fromkeys(r.time for r in self.sparse_requests.values()):
            arrays[time] = pa.array(self.columns[time][rows], pa.int64())
        where = {k: None if r is rows else np.searchsorted(rows, r) for k, r in bands.items()}
        for name, (at, values) in self.sparse_columns.items():
            if where[id(at)] is None:  # the band's rows are all the rows
                column = np.ascontiguousarray(values, dtype=np.int64)
            else:
                column = np.zeros(len(rows), dtype=np.int64)
                column[where[id(at)]] = values
            arrays[name] = pa.array(column, pa.int64())
        probes = pa.table(
            {
                KEY: pa.array(probe_key[probed], pa.int64()),
                PROBE_TIME: pa.array(probe_time[probed], pa.int64()),
            }
        )
        return pa.table(arrays), probes, probed

    def inf_columns(self, column: str, filters: tuple[FilterDef, ...]) -> tuple[str, str] | None:
        """Indicator columns of +inf and -inf values, or None when the column has none."""
        key = ("inf", column, filters)
        if key not in self.cache:
            t = self.table[column].type
            result = None
            if pa.types.is_floating(t):
                valid = self.valid_mask(column, filters)
                values = self.float_values(column)[0]
                pos, neg = valid & (values == np.inf), valid & (values == -np.inf)
                if pos.any() or neg.any():
                    counted = self.indicator_values()
                    result = (
                        self._add(f"__pinf_{len(self.columns)}", counted, pos),
                        self._add(f"__ninf_{len(self.columns)}", counted, neg),
                    )
            self.cache[key] = result
        return self.cache[key]

    def distinct_bounds(
        self, column: str, filters: tuple[FilterDef, ...], time: str, window_us: int | None
    ) -> tuple[str, str, str]:
        """COUNT_DISTINCT as two prefix counts: (indicator of the valid rows, indicator of the
        rows that have an end, the time column of those ends).

        A value counts for a probe at t when its latest row before t, e, is in the window:
        `T(e) < t <= end(e)`, with `end(e) = min(T(next), T(e) + w)` where `next` is the value's
        next row in (key, value, T) order (none: no end from it; lifetime: no `T(e) + w`). As
        `end(e) >= T(e)`, the count is #{T(e) < t} - #{end(e) < t}: two lifetime COUNTs, which
        every kernel computes as differences of prefix sums, where a windowed COUNT DISTINCT
        needs a sort of events and probes together and a distinct-frame aggregate (measured on
        a day's 2M events and 250k probes: DuckDB 1.45 s for one such feature, Polars 0.80 s).
        Rows tied on (key, value, T) end at each other, so only the last of them counts.
        """
        key = ("distinct", column, filters, time, window_us)
        if key not in self.cache:
            mask = self.valid_mask(column, filters)
            values = self.distinct_values(column)
            t = self.columns[time]
            rows = np.flatnonzero(mask)
            order = rows[_stable_order([self.key[rows], values[rows], t[rows]])]
            same = np.zeros(len(order), dtype=bool)  # the next row in order is of the same value
            if len(order) > 1:
                k, v = self.key[order], values[order]
                same[:-1] = (k[1:] == k[:-1]) & (v[1:] == v[:-1])
                del k, v
            end = np.zeros(len(t), dtype=np.int64)
            has_end = np.zeros(len(t), dtype=bool)
            t_order = t[order]
            nxt = np.zeros(len(order), dtype=np.int64)
            nxt[:-1] = t_order[1:]
            if window_us is None:
                ends, have = nxt, same
            else:
                # T + w past the int64 range is later than every probe: no end from the window.
                room = t_order <= np.int64(np.iinfo(np.int64).max - window_us)
                reach = t_order + np.where(room, np.int64(window_us), np.int64(0))
                ends = np.where(same & room, np.minimum(nxt, reach), np.where(same, nxt, reach))
                have = same | room
            end[order] = ends
            has_end[order] = have
            seen = self.indicator(column, filters)
            end_time = self._add(f"__end_{len(self.columns)}", end)
            ended = self._add(f"__ended_{len(self.columns)}", self.indicator_values(), has_end)
            self.cache[key] = (seen, ended, end_time)
        return self.cache[key]

    def rank(self, value_column: str | None) -> tuple[np.ndarray, np.ndarray]:
        """Each row's position in the total order, and the order (rank's inverse permutation).

        With a value column (first, last, last_n): the order (key, ts, created, value, read
        position), so a key's rows are contiguous. Without (as-of): (ts, created, read
        position), which orders the rows of each key the same way, and is all that a
        per-key MAX needs. Equal rows keep the read order (see `_stable_order`).
        """
        cache_key = ("rank", value_column)
        if cache_key not in self.cache:
            n = self.table.num_rows
            columns: list[np.ndarray] = []
            if value_column is not None:
                columns.append(self.key)
            columns.append(self.ts)
            if self.created is not None:
                columns.append(self.created)
            if value_column is not None:
                columns.append(self.order_key(value_column)[0])
            primary = None
            if value_column is not None and len(self._ranked_columns()) > 1:
                # Every value rank sorts by (key, ts) first: that sort is done once.
                if ("primary",) not in self.cache:
                    self.cache[("primary",)] = _primary_order(columns)
                primary = self.cache[("primary",)]
            perm, tied = _stable_order_runs(columns, primary)
            if value_column is None:  # kept for the as-of tie count (until `release`)
                self.cache[("tied", None)] = tied
            rank = np.empty(n, dtype=np.int64)
            rank[perm] = np.arange(n, dtype=np.int64)
            self.cache[cache_key] = (rank, perm)
        return self.cache[cache_key]

    def _ranked_columns(self) -> set[str]:
        """The value columns that first, last and last_n features of this source rank."""
        ranked = (AggFunction.FIRST, AggFunction.LAST, AggFunction.LAST_N)
        return {
            s.column
            for s in self.specs
            if isinstance(s, AggregationSpec) and s.function in ranked and s.column is not None
        }

    def rank_column(self, value_column: str | None, mask: np.ndarray | None) -> str:
        key = ("rankcol", value_column, None if mask is None else id(mask))
        if key not in self.cache:
            rank, _ = self.rank(value_column)
            self.cache[key] = self._add(f"__rank_{len(self.columns)}", rank, mask)
        return self.cache[key]

    def release(self) -> None:
        """Drop what decoding does not need, before the kernel runs: peak memory is the sum.

        Decoding reads source values only for first/last/last_n and as-of features (by row);
        min/max keep only their lookup; the kernel columns are owned by the events table.
        """
        keep = [
            s.column
            for s in self.specs
            if s.column is not None
            and (
                isinstance(s, AsOfSpec)
                or s.function in (AggFunction.FIRST, AggFunction.LAST, AggFunction.LAST_N)
            )
        ]
        self.table = self.table.select(list(dict.fromkeys(keep)))
        self.columns.clear()
        self.sparse_columns.clear()  # in the sparse call's events by now
        kept = ("rank", "order", "valid", "rounded")
        self.cache = {
            k: (None, v[1]) if k[0] == "order" else v  # min/max decoding needs only the lookup
            for k, v in self.cache.items()
            if (isinstance(k, tuple) and k[0] in kept) or k == "all_rows"
        }
        self.key = None  # owned by the events table now
        pa.default_memory_pool().release_unused()  # give the freed source columns back
        if not any(isinstance(s, AsOfSpec) for s in self.specs):
            self.ts = self.created = None  # only the as-of TTL check reads them later

    def request(self, op: WindowOp, column: str, time: str, window_us: int | None) -> str:
        key = (op, column, time, window_us)
        if key not in self.requests:
            self.requests[key] = WindowRequest(
                f"__r{len(self.requests)}", op, column, time, window_us
            )
        return self.requests[key].output

    def events_table(self) -> pa.Table:
        """The kernel's events: every column shares the numpy memory (no copies of values)."""
        bitmaps: dict[int, pa.Buffer] = {}
        arrays = {KEY: _int64_array(self.key, None, bitmaps)}
        for name, values in self.columns.items():
            arrays[name] = _int64_array(values, self.masks.get(name), bitmaps)
        return pa.table(arrays)


def _is_in(column: pa.ChunkedArray, values: pa.Array) -> np.ndarray:
    """Whether each row's value is one of `values` (a null is not).

    A dictionary-encoded column is matched on each chunk's dictionary, then the hits are
    gathered by index: far cheaper than matching every row's string.
    """
    if not pa.types.is_dictionary(column.type):
        hit = pc.is_in(column, value_set=values.cast(column.type))
        return _np(pc.fill_null(hit, False)).astype(bool)
    value_type = column.type.value_type
    parts = []
    for chunk in column.chunks:
        in_dictionary = pc.is_in(chunk.dictionary, value_set=values.cast(value_type))
        parts.append(_np(pc.fill_null(in_dictionary.take(chunk.indices), False)).astype(bool))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def _int64_array(
    values: np.ndarray, valid: np.ndarray | None, bitmaps: dict[int, pa.Buffer]
) -> pa.Array:
    """An Arrow int64 array over `values`' own memory, null where `valid` is False.

    Zero-copy for the values (Arrow keeps the numpy array alive through the buffer); the
    validity bitmap is built once per mask object and shared by every column using that mask.
    """
    values = np.ascontiguousarray(values, dtype=np.int64)
    bitmap = None
    if valid is not None and not bool(valid.all()):
        bitmap = bitmaps.get(id(valid))
        if bitmap is None:
            bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
            bitmaps[id(valid)] = bitmap
    return pa.Array.from_buffers(pa.int64(), len(values), [bitmap, pa.py_buffer(values)])


def _non_decreasing(values: np.ndarray) -> bool:
    """Whether every value is at least the one before it."""
    return len(values) < 2 or bool(np.all(values[1:] >= values[:-1]))


def _repeats_often(values: np.ndarray) -> bool:
    """Whether more than 1 in 20 values repeats another, judged on an even sample of ~4k."""
    sample = values[:: max(1, len(values) // 4096)]
    return len(np.unique(sample)) < 0.95 * len(sample)


def _argsort(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """The permutation sorting int64 `values`, the sorted values, and whether ties are in
    position order.

    When the values' range and the row positions fit in 64 bits together, each value's offset
    from the minimum is packed with its position into one uint64 and sorted directly (numpy's
    vectorised sort): 3-4x faster than an indirect `argsort`, and stable. Otherwise an
    indirect sort (unstable: callers order tied runs themselves).
    """
    n = len(values)
    if n:
        lo, hi = int(values.min()), int(values.max())
        shift = max(n - 1, 1).bit_length()
        if _sorts_with_positions(hi - lo, n):
            packed = (values - np.int64(lo)).view(np.uint64) << np.uint64(shift)
            packed |= np.arange(n, dtype=np.uint64)
            packed.sort()
            perm = (packed & np.uint64((1 << shift) - 1)).view(np.int64)
            packed >>= np.uint64(shift)
            ordered = packed.view(np.int64)
            ordered += np.int64(lo)  # wraps back to the value when lo < 0
            return perm, ordered, True
    perm = np.argsort(values).astype(np.int64, copy=False)
    return perm, values[perm], n < 2


def _sorts_with_positions(span: int, n: int) -> bool:
    """Whether `_argsort` packs values spanning `span` with the positions of `n` rows (then
    its sort is stable)."""
    return span.bit_length() + max(n - 1, 1).bit_length() <= 64


def _stable_order(columns: list[np.ndarray]) -> np.ndarray:
    """The permutation sorting rows by `columns` lexicographically, then by row position.

    A fast unstable sort of one int64 key (the first two columns packed into one when their
    ranges allow, else the first column) orders all but the runs of equal keys; only the rows
    of those runs, usually few, are then sorted by the remaining columns and position. A last
    column already in row order (times of rows read in time order) is dropped: the position
    tie-break orders by it.
    """
    while len(columns) > 1 and _non_decreasing(columns[-1]):
        columns = columns[:-1]
    return _stable_order_runs(columns, ties=False)[0]


def _stable_order_runs(
    columns: list[np.ndarray],
    primary: tuple[np.ndarray, np.ndarray, int, bool] | None = None,
    *,
    ties: bool = True,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """`_stable_order`, and the rows that share their sort key with another (`rows`, in order)
    with the number of their run of equal keys (`run`): only such rows can be equal in every
    column, so they are all a search for duplicate rows needs to look at.

    `primary`, when given, is `_primary_order` of columns with the same first two columns
    (ranks of several value columns share it; it is not modified). `ties=False`: the tied
    rows are not wanted (returned empty when the order needs no look at them)."""
    n = len(columns[0])
    if primary is None:
        perm, ordered, used, stable = _primary_order(columns)
    else:
        perm, ordered, used, stable = primary[0].copy(), primary[1], primary[2], primary[3]
    rest = columns[used:]
    none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if n < 2 or (not ties and stable and not rest):
        return perm, none
    tied = ordered[1:] == ordered[:-1]
    if not tied.any():
        return perm, none
    at, run = _runs(tied)
    if rest or not stable:  # else the runs are in position order already
        _order_runs(perm, at, run, rest)
    return perm, (perm[at], run)


def _runs(tied: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From `tied` (row i + 1 equals row i, for sorted rows): the rows in a run of equal rows
    (ascending positions), and the run number of each (non-decreasing). Work beyond one pass
    over `tied` is in the tied rows only (usually few)."""
    in_run = np.zeros(len(tied) + 1, dtype=bool)
    in_run[1:] |= tied
    in_run[:-1] |= tied
    at = np.flatnonzero(in_run)
    starts = np.ones(len(at), dtype=bool)  # a row starts a run unless it equals the one before
    later = at > 0
    starts[later] = ~tied[at[later] - 1]
    return at, np.cumsum(starts)


def _primary_order(columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """The sort by the first column, or by the first two packed into one int64 when their
    ranges allow: the permutation, the sorted sort keys, how many columns they hold, and
    whether ties are in position order (see `_argsort`)."""
    n = len(columns[0])
    primary, used = columns[0], 1
    if len(columns) > 1 and n:
        second = columns[1]
        lo0, hi0 = int(primary.min()), int(primary.max())
        lo1, hi1 = int(second.min()), int(second.max())
        size1 = hi1 - lo1 + 1
        if (hi0 - lo0 + 1) * size1 <= 2**63 - 1:
            packed = (primary - np.int64(lo0)) * np.int64(size1) + (second - np.int64(lo1))
            if _sorts_with_positions(hi0 - lo0, n) and _non_decreasing(second):
                # Rows already in order of the second column (times read in time order): the
                # stable sort by the first alone is the order by both, a narrower sort.
                perm, _, _ = _argsort(primary)
                return perm, packed[perm], 2, True
            primary, used = packed, 2
        elif _repeats_often(primary):
            # A sparse first column with many repeats (e.g. packed multi-column keys) would
            # leave long tied runs: pack its dense rank instead. (Mostly distinct values, such
            # as timestamps, leave few ties: the sort alone is cheaper than ranking them.)
            distinct, dense = np.unique(primary, return_inverse=True)
            if len(distinct) * size1 <= 2**63 - 1:
                dense = dense.reshape(-1).astype(np.int64, copy=False)
                primary = dense * np.int64(size1) + (second - np.int64(lo1))
                used = 2
    perm, ordered, stable = _argsort(primary)
    return perm, ordered, used, stable


def _order_runs(
    perm: np.ndarray, at: np.ndarray, run: np.ndarray, columns: list[np.ndarray]
) -> None:
    """Sort, in place, the rows at positions `at` of `perm` within each run (`run`, the
    rows' run numbers, non-decreasing along `at`) by `columns`, then by row position.

    One column at a time: the rows are sorted by (run, column) packed into one integer, and
    only the rows still tied go on to the next column. After the first column few usually are,
    where one lexsort of every tied row by every column cost seconds on long runs (a lifetime
    `last` over user x artwork keys: 5M tied rows of 10M).
    """
    for column in columns:
        if not len(at):
            return
        rows = perm[at]
        code = _pair_code(run, column[rows])
        order = np.argsort(code)
        perm[at] = rows[order]
        code = code[order]
        tied = code[1:] == code[:-1]
        if not tied.any():
            return
        keep, run = _runs(tied)
        at = at[keep]  # positions within `at`
    rows = perm[at]  # equal in every column: row position decides
    perm[at] = rows[np.lexsort([rows, run])]


def _pair_code(run: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A uint64 whose order is that of (run, value): the run number above the value's offset
    from the smallest value, or above its dense rank when the two do not fit in 64 bits."""
    run = (run - run[0]).astype(np.uint64)  # non-decreasing: the first is the smallest
    run_bits = int(run[-1]).bit_length()
    lo, hi = int(values.min()), int(values.max())
    value_bits = (hi - lo).bit_length()
    if run_bits + value_bits > 64:  # then dense ranks fit: both are below 2**32 rows
        _, dense = np.unique(values, return_inverse=True)
        values, lo = dense.reshape(-1).astype(np.int64, copy=False), 0
        value_bits = int(values.max()).bit_length()
    offset = (values - np.int64(lo)).view(np.uint64)  # wraps to the true offset
    return (run << np.uint64(value_bits)) | offset


# -- planning and decoding per spec ----------------------------------------------------------


class _Planned:
    """A spec's kernel requests and how to decode their results."""

    def __init__(self, spec: PitSpec, group: _Group) -> None:
        self.spec = spec
        self.group = group
        self.outputs: dict[str, str] = {}
        self.extra: dict[str, Any] = {}
        if isinstance(spec, AsOfSpec):
            self._plan_asof(spec)
        else:
            self._plan_aggregation(spec)

    def _plan_asof(self, spec: AsOfSpec) -> None:
        g = self.group
        rank_col = g.rank_column(None, None)
        self.outputs["rank"] = g.request(
            WindowOp.MAX, rank_col, g.visible_column(spec.delay_us), None
        )

    def _plan_aggregation(self, spec: AggregationSpec) -> None:
        g = self.group
        time = g.time_column(spec.delay_us)
        w = spec.window_us
        fn, col, flt = spec.function, spec.column, spec.filters
        req = g.request
        if fn in (AggFunction.COUNT, AggFunction.COUNT_DISTINCT) or col is None:
            if fn is AggFunction.COUNT_DISTINCT:
                assert col is not None
                # Two prefix counts (see `_Group.distinct_bounds`): rows before t, minus rows
                # whose value reappears, or leaves the window, before t.
                seen, ends, end_time = g.distinct_bounds(col, flt, time, w)
                self.outputs["n"] = req(WindowOp.COUNT, seen, time, None)
                self.outputs["gone"] = req(WindowOp.COUNT, ends, end_time, None)
            else:
                self.outputs["n"] = req(WindowOp.COUNT, g.indicator(col, flt), time, w)
            return
        self.outputs["n"] = req(WindowOp.COUNT, g.indicator(col, flt), time, w)
        if fn in (AggFunction.SUM, AggFunction.MEAN, AggFunction.STDDEV):
            limbs, base, bits, sparse = g.limb_columns(col, flt)
            self.outputs.update(
                {f"s1_{i}": req(WindowOp.SUM, c, time, w) for i, c in enumerate(limbs)}
            )
            self.extra["base1"], self.extra["bits1"] = base, bits
            self.extra["sparse1"] = self._sparse_requests(sparse, time, w)
            infs = g.inf_columns(col, flt)
            if infs is not None:
                self.outputs["pinf"] = req(WindowOp.COUNT, infs[0], time, w)
                self.outputs["ninf"] = req(WindowOp.COUNT, infs[1], time, w)
            if fn is AggFunction.STDDEV:
                limbs2, base2, _, sparse2 = g.limb_columns(col, flt, square=True)  # 32-bit
                self.outputs.update(
                    {f"s2_{i}": req(WindowOp.SUM, c, time, w) for i, c in enumerate(limbs2)}
                )
                self.extra["base2"] = base2
                self.extra["sparse2"] = self._sparse_requests(sparse2, time, w)
        elif fn in (AggFunction.MIN, AggFunction.MAX):
            op = WindowOp.MIN if fn is AggFunction.MIN else WindowOp.MAX
            self.outputs["key"] = req(op, g.value_key_column(col, flt), time, w)
        else:  # first, last, last_n: the rank of the oldest/newest valid row in the window
            mask = g.valid_mask(col, flt)
            rank_col = g.rank_column(col, mask)
            op = WindowOp.MIN if fn is AggFunction.FIRST else WindowOp.MAX
            self.outputs["rank"] = req(op, rank_col, time, w)

    def _sparse_requests(
        self, bands: list[tuple[list[str], int, int]], time: str, window_us: int | None
    ) -> list[tuple[list[str], int, int]]:
        """The sparse call's SUM requests of each sparse band's limbs: (outputs, base, width)."""
        return [
            ([self.group.sparse_request(WindowOp.SUM, c, time, window_us) for c in names], b, w)
            for names, b, w in bands
        ]

    # decoding -------------------------------------------------------------------------------

    def decode(self, result: pa.Table, probe_times: np.ndarray) -> pa.Array:
        spec = self.spec
        if isinstance(spec, AsOfSpec):
            return self._decode_asof(spec, result, probe_times)
        return self._decode_aggregation(spec, result)

    def _column(self, result: pa.Table, name: str) -> np.ndarray:
        return _np(pc.fill_null(result[self.outputs[name]], 0)).astype(np.int64, copy=False)

    def _decode_asof(self, spec: AsOfSpec, result: pa.Table, probe_times: np.ndarray) -> pa.Array:
        g = self.group
        rank_out = result[self.outputs["rank"]]
        found = _np(pc.is_valid(rank_out)).astype(bool)
        _, perm = g.rank(None)
        rows = (
            perm[np.where(found, self._column(result, "rank"), 0)]
            if len(perm)
            else np.zeros(len(found), np.int64)
        )
        if spec.ttl_us is not None and len(perm):
            fresh = g.ts[rows] >= probe_times - np.int64(spec.delay_us + spec.ttl_us)
            found &= fresh
        values = (
            g.table[spec.column].take(pa.array(rows))
            if len(perm)
            else pa.nulls(len(found), spec.output_type)
        )
        if pa.types.is_floating(spec.output_type) and len(perm):
            found &= ~np.isnan(
                _np(pc.fill_null(values, 0.0)).astype(np.float64)
            )  # NaN reads as null
        return _null_where(values, ~found, spec.output_type)

    def _decode_aggregation(self, spec: AggregationSpec, result: pa.Table) -> pa.Array:
        fn = spec.function
        n = self._column(result, "n")
        out_type = spec.output_type
        if fn is AggFunction.COUNT_DISTINCT:
            return pa.array(n - self._column(result, "gone"), pa.int64())
        if fn is AggFunction.COUNT:
            return pa.array(n, pa.int64())
        empty = n == 0
        if fn in (AggFunction.SUM, AggFunction.MEAN, AggFunction.STDDEV):
            s1 = exact.relimb(  # the decoders take 32-bit limb sums
                np.stack(
                    [self._column(result, k) for k in self.outputs if k.startswith("s1_")], axis=1
                ),
                self.extra["bits1"],
            )
            in_type = spec.input_type
            assert in_type is not None
            pinf = (
                self._column(result, "pinf")
                if "pinf" in self.outputs
                else np.zeros(len(n), np.int64)
            )
            ninf = (
                self._column(result, "ninf")
                if "ninf" in self.outputs
                else np.zeros(len(n), np.int64)
            )
            if fn is AggFunction.STDDEV:
                s2 = np.stack(
                    [self._column(result, k) for k in self.outputs if k.startswith("s2_")], axis=1
                )
                var = self._variance(n - pinf - ninf, s1, s2)
                std = np.sqrt(var)
                std = np.where((pinf + ninf) > 0, np.nan, std)
                null = (n < 2) | np.isnan(var) & ((pinf + ninf) == 0)
                return _null_where(pa.array(std, pa.float64()), null, pa.float64())
            if pa.types.is_integer(in_type):
                if fn is AggFunction.SUM:
                    total, overflow = exact.round_limb_sums_to_int(s1, self.extra["base1"])
                    if np.any(overflow & ~empty):
                        raise PitError(
                            f"feature {spec.name!r}: the sum overflows BIGINT", code="overflow"
                        )
                    return _null_where(pa.array(total, pa.int64()), empty, out_type)
                total_f = self._rounded_sum(s1)
            else:
                total_f = self._rounded_sum(s1)
                # Infinities are not in the limbs: +inf and -inf together have no sum.
                total_f = np.where(pinf > 0, np.inf, total_f)
                total_f = np.where(ninf > 0, -np.inf, total_f)
                total_f = np.where((pinf > 0) & (ninf > 0), np.nan, total_f)
            if fn is AggFunction.MEAN:
                with np.errstate(invalid="ignore", divide="ignore"):
                    total_f = total_f / np.where(empty, 1, n).astype(np.float64)
            return _null_where(pa.array(total_f, pa.float64()), empty, out_type)
        if fn in (AggFunction.MIN, AggFunction.MAX):
            assert spec.column is not None
            keys = self._column(result, "key")
            _, lookup = self.group.order_key(spec.column)
            return _from_order_key(keys, ~empty, out_type, lookup)
        return self._decode_ranked(spec, result, n, empty)

    def _rounded_sum(self, s1: np.ndarray) -> np.ndarray:
        """The correctly rounded sums of a window's limb sums (shared by sum and mean): of the
        dense limbs, and where a window holds rows of sparse bands, of all of them exactly."""
        key = ("rounded", tuple(v for k, v in self.outputs.items() if k.startswith("s1_")))
        cache = self.group.cache
        if key not in cache:
            base1 = self.extra["base1"]
            total = exact.round_limb_sums(s1, base1)
            at, parts = self._sparse_sums("sparse1")
            for rows, bands in _blocks(at, [parts]):
                combined, base = exact.add_limb_sums([(s1[rows], base1, 32), *bands[0]])
                total[rows] = exact.round_limb_sums(combined, base)
            cache[key] = total
        return cache[key]

    def _variance(self, n: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
        """The correctly rounded sample variances of windows of `n` finite values: from the
        dense limbs alone, or where a window holds rows of sparse bands of the values or of
        their squares (different rows: each has its own bands), from all of them."""
        base1, base2 = self.extra["base1"], self.extra["base2"]
        at, parts1, parts2 = self._sparse_sums("sparse1", "sparse2")
        dense_n = n.copy()
        dense_n[at] = 0  # rows with sparse sums: below, exactly (dense alone can disagree)
        var = exact.exact_sample_variance(dense_n, s1, base1, s2, base2)
        for rows, (bands1, bands2) in _blocks(at, [parts1, parts2]):
            c1, b1 = exact.add_limb_sums([(s1[rows], base1, 32), *bands1])
            c2, b2 = exact.add_limb_sums([(s2[rows], base2, 32), *bands2])
            var[rows] = exact.exact_sample_variance(n[rows], c1, b1, c2, b2)
        return var

    def _sparse_sums(self, *keys: str) -> Any:
        """The probe rows whose windows hold a row of a sparse band of `keys` ("sparse1": the
        values', "sparse2": the squares'; a nonzero limb sum), and per key the sparse call's
        limb sums of each band at those rows: ``(limb sums, base, limb width)``."""
        found = self.group.sparse_result
        bands = [self.extra.get(k, []) for k in keys]
        if found is None or not any(bands):
            return (np.zeros(0, np.int64), *([] for _ in keys))
        probed, table = found
        # SUM results have no nulls: int64 views of the kernel's columns, no copies.
        columns = [
            [
                ([_np(table[c]).astype(np.int64, copy=False) for c in names], b, w)
                for names, b, w in key
            ]
            for key in bands
        ]
        hit = np.zeros(len(probed), dtype=bool)
        for key in columns:
            for limbs, _, _ in key:
                for limb in limbs:
                    hit |= limb != 0
        at = np.flatnonzero(hit)
        return (
            probed[at],
            *(
                [(np.stack([limb[at] for limb in limbs], axis=1), b, w) for limbs, b, w in key]
                for key in columns
            ),
        )

    def _decode_ranked(
        self, spec: AggregationSpec, result: pa.Table, n: np.ndarray, empty: np.ndarray
    ) -> pa.Array:
        g = self.group
        assert spec.column is not None
        _, perm = g.rank(spec.column)
        values = g.table[spec.column]
        ranks = self._column(result, "rank")
        if spec.function is not AggFunction.LAST_N:
            rows = perm[np.where(empty, 0, ranks)] if len(perm) else np.zeros(len(n), np.int64)
            taken = values.take(pa.array(rows)) if len(perm) else pa.nulls(len(n), spec.output_type)
            return _null_where(taken, empty, spec.output_type)
        # The window's valid rows are contiguous in rank order: the newest k end at `ranks`.
        valid_ranks = np.flatnonzero(g.valid_mask(spec.column, spec.filters)[perm])  # ascending
        k = np.minimum(n, np.int64(spec.n or 0))
        end = np.searchsorted(valid_ranks, ranks)  # position of the newest valid row
        offsets = np.zeros(len(n) + 1, dtype=np.int64)
        np.cumsum(k, out=offsets[1:])
        # For row i, positions end_i, end_i - 1, …, end_i - k_i + 1 (newest first).
        step = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], k)
        positions = np.repeat(end, k) - step
        source_rows = perm[valid_ranks[positions]] if len(positions) else np.zeros(0, np.int64)
        flat = values.take(pa.array(source_rows, pa.int64()))
        flat = flat.combine_chunks() if isinstance(flat, pa.ChunkedArray) else flat
        assert isinstance(spec.output_type, pa.ListType)
        return pa.ListArray.from_arrays(
            pa.array(offsets.astype(np.int32), pa.int32()), flat.cast(spec.output_type.value_type)
        )


_COMBINE_ROWS = 1 << 16
"""Rows per block of the exact combination of dense and sparse sums: its arrays are as wide as
the values' whole exponent span (~66 limbs for 5e-324 with 1e300)."""


_Sums = list[tuple[np.ndarray, int, int]]  # limb sums of bands: (sums, base, limb width)


def _blocks(rows: np.ndarray, parts: list[_Sums]) -> Iterator[tuple[np.ndarray, list[_Sums]]]:
    """`rows` and the matching rows of every part's limb sums, in blocks of `_COMBINE_ROWS`."""
    for lo in range(0, len(rows), _COMBINE_ROWS):
        block = slice(lo, lo + _COMBINE_ROWS)
        yield rows[block], [[(s[block], b, w) for s, b, w in part] for part in parts]


def _null_where(values: pa.Array | pa.ChunkedArray, null: np.ndarray, t: pa.DataType) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(t) if not values.type.equals(t) else values
    if not null.any():
        return values
    return pc.if_else(pa.array(null), pa.nulls(len(values), t), values)


# -- the entry point -------------------------------------------------------------------------


def _encode_keys(spine: pa.Table, groups: list[_Group], keys: tuple[str, ...]) -> np.ndarray:
    """One int64 per key combination, shared by the spine and every group of these keys."""
    spine_cols = [_np(spine[k]).astype(np.int64, copy=False) for k in keys]
    if len(keys) == 1:
        for g in groups:
            g.key = _np(g.table[keys[0]]).astype(np.int64, copy=False)
        return spine_cols[0]
    group_cols = [[_np(g.table[k]).astype(np.int64, copy=False) for k in keys] for g in groups]
    # Mixed radix: (k1 - min1) * range2 * ... + (k2 - min2) * ... is one int64 per combination
    # when the ranges' product fits, which spares a sort of every row (np.unique).
    lows, ranges = [], []
    for i in range(len(keys)):
        columns = [spine_cols[i], *(gc[i] for gc in group_cols)]
        lows.append(min(int(c.min()) for c in columns if len(c)))
        ranges.append(max(int(c.max()) for c in columns if len(c)) - lows[-1] + 1)
    if math.prod(ranges) <= 2**63 - 1:

        def packed(cols: list[np.ndarray]) -> np.ndarray:
            code = np.zeros(len(cols[0]), dtype=np.int64)
            for col, low, size in zip(cols, lows, ranges, strict=True):
                code *= np.int64(size)
                code += col - np.int64(low)  # in [0, size): no overflow, see the check above
            return code

        for g, gc in zip(groups, group_cols, strict=True):
            g.key = packed(gc)
        return packed(spine_cols)
    stacked = np.stack(
        [np.concatenate([spine_cols[i], *(gc[i] for gc in group_cols)]) for i in range(len(keys))],
        axis=1,
    )
    _, ids = np.unique(stacked, axis=0, return_inverse=True)
    ids = ids.reshape(-1).astype(np.int64)
    start = len(spine)
    for g in groups:
        g.key = ids[start : start + g.table.num_rows]
        start += g.table.num_rows
    return ids[: len(spine)]


def compute_pit_table(
    spine: pa.Table,
    specs: Sequence[PitSpec],
    kernel: WindowKernel,
    *,
    timestamp: str = "ts",
    naive_timestamps_are_utc: bool = False,
    report: PitReport | None = None,
    reader: SourceReaderPort | None = None,
) -> pa.Table:
    """The spine, row for row in its order, plus one column per spec (named `spec.name`).

    Stored sources are read through `reader` (a SourceReaderPort; None: the default the
    composition root registered, the parquet reader), asked only for the columns and the time
    range the specs can see.

    Raises PitError before any work for a bad spine (missing key or timestamp column, null keys,
    tz-naive timestamps unless allowed), a spec whose column is missing or of a type its
    function cannot take, duplicate output names, and a source that cannot be read.
    """
    report = report if report is not None else PitReport()
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PitError(f"duplicate output column(s): {', '.join(dupes)}", code="bad_spec")
    clash = [n for n in names if n in spine.column_names]
    if clash:
        raise PitError(
            f"output column(s) {', '.join(clash)} already exist in the spine", code="bad_spec"
        )
    all_keys = sorted({k for s in specs for k in s.keys})
    validate_spine(spine, all_keys, timestamp, naive_is_utc=naive_timestamps_are_utc)
    for spec in specs:
        _validate_spec(spec)
    t = spine_times(spine, timestamp, naive_is_utc=naive_timestamps_are_utc)
    outputs: dict[str, pa.Array] = {}
    if len(specs) and spine.num_rows:
        t_min, t_max = int(t.min()), int(t.max()) + 1
        groups: dict[tuple[int, tuple[str, ...]], _Group] = {}
        for spec in specs:
            gkey = (id(spec.source), spec.keys)
            groups.setdefault(gkey, _Group(spec.source, spec.keys, []))
            groups[gkey].specs.append(spec)
        tiers: list[_Group] = []
        for g in groups.values():
            g.read(t_min, t_max, report, spine, reader)
            tiers += g.split(t_min)
        by_keys: dict[tuple[str, ...], list[_Group]] = {}
        for g in tiers:
            by_keys.setdefault(g.keys, []).append(g)
        for keys, gs in by_keys.items():
            probe_key = _encode_keys(spine, gs, keys)
            for g in gs:
                outputs.update(_compute_group(g, probe_key, t, kernel, report))
    table = spine
    for spec in specs:
        column = outputs.get(spec.name)
        if column is None:  # an empty spine
            column = pa.array([], spec.output_type)
        table = table.append_column(pa.field(spec.name, spec.output_type), column)
    return table


#: A group (a tier of one source) whose rows times features exceed this is computed in chunks
#: by a hash of the key (4M rows of 20 features, say): a key's rows and probes stay together, so
#: each chunk is a whole, smaller problem, and the planning columns and the kernel's working set
#: (each about a column per feature) are one chunk's. (At 40M, the large demo's 7-day batch cut
#: its 7-day tier in two and DuckDB took 1.3 s longer; at 80M the 30-day run peaks at 2.6 GB.)
_CHUNK_CELLS = 80_000_000


def _compute_group(
    g: _Group, probe_key: np.ndarray, t: np.ndarray, kernel: WindowKernel, report: PitReport
) -> dict[str, pa.Array]:
    """The columns of `g`'s specs for the probes `(probe_key, t)`, in their order: one kernel
    call (and one for the sparse bands) per chunk of at most about `_CHUNK_CELLS` rows times
    features."""
    chunks = -(-g.table.num_rows * len(g.specs) // _CHUNK_CELLS)
    if chunks <= 1:
        return _compute_chunk(g, probe_key, t, kernel, report)
    of_event, of_probe = key_chunks(g.key, chunks), key_chunks(probe_key, chunks)
    pieces: dict[str, list[pa.Array]] = {s.name: [] for s in g.specs}
    positions = []
    for c in range(chunks):
        rows = np.flatnonzero(of_probe == c)
        if not len(rows):
            continue
        part = g.subset(of_event == c)
        for name, column in _compute_chunk(part, probe_key[rows], t[rows], kernel, report).items():
            pieces[name].append(column)
        positions.append(rows)
        del part
    g.table = g.ts = g.created = g.key = None  # type: ignore[assignment]
    order = np.empty(len(t), dtype=np.int64)
    order[np.concatenate(positions)] = np.arange(len(t), dtype=np.int64)
    placing = pa.array(order)
    return {
        name: pa.chunked_array(columns).combine_chunks().take(placing)
        for name, columns in pieces.items()
    }


def _compute_chunk(
    g: _Group, probe_key: np.ndarray, t: np.ndarray, kernel: WindowKernel, report: PitReport
) -> dict[str, pa.Array]:
    """The columns of `g`'s specs for the probes `(probe_key, t)`: plan, one kernel call (and
    one for the sparse bands), decode."""
    probes = pa.table({KEY: pa.array(probe_key, pa.int64()), PROBE_TIME: pa.array(t, pa.int64())})
    planned = [_Planned(s, g) for s in g.specs]
    _count_asof_ties(g, report)
    sparse = g.sparse_inputs(probe_key, t)
    events = g.events_table()
    g.release()  # the kernel columns live on in `events`; the rest can go
    result = kernel.window_aggregate(events, probes, list(g.requests.values()))
    del events
    if sparse is not None:  # values far from their column's bulk (few rows)
        found = kernel.window_aggregate(sparse[0], sparse[1], list(g.sparse_requests.values()))
        g.sparse_result = (sparse[2], found)
    return {p.spec.name: p.decode(result, t) for p in planned}


def _lookback(spec: PitSpec) -> int | None:
    """How far before a probe a spec can see, delay included (None: without limit)."""
    if isinstance(spec, AsOfSpec):
        return None if spec.ttl_us is None else spec.delay_us + spec.ttl_us
    return None if spec.window_us is None else spec.delay_us + spec.window_us


#: A narrower tier stays on its own only when merging it into the next wider one would add at
#: least this many rows times features of work (its features over the wider tier's extra rows):
#: below that, one more kernel call (and planning pass) costs more than the rows it saves.
_TIER_MIN_SAVING = 2_000_000


def _tiers(
    ts: np.ndarray, t_min: int, lookbacks: list[int | None]
) -> list[tuple[int | None, list[int]]]:
    """The specs (by index) grouped into tiers of lookback, narrowest first: each tier's
    lookback (its widest spec's) and its specs. A tier merges into the next wider one while
    that adds less than `_TIER_MIN_SAVING` rows times features."""
    widths = sorted({b for b in lookbacks if b is not None})
    if any(b is None for b in lookbacks):
        widths.append(None)  # type: ignore[arg-type]
    rows = [len(ts) if w is None else int(np.count_nonzero(ts >= t_min - w)) for w in widths]
    specs = [sum(b == w for b in lookbacks) for w in widths]
    tiers: list[list[Any]] = []  # [lookback, rows, specs], each absorbing narrower ones
    for width, n, k in zip(widths, rows, specs, strict=True):
        if tiers and (n - tiers[-1][1]) * tiers[-1][2] < _TIER_MIN_SAVING:
            tiers[-1] = [width, n, tiers[-1][2] + k]
        else:
            tiers.append([width, n, k])
    bounds = [w for w, _, _ in tiers]
    members: dict[int | None, list[int]] = {w: [] for w in bounds}
    for i, b in enumerate(lookbacks):
        for w in bounds:  # the narrowest tier that reaches as far back as the spec
            if w is None or (b is not None and b <= w):
                members[w].append(i)
                break
    return [(w, members[w]) for w in bounds if members[w]]


#: A source is cut down to the rows of the probed keys only when that drops at least this share
#: of its rows (the cut copies what it keeps: below this it costs more than it saves).
_KEY_CUT_SHARE = 0.1


def _rows_of_keys(table: pa.Table, spine: pa.Table, keys: Sequence[str]) -> pa.Table:
    """The rows of `table` whose value of each key is one the spine probes (when that is worth
    a copy). For several keys this keeps a superset of the probed combinations.

    A probe's features depend only on the source rows of its own key (design §4), so the rows
    of other keys can go before any ranking, encoding or kernel work: same results, and a
    short date range over a long history reads a small share of it. Ranks, limbs and kernel
    inputs are all computed on what is kept; every one of them is exact, so the bits do not
    depend on which other rows were there.
    """
    mask = None
    for key in keys:
        column = table[key]
        wanted = pc.unique(spine[key]).cast(column.type)
        found = pc.is_in(column, value_set=wanted)
        mask = found if mask is None else pc.and_(mask, found)
    assert mask is not None
    kept = int(pc.sum(mask).as_py() or 0)
    if kept > (1 - _KEY_CUT_SHARE) * table.num_rows:
        return table
    table = _filter_rows(table, mask)
    if len(keys) > 1 and table.num_rows:
        # Every key value is probed, but not every combination: keep the probed pairs only.
        code = _combination_codes(table, spine, keys)
        if code is not None:
            found = pc.is_in(pa.array(code[0]), value_set=pa.array(np.unique(code[1])))
            if int(pc.sum(found).as_py() or 0) <= (1 - _KEY_CUT_SHARE) * table.num_rows:
                table = _filter_rows(table, found)
    return table


def _filter_rows(table: pa.Table, mask: pa.Array | pa.ChunkedArray) -> pa.Table:
    """`table.filter(mask)` column by column: the same rows in the same order, about 3x faster
    than `Table.filter` (which plans an Acero query) on millions of rows."""
    return pa.Table.from_arrays([c.filter(mask) for c in table.columns], schema=table.schema)


def _combination_codes(
    table: pa.Table, spine: pa.Table, keys: Sequence[str]
) -> tuple[np.ndarray, np.ndarray] | None:
    """One int64 per key combination of `table` and of `spine` (mixed radix over the keys'
    ranges), or None when the ranges' product does not fit an int64."""
    columns = [
        (_np(table[k]).astype(np.int64, copy=False), _np(spine[k]).astype(np.int64, copy=False))
        for k in keys
    ]
    lows, sizes = [], []
    for ours, theirs in columns:
        low = min(int(ours.min()), int(theirs.min()))
        lows.append(low)
        sizes.append(max(int(ours.max()), int(theirs.max())) - low + 1)
    if math.prod(sizes) > 2**63 - 1:
        return None
    codes = []
    for side in (0, 1):
        code = np.zeros(len(columns[0][side]), dtype=np.int64)
        for cols, low, size in zip(columns, lows, sizes, strict=True):
            code *= np.int64(size)
            code += cols[side] - np.int64(low)
        codes.append(code)
    return codes[0], codes[1]


def _count_asof_ties(g: _Group, report: PitReport) -> None:
    """Count the rows of an as-of source that tie with another on (key, ts, created)."""
    if not any(isinstance(s, AsOfSpec) for s in g.specs) or g.table.num_rows < 2:
        return
    g.rank(None)  # sorted by (ts, created): only rows in runs of an equal sort key can tie
    rows, run = g.cache[("tied", None)]
    if not len(rows):
        return
    # The sort key may hold ts alone: compare every column, within runs (sorted by run first).
    columns = [g.ts[rows], *([] if g.created is None else [g.created[rows]]), g.key[rows]]
    order = np.lexsort([*reversed(columns), run])
    same = run[order][1:] == run[order][:-1]
    for c in columns:
        c = c[order]
        same &= c[1:] == c[:-1]
    ties = int(same.sum())
    if ties:
        report.asof_ties[g.source.name] = report.asof_ties.get(g.source.name, 0) + ties
