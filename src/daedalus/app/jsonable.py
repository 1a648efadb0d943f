"""Turn Arrow/Python values into plain JSON values, the same for every surface."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
from typing import Any

__all__ = ["jsonable"]


def jsonable(value: Any) -> Any:
    """Timestamps and dates → ISO 8601, decimals → strings, bytes → base64, NaN/±inf →
    "NaN"/"Infinity"/"-Infinity" (JSON has no such numbers), containers recursively."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)
