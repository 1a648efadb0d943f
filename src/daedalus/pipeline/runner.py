"""The default day runner: batches of days one after another, in this process."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from daedalus.ports import DayBatch, DayFunction, DayRunnerPort, R

__all__ = ["LocalDayRunner"]


def _never() -> bool:
    return False


class LocalDayRunner(DayRunnerPort):
    """Runs each batch in the calling thread, in order: one batch in flight at a time.

    The caller's `should_stop` is handed to the batch function itself, so a cancel is noticed
    between the steps of a batch, not only between batches.
    """

    name = "local"

    def run(
        self,
        fn: DayFunction[R],
        batches: Sequence[DayBatch],
        *,
        on_start: Callable[[DayBatch], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[R]:
        stop = should_stop or _never
        for batch in batches:
            if stop():
                return
            if on_start is not None:
                on_start(batch)
            yield fn(batch, stop)

    def __repr__(self) -> str:
        return "LocalDayRunner()"
