"""A brute-force reference for the window kernel contract, shared by the kernel tests."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from daedalus.pit.kernel import KEY, PROBE_TIME, WindowOp, WindowRequest


def reference_window_aggregate(
    events: pa.Table, probes: pa.Table, requests: Sequence[WindowRequest]
) -> pa.Table:
    """What every WindowKernel must return, computed by brute force in pure Python."""
    ev = events.to_pydict()
    pr = probes.to_pydict()
    out: dict[str, list[int | None]] = {r.output: [] for r in requests}
    for key, t in zip(pr[KEY], pr[PROBE_TIME], strict=True):
        for r in requests:
            values = [
                v
                for k, ts, v in zip(ev[KEY], ev[r.time], ev[r.column], strict=True)
                if k == key
                and ts < t
                and (r.window_us is None or ts >= t - r.window_us)
                and v is not None
            ]
            match r.op:
                case WindowOp.COUNT:
                    out[r.output].append(len(values))
                case WindowOp.SUM:
                    out[r.output].append(sum(values))
                case WindowOp.MIN:
                    out[r.output].append(min(values) if values else None)
                case WindowOp.MAX:
                    out[r.output].append(max(values) if values else None)
                case WindowOp.COUNT_DISTINCT:
                    out[r.output].append(len(set(values)))
    return pa.table({name: pa.array(vals, pa.int64()) for name, vals in out.items()})
