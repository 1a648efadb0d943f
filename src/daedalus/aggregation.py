"""`KernelAggregator`: the AggregatorPort every engine is — the compute core driving its kernel."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from daedalus.pit.compute import PitReport, compute_pit_table
from daedalus.pit.kernel import WindowKernel
from daedalus.pit.spec import Engine, PitSpec
from daedalus.ports import AggregatorPort, SourceReaderPort

__all__ = ["KernelAggregator"]


class KernelAggregator(AggregatorPort):
    """Point-in-time features computed by `daedalus.pit.compute` on an engine's window kernel,
    over the rows `reader` reads (None: the registered default, the parquet reader).

    An engine adapter is this class with its kernel: the engines share the encoding and
    decoding, and differ only in the exact integer window work (see architecture.md).
    """

    def __init__(
        self, kernel: WindowKernel, engine: Engine, reader: SourceReaderPort | None = None
    ) -> None:
        self.kernel = kernel
        self.engine = engine
        self.reader = reader

    def aggregate_pit_table(
        self,
        spine: pa.Table,
        specs: Sequence[PitSpec],
        *,
        timestamp: str = "ts",
        naive_timestamps_are_utc: bool = False,
        report: PitReport | None = None,
    ) -> pa.Table:
        return compute_pit_table(
            spine,
            specs,
            self.kernel,
            timestamp=timestamp,
            naive_timestamps_are_utc=naive_timestamps_are_utc,
            report=report,
            reader=self.reader,
        )
