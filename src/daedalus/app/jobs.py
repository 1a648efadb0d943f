"""Training runs as jobs: started, followed, cancelled, and remembered in the run store."""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from daedalus.app.errors import AppError
from daedalus.app.pipeline_cases import PipelineCases, parse_day
from daedalus.ports import RunStorePort

__all__ = ["FINISHED", "JobCases", "this_process"]

FINISHED = ("succeeded", "failed", "cancelled")


def this_process() -> str:
    """`pid@host`: who runs a job, to tell a live job from one whose process died."""
    return f"{os.getpid()}@{socket.gethostname()}"


def _alive(owner: str) -> bool:
    pid_text, _, host = owner.partition("@")
    if host != socket.gethostname():
        return True  # another machine's job: we cannot tell, so we trust the record
    try:
        os.kill(int(pid_text), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class JobCases:
    """Start a training run as a job (in a background thread of this process), follow it,
    cancel it. A cancelled or killed job never leaves a partial day: the executor publishes
    each day atomically and polls the cancel flag between steps."""

    def __init__(self, store: RunStorePort, pipeline: PipelineCases) -> None:
        self.store = store
        self.pipeline = pipeline
        self._threads: dict[str, threading.Thread] = {}
        self._cancel: set[str] = set()
        self._lock = threading.Lock()

    def start_training(
        self,
        service: str,
        start: str,
        end: str,
        *,
        engine: str | None = None,
        force: bool = False,
        max_invalid_fraction: float | None = None,
        allow_duplicate_spine_rows: bool = False,
        wait: bool = False,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Check the arguments, record a job and run it (in the background unless `wait`;
        `on_event` also receives the run's progress events).

        Raises AppError before any job exists for an unknown service, a bad or reversed date
        range or engine, and when a job for the same service is already running.
        """
        first, last = parse_day(start, "start"), parse_day(end, "end")
        if first > last:
            raise AppError(
                "invalid_argument", f"start {first} is after end {last}", {"field": "start"}
            )
        pipeline = self.pipeline.pipeline(service, engine)
        policy = self.pipeline.policy(max_invalid_fraction, allow_duplicate_spine_rows)
        with self._lock:
            for job in self.store.list(limit=200):
                if (
                    job["state"] in ("queued", "running")
                    and job["params"].get("service") == service
                    and self._refresh(job)["state"] in ("queued", "running")
                ):
                    raise AppError(
                        "conflict",
                        f"job {job['id']} is already training {service!r}",
                        {"job_id": job["id"]},
                    )
            params = {
                "service": service,
                "start": first.isoformat(),
                "end": last.isoformat(),
                "engine": pipeline.engine,
                "force": force,
                "max_invalid_fraction": policy.max_invalid_fraction,
                "allow_duplicate_spine_rows": policy.allow_duplicate_spine_rows,
            }
            job = self.store.create("train", params, this_process())
        if wait:
            self._run(job["id"], params, on_event)
        else:
            thread = threading.Thread(
                target=self._run,
                args=(job["id"], params, on_event),
                daemon=True,
                name=f"daeda-job-{job['id']}",
            )
            self._threads[job["id"]] = thread
            thread.start()
        return self.status(job["id"])

    def first_day(self, service: str) -> str | None:
        """The first day (YYYY-MM-DD) a training job of `service` has work for: the earliest
        day with spine rows (`PipelineCases.spine_days`: the spine's files alone, no store
        opened). None when the spine has no rows. Where a schedule of daily jobs starts
        (Dagster's first partition). Raises AppError for an unknown service or missing inputs."""
        return min(self.pipeline.spine_days(service), default=None)

    def _run(
        self,
        job_id: str,
        params: dict[str, Any],
        listener: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.store.update(job_id, state="running", started_at=_now())
        progress: dict[str, Any] = {
            "days_total": None,
            "days_done": 0,
            "current_day": None,
            "rows": 0,
        }

        def on_event(event: dict[str, Any]) -> None:
            kind = event["event"]
            if kind == "run_started":
                progress["days_total"] = event["days"]
            elif kind == "day_started":
                progress["current_day"] = event["day"]
            elif kind in ("day_done", "day_skipped"):
                progress["days_done"] += 1
                progress["rows"] += event.get("rows", 0) or 0
            self.store.update(job_id, progress=dict(progress))
            if listener is not None:
                listener(event)

        def should_cancel() -> bool:
            if job_id in self._cancel:
                return True
            record = self.store.get(job_id)
            return bool(record and record.get("cancel_requested"))

        holder = {"job": job_id, "process": this_process(), "started_at": _now()}
        try:
            result = self.pipeline.train(
                params["service"],
                params["start"],
                params["end"],
                engine=params["engine"],
                force=params["force"],
                on_event=on_event,
                should_cancel=should_cancel,
                policy=self.pipeline.policy(
                    params.get("max_invalid_fraction"),
                    params.get("allow_duplicate_spine_rows", False),
                ),
                holder=holder,
            )
        except KeyboardInterrupt:  # Ctrl-C of a job run in the caller's thread: it is cancelled
            self.store.update(
                job_id,
                state="cancelled",
                finished_at=_now(),
                error={"kind": "cancelled", "message": "interrupted (Ctrl-C)"},
            )
            raise
        except AppError as exc:
            state = "cancelled" if exc.kind == "cancelled" else "failed"
            self.store.update(job_id, state=state, error=exc.to_dict(), finished_at=_now())
        except Exception as exc:  # a job must end in a state, whatever happens
            self.store.update(
                job_id,
                state="failed",
                finished_at=_now(),
                error={"kind": "internal", "message": f"{type(exc).__name__}: {exc}"},
            )
        else:
            self.store.update(job_id, state="succeeded", result=result, finished_at=_now())
        finally:
            self._cancel.discard(job_id)

    def _refresh(self, job: dict[str, Any]) -> dict[str, Any]:
        """A job recorded as running whose process is gone was killed: say so."""
        if (
            job["state"] in ("queued", "running")
            and job["id"] not in self._threads
            and not _alive(job["owner"])
        ):
            self.store.update(
                job["id"],
                state="failed",
                finished_at=_now(),
                error={
                    "kind": "interrupted",
                    "message": "the process running the job died; "
                    "days it had published are complete, the rest were never published",
                },
            )
            return self.store.get(job["id"]) or job
        return job

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's record: state, params, progress, result or error."""
        job = self.store.get(str(job_id))
        if job is None:
            raise AppError("not_found", f"unknown job {job_id!r}", {"job_id": job_id})
        return self._refresh(job)

    def list(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent jobs, newest first."""
        if not 1 <= limit <= 1000:
            raise AppError("invalid_argument", "limit must be from 1 to 1000", {"field": "limit"})
        return [self._refresh(j) for j in self.store.list(limit)]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask a job to stop at its next step; a finished job is returned unchanged."""
        job = self.status(job_id)
        if job["state"] not in FINISHED:
            self._cancel.add(job["id"])
            self.store.request_cancel(job["id"])
        return self.status(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until a job started by this process finishes (or `timeout` passes)."""
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
        return self.status(job_id)
