"""`RayDayRunner`: batches of training days as Ray tasks on a cluster — the scale-out path.

The driver (the process running `run_pipeline`) decides which days need work and groups them
into batches, then submits one Ray task per batch: the batch function (plan, identities,
aggregator, enricher, sink — adapters that hold settings, not connections) is put in the object
store once and each task runs it for its batch. Inside the task a large batch's enrich runs
Ray Data on the same cluster (Ray is already initialised in a worker); a small one pools in
the task's process.

Scheduling. Each task asks for `DAY_TASK_CPUS` logical CPUs, and an enrich on Ray Data inside it
holds a pool of actors (`enricher.num_actors` × 0.5 CPU, 1 CPU by default) while its read and
write tasks (0.5 CPU each) come and go. If the long-lived reservations (tasks plus actor pools)
took every CPU, no read task could start and every batch would wait forever; so by default at
most half the cluster's CPUs (rounded down, at least 1) batches are in flight:
`limit × 1.5 ≤ 0.75 × CPUs`, which leaves room for the short tasks on any cluster of 2 CPUs or
more. `max_in_flight` overrides it (then keep `limit × 1.5 < CPUs`).

Memory. At most `limit` batches are in flight and a task returns only its small `DayResult`s;
the rows go straight from the worker to the sink. So the output directory must be on a
filesystem every node sees at the same path (NFS, a shared volume; on one machine, any local
directory), and so must the workspace's sources and embedding stores. Each day is still
published atomically by the sink (staging directory, then an exchange of directories), so a
batch cancelled or killed half-way leaves no partial day; a force-killed task's staging
directory is swept by the next run.

Errors. A batch that raises stops the run: the batches in flight are cancelled (their staging
is thrown away) and the batch's own exception — a `PitError`, `SinkError`, ... unwrapped from
Ray's `RayTaskError` — propagates, with the remote traceback attached as a note. Only tasks
still running are cancelled: cancelling one that is completing trips a check in Ray's task
manager that aborts the driver.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterator, Sequence

import ray
from daedalus.adapters.lance_ray.enricher import ensure_ray
from ray.exceptions import RayError, RayTaskError

from daedalus.ports import DayBatch, DayFunction, DayRunnerPort, R

__all__ = ["DAY_TASK_CPUS", "RayDayRunner"]

log = logging.getLogger(__name__)

#: Logical CPUs each day task holds (a scheduling weight; the compute engines use threads).
DAY_TASK_CPUS = 0.5


def _never() -> bool:
    return False


@ray.remote(num_cpus=DAY_TASK_CPUS)
def _run_day_task(fn: DayFunction[R], batch: DayBatch) -> R:
    """One batch of days on a Ray worker. The caller's cancel flag cannot reach here: the
    driver cancels the task instead (`ray.cancel`), which interrupts it like Ctrl-C would."""
    return fn(batch, _never)


class RayDayRunner(DayRunnerPort):
    """Runs each batch of days as a Ray task on the cluster at `address`, several at once.

    `address`: what `ray.init(address=...)` takes (`host:port`, `auto`, `ray://host:10001`);
    a Ray already initialised in this process is reused as it is. `max_in_flight`: how many
    batches may run at once (default: half the cluster's CPUs, at least 1; see the module doc).
    `poll_seconds`: how often the stop flag is checked while waiting for a batch.
    `cancel_grace_seconds`: how long cancelled batches get to clean up before they are killed.
    """

    name = "ray"

    def __init__(
        self,
        address: str,
        *,
        max_in_flight: int | None = None,
        poll_seconds: float = 0.2,
        cancel_grace_seconds: float = 30.0,
    ) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.address = address
        self.max_in_flight = max_in_flight
        self.poll_seconds = poll_seconds
        self.cancel_grace_seconds = cancel_grace_seconds

    def __repr__(self) -> str:
        return f"RayDayRunner({self.address!r}, max_in_flight={self.max_in_flight})"

    def check(self) -> None:
        """Connect to the cluster (before any day is written); ConnectionError says how not."""
        try:
            ensure_ray(self.address)
        except ConnectionError as exc:
            raise ConnectionError(
                f"cannot reach the Ray cluster at {self.address!r} ({exc}). Check the address; "
                "a cluster with token authentication (the default of `ray start`) also needs "
                "RAY_AUTH_MODE=token and its token (~/.ray/auth_token, RAY_AUTH_TOKEN or "
                "RAY_AUTH_TOKEN_PATH) in this process's environment"
            ) from exc

    def in_flight_limit(self) -> int:
        """Days run at once: `max_in_flight`, else half the cluster's CPUs (at least 1)."""
        if self.max_in_flight is not None:
            return self.max_in_flight
        self.check()
        cpus = float(ray.cluster_resources().get("CPU", 0.0))
        return max(1, int(cpus // 2))

    def run(
        self,
        fn: DayFunction[R],
        batches: Sequence[DayBatch],
        *,
        on_start: Callable[[DayBatch], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[R]:
        stop = should_stop or _never
        queue = collections.deque(batches)
        if not queue:
            return
        self.check()
        limit = self.in_flight_limit()
        fn_ref = ray.put(fn)  # shipped once, shared by every day's task
        pending: dict[ray.ObjectRef, DayBatch] = {}
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    if stop():
                        return
                    batch = queue.popleft()
                    if on_start is not None:
                        on_start(batch)
                    ref = _run_day_task.options(name=f"daedalus-days-{batch}").remote(fn_ref, batch)
                    pending[ref] = batch
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll_seconds)
                for ref in ready:
                    yield self._result(ref, pending.pop(ref))
                if not ready and stop():
                    return
        finally:
            self._cancel(pending)

    def _result(self, ref: ray.ObjectRef, batch: DayBatch) -> R:
        """The day's result; a day's own exception is re-raised as itself, not Ray's wrapper."""
        try:
            return ray.get(ref)
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, Exception) and not isinstance(cause, RayError):
                # `exc` is Ray's dual RayTaskError(cause class): its str holds the remote trace.
                remote = getattr(exc, "traceback_str", None) or str(exc)
                cause.add_note(
                    f"days {batch} failed on the Ray cluster at {self.address}; remote "
                    "traceback:\n"
                    f"{remote}"
                )
                raise cause from None
            raise

    def _cancel(self, pending: dict[ray.ObjectRef, DayBatch]) -> None:
        """Cancel the batches in flight and give them time to throw their staging away."""
        if not pending:
            return
        # Only tasks still running: cancelling one that is completing trips a check inside
        # Ray's task manager (it aborts the driver), and a finished one has nothing to stop.
        _, refs = ray.wait(list(pending), num_returns=len(pending), timeout=0)
        if not refs:
            return
        log.info("cancelling %d batch(es) in flight on Ray: %s", len(refs), list(pending.values()))
        for ref in refs:
            ray.cancel(ref, force=False, recursive=True)
        _, stuck = ray.wait(refs, num_returns=len(refs), timeout=self.cancel_grace_seconds)
        for ref in stuck:  # still running after the grace period: kill the worker
            ray.cancel(ref, force=True, recursive=True)
