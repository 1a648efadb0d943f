"""Day runners: the local runner, and `run_pipeline` driving any runner through the port
(skip logic, events, manifests, errors and cancels stay in the driver)."""

from __future__ import annotations

import datetime as dt
import os
import pickle
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daedalus.catalog.registry import FeatureCatalog
from daedalus.pipeline.compiler import compile_service
from daedalus.pipeline.executor import (
    BatchTask,
    Cancelled,
    DayResult,
    plan_batches,
    run_pipeline,
)
from daedalus.pipeline.runner import LocalDayRunner
from daedalus.pit.errors import PitError
from daedalus.ports import DayBatch, DayRunnerPort
from tests.fakes import (
    InMemoryAggregator,
    InMemoryEmbeddingStore,
    InMemoryEnricher,
    InMemorySink,
    OutOfOrderDayRunner,
)

DAYS = [dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)]
CATALOG = """\
kind: feature_view
name: clicks
entity: user
source: {path: data/events/*.parquet, timestamp: event_ts}
schema: {user_id: BIGINT, artwork_id: BIGINT, event_ts: TIMESTAMPTZ}
aggregations:
  - {name: clicks_1d, function: count, window: 1d}
  - {name: recent, function: last_n, n: 3, column: artwork_id, window: 7d}
---
kind: embedding_store
name: art
entity: artwork
path: data/art.lance
id_column: artwork_id
vector_column: vector
dim: 2
---
kind: feature_service
name: svc
spine: {path: data/spine/*.parquet, timestamp: ts, entity: [user, artwork], labels: {y: BOOLEAN}}
features: [clicks:*]
embeddings:
  - {name: art_emb, store: art, source: artwork_id}
"""
TS = pa.timestamp("us", tz="UTC")


class FailingOn(InMemoryAggregator):
    """Fails every call for the spine rows of one day (an engine error inside that day)."""

    def __init__(self, day: dt.date) -> None:
        super().__init__()
        self.day = day

    def aggregate_pit_table(self, spine: pa.Table, specs: Any, **kw: Any) -> pa.Table:
        if spine.num_rows and spine[kw.get("timestamp", "ts")][0].as_py().date() == self.day:
            raise PitError("the engine failed", code="engine")
        return super().aggregate_pit_table(spine, specs, **kw)


BATCHES = [DayBatch((d,), 3) for d in DAYS]


def _at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


def make_workspace(root: Path, *, null_key_on: dt.date | None = None) -> Path:
    """Events on every day, three spine rows a day; a null user id on `null_key_on`."""
    (root / "feature_views").mkdir(parents=True)
    (root / "feature_views" / "svc.yaml").write_text(CATALOG)
    (root / "data" / "events").mkdir(parents=True)
    (root / "data" / "spine").mkdir(parents=True)
    events = [
        (user, 10 * user + k, _at(day, 2 + k)) for day in DAYS for user in (1, 2) for k in range(3)
    ]
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([e[0] for e in events], pa.int64()),
                "artwork_id": pa.array([e[1] for e in events], pa.int64()),
                "event_ts": pa.array([e[2] for e in events], TS),
            }
        ),
        root / "data" / "events" / "part-0.parquet",
    )
    spine = [
        (None if day == null_key_on and i == 0 else 1 + i % 2, 10 + i, _at(day, 12 + i), i == 1)
        for day in DAYS
        for i in range(3)
    ]
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([r[0] for r in spine], pa.int64()),
                "artwork_id": pa.array([r[1] for r in spine], pa.int64()),
                "ts": pa.array([r[2] for r in spine], TS),
                "y": pa.array([r[3] for r in spine], pa.bool_()),
            }
        ),
        root / "data" / "spine" / "part-0.parquet",
    )
    return root


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "ws")


def enricher() -> InMemoryEnricher:
    store = InMemoryEmbeddingStore({10: [1.0, 2.0], 11: [0.5, -0.5]}, dim=2)
    return InMemoryEnricher({"art": store})


def train(
    workspace: Path,
    sink: InMemorySink,
    runner: DayRunnerPort | None = None,
    events: list[dict[str, Any]] | None = None,
    aggregator: InMemoryAggregator | None = None,
    batch_rows: int = 3,  # three spine rows a day: one day per batch, unless a test says so
    **kw: Any,
) -> Any:
    catalog = FeatureCatalog.from_yaml_dir(workspace / "feature_views")
    return run_pipeline(
        compile_service("svc", catalog, "duckdb"),
        DAYS[0],
        DAYS[-1],
        workspace=workspace,
        aggregator=aggregator or InMemoryAggregator(),
        enricher=kw.pop("enricher", None) or enricher(),
        sink=sink,
        runner=runner,
        on_event=None if events is None else events.append,
        batch_rows=batch_rows,
        **kw,
    )


# ------------------------------------------------------------------------------ LocalDayRunner


class TestLocalDayRunner:
    def test_runs_days_in_order_and_hands_the_stop_flag_to_each_day(self) -> None:
        started: list[dt.date] = []
        seen: list[tuple[dt.date, bool]] = []

        def stop() -> bool:
            return False

        def fn(batch: DayBatch, cancelled: Any) -> str:
            seen.append((batch.first, cancelled is stop))
            assert started[-1] == batch  # on_start comes right before the batch runs
            return str(batch)

        out = list(LocalDayRunner().run(fn, BATCHES, on_start=started.append, should_stop=stop))
        assert out == [d.isoformat() for d in DAYS]
        assert started == BATCHES and seen == [(d, True) for d in DAYS]

    def test_stops_before_the_next_day_when_asked(self) -> None:
        ran: list[DayBatch] = []
        outcomes = LocalDayRunner().run(
            lambda batch, _c: ran.append(batch), BATCHES, should_stop=lambda: len(ran) == 2
        )
        assert len(list(outcomes)) == 2 and ran == BATCHES[:2]

    def test_a_day_error_propagates_as_itself(self) -> None:
        def fn(batch: DayBatch, _c: Any) -> None:
            if batch.first == DAYS[1]:
                raise PitError("bad day", code="null_key")

        with pytest.raises(PitError, match="bad day"):
            list(LocalDayRunner().run(fn, BATCHES))

    def test_it_is_named_local_and_has_nothing_to_check(self) -> None:
        runner = LocalDayRunner()
        assert runner.name == "local" and runner.check() is None


# ------------------------------------------------------------------------------ the driver


class TestRunPipelineWithARunner:
    def test_the_default_is_the_local_runner_and_manifests_say_so(self, workspace: Path) -> None:
        sink, events = InMemorySink(), []
        summary = train(workspace, sink, events=events)
        assert summary.runner == "local" and summary.to_dict()["runner"] == "local"
        assert [d.status for d in summary.days] == ["written"] * 3
        for day in DAYS:
            manifest = sink.read_manifest("svc", day)
            assert manifest["runner"] == "local"
            assert manifest["worker"].split("@")[0] == str(os.getpid())
        kinds = [(e["event"], e.get("day")) for e in events]
        assert kinds[0] == ("run_started", None) and events[0]["runner"] == "local"
        assert kinds[1:-1] == [
            (kind, None if kind == "batch_started" else d.isoformat())
            for d in DAYS
            for kind in ("batch_started", "day_started", "day_done")
        ]

    def test_an_out_of_order_runner_gives_the_same_days_in_day_order(self, workspace: Path) -> None:
        local, fake_sink = InMemorySink(), InMemorySink()
        train(workspace, local)
        runner, events = OutOfOrderDayRunner(in_flight=2), []
        summary = train(workspace, fake_sink, runner, events)
        assert runner.finished == [DAYS[1], DAYS[0], DAYS[2]]  # really out of order
        assert [d.day for d in summary.days] == DAYS and summary.runner == "fake"
        for day in DAYS:
            table, manifest = fake_sink.days[("svc", day)]
            assert table.equals(local.days[("svc", day)][0])
            assert manifest["runner"] == "fake"
        # Progress events are the driver's: two days started before the first is done.
        kinds = [(e["event"], e.get("day")) for e in events[1:-1] if "day" in e]
        assert kinds[:4] == [
            ("day_started", "2026-01-01"),
            ("day_started", "2026-01-02"),
            ("day_done", "2026-01-02"),
            ("day_done", "2026-01-01"),
        ]

    def test_the_runner_is_not_part_of_a_days_identity(self, workspace: Path) -> None:
        sink = InMemorySink()
        train(workspace, sink, OutOfOrderDayRunner())
        runner = OutOfOrderDayRunner()
        summary = train(workspace, sink, runner)
        assert summary.skipped == 3 and runner.started == []
        assert train(workspace, sink).skipped == 3  # nor is "local" vs "fake"

    def test_skipped_days_are_decided_by_the_driver_before_submitting(
        self, workspace: Path
    ) -> None:
        sink = InMemorySink()
        train(workspace, sink)
        del sink.days[("svc", DAYS[1])]
        runner, events = OutOfOrderDayRunner(), []
        summary = train(workspace, sink, runner, events)
        assert runner.started == [DAYS[1]]
        assert [d.status for d in summary.days] == ["skipped", "written", "skipped"]
        skipped = [e["day"] for e in events if e["event"] == "day_skipped"]
        assert skipped == [DAYS[0].isoformat(), DAYS[2].isoformat()]

    def test_a_null_spine_key_is_refused_before_any_day_runs(self, tmp_path: Path) -> None:
        ws = make_workspace(tmp_path / "bad", null_key_on=DAYS[1])
        sink, runner = InMemorySink(), OutOfOrderDayRunner(in_flight=2)
        with pytest.raises(PitError, match=r"spine: 1 row\(s\) have a null entity key") as err:
            train(ws, sink, runner)
        assert err.value.code == "bad_input"
        assert runner.started == [] and sink.days == {}

    def test_a_failing_day_stops_the_run_with_its_own_error_and_no_partial_day(
        self, workspace: Path
    ) -> None:
        sink, runner = InMemorySink(), OutOfOrderDayRunner(in_flight=2)
        with pytest.raises(PitError, match=r"^day 2026-01-02: the engine failed") as err:
            train(workspace, sink, runner, aggregator=FailingOn(DAYS[1]))
        assert err.value.code == "engine"
        # Day 2 ran first (newest first) and failed: day 1, in flight, was cancelled.
        assert runner.failed == [DAYS[1]] and runner.cancelled == [DAYS[0]]
        assert sink.days == {} and runner.started == DAYS[:2]

    def test_a_cancel_between_results_stops_and_cancels_the_days_in_flight(
        self, workspace: Path
    ) -> None:
        sink, runner = InMemorySink(), OutOfOrderDayRunner(in_flight=3)
        with pytest.raises(Cancelled, match="cancelled during 2026-01-01"):
            train(workspace, sink, runner, should_cancel=lambda: bool(runner.finished))
        # The first result (day 3) was published; the two days in flight were cancelled.
        assert list(sink.days) == [("svc", DAYS[2])]
        assert runner.cancelled == [DAYS[1], DAYS[0]]

    def test_a_cancel_with_the_local_runner_is_seen_inside_a_day(self, workspace: Path) -> None:
        sink, calls = InMemorySink(), []

        def should_cancel() -> bool:
            calls.append(1)
            return len(calls) > 6  # some way into the first day

        with pytest.raises(Cancelled, match="cancelled during 2026-01-01"):
            train(workspace, sink, should_cancel=should_cancel)
        assert sink.days == {}

    def test_the_day_task_pickles_with_the_plan_and_the_adapters(self, workspace: Path) -> None:
        catalog = FeatureCatalog.from_yaml_dir(workspace / "feature_views")
        sink = InMemorySink()
        task = None

        class Capture(LocalDayRunner):
            def run(self, fn: Any, days: Any, **kw: Any) -> Any:
                nonlocal task
                task = fn
                return iter(())

        with pytest.raises(RuntimeError, match="stopped before 2026-01-01"):  # no day came back
            run_pipeline(
                compile_service("svc", catalog, "duckdb"),
                DAYS[0],
                DAYS[0],
                workspace=workspace,
                aggregator=InMemoryAggregator(),
                enricher=enricher(),
                sink=sink,
                runner=Capture(),
            )
        assert isinstance(task, BatchTask)
        copy = pickle.loads(pickle.dumps(task))
        (result,) = copy(DayBatch((DAYS[0],), 3), lambda: False)
        assert isinstance(result, DayResult) and result.rows == 3
        assert copy.sink.days[("svc", DAYS[0])][1]["runner"] == "local"


# ------------------------------------------------------------------------------ batches


class TestBatches:
    def test_consecutive_days_are_grouped_up_to_the_row_budget(self) -> None:
        days = [dt.date(2026, 1, d) for d in (1, 2, 3, 4, 6, 7)]
        rows = {d.isoformat(): 10 for d in days} | {"2026-01-03": 25}
        batches = plan_batches(days, rows, budget=30)
        assert (
            [(b.days, b.rows) for b in batches]
            == [
                (tuple(days[:2]), 20),
                ((days[2],), 25),  # more than the budget with its neighbours: a batch of its own
                ((days[3],), 10),  # a gap (2026-01-05 is current) ends a batch
                (tuple(days[4:]), 20),
            ]
        )
        assert plan_batches([], rows, budget=30) == []

    def test_a_batched_run_writes_what_a_day_by_day_run_writes(self, workspace: Path) -> None:
        by_day, batched, calls = InMemorySink(), InMemorySink(), []

        class Counting(InMemoryAggregator):
            def aggregate_pit_table(self, spine: pa.Table, specs: Any, **kw: Any) -> pa.Table:
                calls.append(spine.num_rows)
                return super().aggregate_pit_table(spine, specs, **kw)

        train(workspace, by_day)
        pooling = enricher()
        summary = train(workspace, batched, aggregator=Counting(), batch_rows=6, enricher=pooling)
        assert summary.batches == 2 and calls and set(calls) == {6, 3}
        assert pooling.calls == 2 and pooling.enriched_rows == 9  # one enrich pass a batch
        for day in DAYS:
            written, manifest = batched.days[("svc", day)]
            assert written.equals(by_day.days[("svc", day)][0])
        assert manifest["batch"] == {
            "days": [DAYS[2].isoformat()],
            "rows": 3,
            "enriched_in": "process",
        }

    def test_a_failing_batch_names_its_days_and_publishes_none_of_them(
        self, workspace: Path
    ) -> None:
        sink = InMemorySink()
        with pytest.raises(PitError, match=r"^days 2026-01-01\.\.2026-01-02: the engine failed"):
            train(workspace, sink, aggregator=FailingOn(DAYS[0]), batch_rows=6)
        assert sink.days == {}
