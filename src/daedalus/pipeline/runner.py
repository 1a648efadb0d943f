"""The default day runner: days one after another, in this process."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence

from daedalus.ports import DayFunction, DayRunnerPort, R

__all__ = ["LocalDayRunner"]


def _never() -> bool:
    return False


class LocalDayRunner(DayRunnerPort):
    """Runs each day in the calling thread, in day order: one day in flight at a time.

    The caller's `should_stop` is handed to the day function itself, so a cancel is noticed
    between the steps of a day, not only between days.
    """

    name = "local"

    def run(
        self,
        fn: DayFunction[R],
        days: Sequence[dt.date],
        *,
        on_start: Callable[[dt.date], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[R]:
        stop = should_stop or _never
        for day in days:
            if stop():
                return
            if on_start is not None:
                on_start(day)
            yield fn(day, stop)

    def __repr__(self) -> str:
        return "LocalDayRunner()"
