"""What each aggregation function accepts and returns, as Arrow types (checked at load time)."""

from __future__ import annotations

import pyarrow as pa

from daedalus.catalog.model import AggFunction

__all__ = ["MAX_LAST_N", "aggregation_output_type", "is_value_type_supported"]

MAX_LAST_N = 1000


def _is_int(t: pa.DataType) -> bool:
    return pa.types.is_integer(t)


def _is_float(t: pa.DataType) -> bool:
    return pa.types.is_floating(t) and not pa.types.is_float16(t)


def _is_scalar(t: pa.DataType) -> bool:
    return (
        _is_int(t)
        or _is_float(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_date32(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_decimal(t)
    )


def _is_orderable(t: pa.DataType) -> bool:
    return _is_scalar(t) and not pa.types.is_decimal(t)


def is_value_type_supported(function: AggFunction, t: pa.DataType | None) -> str | None:
    """Return None when `function` can take a column of type `t`, else the reason it cannot."""
    if t is None:
        return None if function is AggFunction.COUNT else f"{function} needs a column"
    if function is AggFunction.COUNT:
        return None
    if function in (AggFunction.SUM, AggFunction.MEAN, AggFunction.STDDEV):
        if _is_int(t) or _is_float(t):
            return None
        return f"{function} needs an integer or floating-point column"
    if function in (AggFunction.MIN, AggFunction.MAX):
        if _is_orderable(t):
            return None
        return (
            f"{function} needs an orderable scalar column (number, text, boolean, date, timestamp)"
        )
    if _is_scalar(t):
        return None
    return f"{function} needs a scalar column (not a list, struct or map)"


def aggregation_output_type(function: AggFunction, t: pa.DataType | None) -> pa.DataType:
    """The Arrow type of an aggregate's output column; raises ValueError for an unusable input."""
    reason = is_value_type_supported(function, t)
    if reason is not None:
        raise ValueError(reason)
    match function:
        case AggFunction.COUNT | AggFunction.COUNT_DISTINCT:
            return pa.int64()
        case AggFunction.SUM:
            assert t is not None
            return pa.int64() if _is_int(t) else pa.float64()
        case AggFunction.MEAN | AggFunction.STDDEV:
            return pa.float64()
        case AggFunction.LAST_N:
            assert t is not None
            return pa.list_(t)
        case _:
            assert t is not None
            return t
