"""ParquetSink on a real filesystem, with real processes: a writer SIGKILLed after every step
of publishing a day (exchange and fallback paths) never loses the day; one writer per output
(an OS lock); manifests with sizes and checksums that `verify_day` checks; OS faults reported
as SinkError(code="storage") naming the day and the path."""

from __future__ import annotations

import datetime as dt
import errno
import importlib.util
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from daedalus.adapters.parquet import sink as sink_module
from daedalus.adapters.parquet.sink import LOCK, MANIFEST, OWNER, ParquetSink

from daedalus.ports import SinkError

CHILD = Path(__file__).with_name("sink_kill_child.py")
_spec = importlib.util.spec_from_file_location("sink_kill_child", CHILD)
assert _spec is not None and _spec.loader is not None
child = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(child)

SVC = "svc"
DAY: dt.date = child.DAY
SCHEMA: pa.Schema = child.SCHEMA
HOLDER = {"job": "test", "surface": "pytest"}

#: Every step of commit_day, in order, for each way of publishing.
STEPS = {
    ("exchange", "replace"): [
        "checked",
        "manifest_written",
        "fsynced",
        "exchanged",
        "parent_fsynced",
        "old_removed",
    ],
    ("exchange", "first"): [
        "checked",
        "manifest_written",
        "fsynced",
        "renamed_into_place",
        "parent_fsynced",
    ],
    ("fallback", "replace"): [
        "checked",
        "manifest_written",
        "fsynced",
        "renamed_aside",
        "renamed_into_place",
        "parent_fsynced",
        "old_removed",
    ],
    ("fallback", "first"): [
        "checked",
        "manifest_written",
        "fsynced",
        "renamed_into_place",
        "parent_fsynced",
    ],
}
CASES = [(mode, kind, step) for (mode, kind), steps in STEPS.items() for step in steps]


def day_dir(root: Path, day: dt.date = DAY) -> Path:
    return root / SVC / f"dt={day.isoformat()}"


def part_bytes(ddir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(ddir.glob("part-*.parquet"))}


def publish(sink: ParquetSink, version: str, day: dt.date = DAY) -> str:
    parts = child.version_parts(version)
    staging = sink.begin_day(SVC, day)
    for name, table in parts.items():
        sink.write_staged(staging, name, table)
    rows = sum(t.num_rows for t in parts.values())
    return sink.commit_day(SVC, day, staging, {"version": version, "rows": rows}, SCHEMA)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    """The part files of each version, from an uninterrupted commit of each."""
    out = {}
    for version in ("old", "new"):
        sink = ParquetSink(tmp_path_factory.mktemp(version))
        with sink.claim(SVC, HOLDER):
            out[version] = part_bytes(Path(publish(sink, version)))
    return out


def which_version(ddir: Path, reference: dict[str, dict[str, bytes]]) -> str:
    """ "old" or "new" when `ddir` is exactly that version, whole and consistent; else fail."""
    manifest = json.loads((ddir / MANIFEST).read_text())
    version = manifest["version"]
    assert part_bytes(ddir) == reference[version]
    assert sorted(p.name for p in ddir.iterdir()) == sorted([*reference[version], MANIFEST])
    assert [f["name"] for f in manifest["files"]] == sorted(reference[version])
    assert ParquetSink(ddir.parent.parent).verify_day(SVC, DAY) == []
    return version


def run_child(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHILD), *args], capture_output=True, text=True, timeout=timeout
    )


# -- a writer killed at every step of publishing ---------------------------------------------


@pytest.mark.parametrize(("mode", "kind"), list(STEPS))
def test_the_steps_of_a_commit_are_the_ones_killed_below(
    tmp_path: Path, mode: str, kind: str, reference: dict[str, dict[str, bytes]]
) -> None:
    if kind == "replace":
        with ParquetSink(tmp_path).claim(SVC, HOLDER):
            publish(ParquetSink(tmp_path), "old")
    done = run_child("commit", str(tmp_path), SVC, "new", "-", mode, "claim")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == STEPS[(mode, kind)]
    assert which_version(day_dir(tmp_path), reference) == "new"
    assert sorted(p.name for p in (tmp_path / SVC).iterdir()) == [LOCK, OWNER, f"dt={DAY}"]


@pytest.mark.parametrize(("mode", "kind", "step"), CASES)
def test_a_writer_killed_after_any_step_never_loses_the_day(
    tmp_path: Path, mode: str, kind: str, step: str, reference: dict[str, dict[str, bytes]]
) -> None:
    sink = ParquetSink(tmp_path)
    if kind == "replace":
        with sink.claim(SVC, HOLDER):
            publish(sink, "old")
    killed = run_child("commit", str(tmp_path), SVC, "new", step, mode, "claim")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert killed.stdout.split()[-1] == step
    target = day_dir(tmp_path)

    # Right after the crash: the old version or the new one, whole. Only the fallback has a
    # window, between its two renames, where the day is missing but whole in the trash.
    if target.exists():
        before = which_version(target, reference)
        assert before in (("old", "new") if kind == "replace" else ("new",))
    elif kind == "first" and step in ("checked", "manifest_written", "fsynced"):
        before = None  # a first publish killed before its rename: nothing was published yet
    else:
        assert (mode, step) == ("fallback", "renamed_aside")
        (trash,) = (tmp_path / SVC).glob(f".trash-dt={DAY}-*")
        assert part_bytes(trash) == reference["old"]
        before = "old"

    # The next claim recovers: the day as it was (restored from the trash if need be), no
    # debris; the killed writer's lock did not outlive it.
    with sink.claim(SVC, HOLDER):
        names = sorted(p.name for p in (tmp_path / SVC).iterdir())
        if before is None:
            assert names == [LOCK, OWNER]
        else:
            assert names == [LOCK, OWNER, f"dt={DAY}"]
            assert which_version(target, reference) == before
        publish(sink, "new")  # publishing again gives what an uninterrupted commit gives
    assert part_bytes(target) == reference["new"]
    assert which_version(target, reference) == "new"
    assert sorted(p.name for p in (tmp_path / SVC).iterdir()) == [LOCK, OWNER, f"dt={DAY}"]


def test_claim_restores_the_newest_trashed_copy_and_drops_older_ones(
    tmp_path: Path, reference: dict[str, dict[str, bytes]]
) -> None:
    sink = ParquetSink(tmp_path)
    with sink.claim(SVC, HOLDER):
        publish(sink, "old")
    older = tmp_path / SVC / f".trash-dt={DAY}-{1:016x}-aaaaaaaa"
    newest = tmp_path / SVC / f".trash-dt={DAY}-{2:016x}-bbbbbbbb"
    shutil.copytree(day_dir(tmp_path), older)
    day_dir(tmp_path).rename(newest)
    (older / "part-00000.parquet").write_bytes(b"not the one to keep")
    with sink.claim(SVC, HOLDER):
        pass
    assert which_version(day_dir(tmp_path), reference) == "old"
    assert sorted(p.name for p in (tmp_path / SVC).iterdir()) == [LOCK, OWNER, f"dt={DAY}"]


def test_a_trashed_copy_is_deleted_when_the_day_is_in_place(
    tmp_path: Path, reference: dict[str, dict[str, bytes]]
) -> None:
    sink = ParquetSink(tmp_path)
    with sink.claim(SVC, HOLDER):
        publish(sink, "new")
    shutil.copytree(day_dir(tmp_path), tmp_path / SVC / f".trash-dt={DAY}-{1:016x}-aaaaaaaa")
    with sink.claim(SVC, HOLDER):
        pass
    assert which_version(day_dir(tmp_path), reference) == "new"
    assert sorted(p.name for p in (tmp_path / SVC).iterdir()) == [LOCK, OWNER, f"dt={DAY}"]


# -- one writer per output -------------------------------------------------------------------


@pytest.fixture
def holder_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), "hold", str(tmp_path), SVC],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    staging = Path(proc.stdout.readline().strip())
    assert proc.stdout.readline().strip() == "locked", proc.stderr.read() if proc.stderr else ""
    try:
        yield proc, staging
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_a_second_writer_gets_a_conflict_naming_the_first(
    tmp_path: Path, holder_process: tuple[subprocess.Popen[str], Path]
) -> None:
    proc, staging = holder_process
    with pytest.raises(SinkError) as caught, ParquetSink(tmp_path).claim(SVC, HOLDER):
        pytest.fail("a second writer got the output")
    err = caught.value
    assert err.code == "conflict"
    assert f"pid {proc.pid} on " in str(err) and "job=holder-test" in str(err)
    assert str(tmp_path / SVC / LOCK) in str(err)
    assert err.data["holder"]["pid"] == proc.pid and err.data["holder"]["job"] == "holder-test"
    assert err.data["path"] == str(tmp_path / SVC / LOCK)
    assert staging.is_dir()  # the failed claim swept nothing of the live writer's


def test_a_killed_writer_releases_the_output(
    tmp_path: Path, holder_process: tuple[subprocess.Popen[str], Path]
) -> None:
    proc, staging = holder_process
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    sink = ParquetSink(tmp_path)
    with sink.claim(SVC, {"job": "next"}):
        assert not staging.exists()  # the dead writer's staging is swept
        recorded = json.loads((tmp_path / SVC / LOCK).read_text())
        assert recorded["job"] == "next" and recorded["pid"] == os.getpid()
        assert recorded["host"] and recorded["service"] == SVC


def test_a_writer_that_exits_releases_the_output(
    tmp_path: Path, holder_process: tuple[subprocess.Popen[str], Path]
) -> None:
    proc, _ = holder_process
    proc.communicate("\n", timeout=30)
    assert proc.returncode == 0
    assert (tmp_path / SVC / LOCK).read_text() == ""  # the holder's details are cleared
    with ParquetSink(tmp_path).claim(SVC, HOLDER):
        pass


def test_claims_are_not_reentrant_and_never_sweep_a_live_staging(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    with sink.claim(SVC, {"job": "first"}):
        staging = Path(sink.begin_day(SVC, DAY))
        table = child.version_parts("old")["part-00000.parquet"]
        sink.write_staged(str(staging), "part-00000.parquet", table)
        for other in (sink, ParquetSink(tmp_path)):
            conflict = pytest.raises(SinkError, match=f"pid {os.getpid()} on .*job=first")
            with conflict as caught, other.claim(SVC, {"job": "second"}):
                pass
            assert caught.value.code == "conflict"
        assert staging.is_dir() and (staging / "part-00000.parquet").is_file()
    with sink.claim(SVC, {"job": "third"}):
        assert not staging.exists()


def test_a_worker_publishes_while_the_driver_holds_the_claim(
    tmp_path: Path, reference: dict[str, dict[str, bytes]]
) -> None:
    sink = ParquetSink(tmp_path)
    with sink.claim(SVC, HOLDER):
        pickle.loads(pickle.dumps(sink))  # a sink holding a claim still ships to workers
        done = run_child("commit", str(tmp_path), SVC, "new", "-", "exchange", "worker")
        assert done.returncode == 0, done.stderr
        assert which_version(day_dir(tmp_path), reference) == "new"


def test_an_output_of_another_service_or_not_of_daedalus_is_refused(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    with sink.claim(SVC, HOLDER):
        pass
    (tmp_path / "other").mkdir()
    shutil.copy(tmp_path / SVC / OWNER, tmp_path / "other" / OWNER)
    refused = pytest.raises(SinkError, match="belongs to service 'svc', not 'other'")
    with refused as caught, sink.claim("other", HOLDER):
        pass
    assert caught.value.code == "conflict"
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == [OWNER]  # no lock left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with (
        pytest.raises(SinkError, match="not written by daedalus") as caught,
        sink.claim("mine", HOLDER),
    ):
        pass
    assert caught.value.code == "conflict"
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("content", ["{bad", '["svc"]', '{"owner": "svc"}', "\udcff"])
def test_a_malformed_owner_marker_is_a_conflict_naming_it(tmp_path: Path, content: str) -> None:
    (tmp_path / SVC).mkdir()
    (tmp_path / SVC / OWNER).write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(SinkError) as caught, ParquetSink(tmp_path).claim(SVC, HOLDER):
        pass
    assert caught.value.code == "conflict"
    assert f"{tmp_path / SVC / OWNER} is unreadable" in str(caught.value)
    assert caught.value.data == {"path": str(tmp_path / SVC / OWNER)}


# -- manifests with checksums; verify_day ----------------------------------------------------


@pytest.fixture
def written(tmp_path: Path) -> ParquetSink:
    sink = ParquetSink(tmp_path)
    with sink.claim(SVC, HOLDER):
        publish(sink, "new")
        publish(sink, "old", DAY + dt.timedelta(days=1))
    return sink


def verify_both(sink: ParquetSink) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return sink.verify_day(SVC, DAY), sink.verify_day(SVC, DAY, thorough=False)


def test_the_manifest_lists_each_file_with_size_checksum_rows_and_mtime(
    written: ParquetSink,
) -> None:
    ddir = day_dir(written.root)
    manifest = written.read_manifest(SVC, DAY)
    assert manifest is not None and manifest["rows"] == 6 and manifest["version"] == "new"
    assert [f["name"] for f in manifest["files"]] == ["part-00000.parquet", "part-00001.parquet"]
    for entry in manifest["files"]:
        part = ddir / entry["name"]
        assert entry["bytes"] == part.stat().st_size
        assert entry["mtime_ns"] == part.stat().st_mtime_ns
        assert entry["rows"] == pq.read_metadata(part).num_rows
        assert len(entry["sha256"]) == 64
    assert [f["rows"] for f in manifest["files"]] == [2, 4]
    assert verify_both(written) == ([], [])


def test_a_flipped_byte_is_a_checksum_problem(written: ParquetSink) -> None:
    part = day_dir(written.root) / "part-00001.parquet"
    stat = part.stat()
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime
    thorough, cheap = verify_both(written)
    assert [(p["file"], p["problem"]) for p in thorough] == [("part-00001.parquet", "checksum")]
    assert thorough[0]["day"] == DAY.isoformat() and thorough[0]["found"] != thorough[0]["expected"]
    assert cheap == []  # the cheap check only hashes files whose size or mtime changed
    os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert [(p["file"], p["problem"]) for p in written.verify_day(SVC, DAY, thorough=False)] == [
        ("part-00001.parquet", "checksum")
    ]


def test_a_missing_and_an_extra_part(written: ParquetSink) -> None:
    ddir = day_dir(written.root)
    (ddir / "part-00000.parquet").unlink()
    (ddir / "part-00007.parquet").write_bytes(b"stray")
    for problems in verify_both(written):
        assert sorted((p["file"], p["problem"], p["found"]) for p in problems) == [
            ("part-00000.parquet", "missing", None),
            ("part-00007.parquet", "extra", 5),
        ]


def test_a_part_swapped_with_another_days_part(
    written: ParquetSink, reference: dict[str, dict[str, bytes]]
) -> None:
    other = day_dir(written.root, DAY + dt.timedelta(days=1)) / "part-00000.parquet"
    os.replace(other, day_dir(written.root) / "part-00001.parquet")
    for problems in verify_both(written):
        kinds = {(p["file"], p["problem"]) for p in problems}
        assert ("part-00001.parquet", "rows") in kinds
        assert kinds & {("part-00001.parquet", "size"), ("part-00001.parquet", "checksum")}
    rows = next(p for p in written.verify_day(SVC, DAY) if p["problem"] == "rows")
    assert (rows["expected"], rows["found"]) == (4, 3)
    assert written.verify_day(SVC, DAY + dt.timedelta(days=1)) == [
        {
            "day": (DAY + dt.timedelta(days=1)).isoformat(),
            "file": "part-00000.parquet",
            "problem": "missing",
            "expected": len(reference["old"]["part-00000.parquet"]),
            "found": None,
        }
    ]


def test_a_truncated_or_old_manifest_is_a_manifest_problem(written: ParquetSink) -> None:
    path = day_dir(written.root) / MANIFEST
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    for problems in verify_both(written):
        assert [(p["file"], p["problem"]) for p in problems] == [(MANIFEST, "manifest")]
    assert written.read_manifest(SVC, DAY) is None  # the day must be recomputed
    manifest = json.loads(text)
    path.write_text(json.dumps({**manifest, "files": [f["name"] for f in manifest["files"]]}))
    (problem,) = written.verify_day(SVC, DAY)
    assert problem["problem"] == "manifest" and "no checksums" in problem["found"]
    path.write_text(json.dumps({**manifest, "rows": 7}))
    assert written.verify_day(SVC, DAY) == [
        {"day": DAY.isoformat(), "file": None, "problem": "rows", "expected": 7, "found": 6}
    ]
    path.unlink()
    assert [(p["file"], p["problem"]) for p in written.verify_day(SVC, DAY)] == [
        (MANIFEST, "missing")
    ]
    assert [(p["file"], p["problem"]) for p in written.verify_day(SVC, DAY - dt.timedelta(1))] == [
        (None, "missing")
    ]


# -- faults of the filesystem ----------------------------------------------------------------


def fail_on(real: Callable[..., Any], code: int, when: Callable[[str], bool]) -> Callable[..., Any]:
    """`real`, except that it raises OSError(code) when `when(first argument)`."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if args and when(
            os.fsdecode(args[0]) if isinstance(args[0], str | bytes | os.PathLike) else ""
        ):
            raise OSError(code, os.strerror(code), os.fsdecode(args[0]))
        return real(*args, **kwargs)

    return wrapper


def assert_storage(err: SinkError, path: Path, reason: str, day: dt.date | None = None) -> None:
    assert err.code == "storage", err
    assert str(path) in str(err) and reason in str(err), str(err)
    assert err.data["path"] == str(path) and err.data["reason"] == reason
    if day is not None:
        assert str(err).startswith(f"day {day.isoformat()}: ")
        assert err.data["day"] == day.isoformat()


def test_out_pointing_at_a_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("a file")
    sink = ParquetSink(out)
    with pytest.raises(SinkError) as caught, sink.claim(SVC, HOLDER):
        pass
    assert_storage(caught.value, out / SVC, "Not a directory")
    with pytest.raises(SinkError) as caught:
        sink.begin_day(SVC, DAY)
    assert caught.value.code == "storage" and str(caught.value).startswith(f"day {DAY}: ")
    assert sink.list_days(SVC) == [] and sink.read_manifest(SVC, DAY) is None


def test_disk_full_while_writing_a_part(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    with sink.claim(SVC, HOLDER):
        staging = sink.begin_day(SVC, DAY)
        (Path(staging) / "part-00000.parquet").symlink_to("/dev/full")  # writes: ENOSPC
        with pytest.raises(SinkError) as caught:
            table = child.version_parts("old")["part-00000.parquet"]
            sink.write_staged(staging, "part-00000.parquet", table)
    assert_storage(
        caught.value, Path(staging) / "part-00000.parquet", "No space left on device", DAY
    )
    assert str(caught.value) == (
        f"day {DAY}: cannot write {staging}/part-00000.parquet: No space left on device"
    )


def test_a_read_only_or_forbidden_output_when_claiming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    monkeypatch.setattr(
        os, "mkdir", fail_on(os.mkdir, errno.EROFS, lambda p: p.startswith(str(out)))
    )
    with pytest.raises(SinkError) as caught, ParquetSink(out).claim(SVC, HOLDER):
        pass
    assert_storage(caught.value, out / SVC, "Read-only file system")
    monkeypatch.undo()
    (out / SVC).mkdir(parents=True)
    monkeypatch.setattr(os, "open", fail_on(os.open, errno.EACCES, lambda p: p.endswith(LOCK)))
    with pytest.raises(SinkError) as caught, ParquetSink(out).claim(SVC, HOLDER):
        pass
    assert_storage(caught.value, out / SVC / LOCK, "Permission denied")


def test_faults_while_publishing_leave_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: dict[str, dict[str, bytes]]
) -> None:
    sink = ParquetSink(tmp_path)
    with sink.claim(SVC, HOLDER):
        publish(sink, "old")
        monkeypatch.setattr(os, "mkdir", fail_on(os.mkdir, errno.EROFS, lambda p: ".staging-" in p))
        with pytest.raises(SinkError, match=f"^day {DAY}: cannot create directory ") as caught:
            publish(sink, "new")
        assert caught.value.code == "storage" and "Read-only file system" in str(caught.value)
        monkeypatch.undo()

        def no_fsync(fd: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", no_fsync)
        with pytest.raises(SinkError) as caught:
            publish(sink, "new")
        assert caught.value.code == "storage" and "No space left on device" in str(caught.value)
        assert str(caught.value).startswith(f"day {DAY}: cannot fsync ")
        monkeypatch.undo()

        def exchange_fails(src: object, dst: object, flags: int) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        monkeypatch.setattr(sink_module, "_renameat2", exchange_fails)
        with pytest.raises(SinkError) as caught:
            publish(sink, "new")
        assert_storage(caught.value, day_dir(tmp_path), "Input/output error", DAY)
        assert str(caught.value).startswith(f"day {DAY}: cannot publish {day_dir(tmp_path)}")
        monkeypatch.undo()
        assert which_version(day_dir(tmp_path), reference) == "old"  # EIO is not "unsupported"


def test_faults_while_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = ParquetSink(tmp_path)
    with sink.claim(SVC, HOLDER):
        publish(sink, "old")
    manifest = day_dir(tmp_path) / MANIFEST
    part = day_dir(tmp_path) / "part-00000.parquet"
    real_open = open

    def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if os.fspath(file) in (str(manifest), str(part)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded_open)
    monkeypatch.setattr("io.open", guarded_open)
    with pytest.raises(SinkError) as caught:
        sink.read_manifest(SVC, DAY)
    assert_storage(caught.value, manifest, "Permission denied", DAY)
    with pytest.raises(SinkError) as caught:
        sink.verify_day(SVC, DAY)
    assert caught.value.code == "storage" and "Permission denied" in str(caught.value)
    monkeypatch.undo()
    monkeypatch.setattr(Path, "iterdir", fail_on(Path.iterdir, errno.EIO, lambda p: True))
    with pytest.raises(SinkError) as caught:
        sink.list_days(SVC)
    assert_storage(caught.value, tmp_path / SVC, "Input/output error")


def test_a_staged_file_breaking_the_contract_publishes_nothing(
    tmp_path: Path, reference: dict[str, dict[str, bytes]]
) -> None:
    sink = ParquetSink(tmp_path)
    with sink.claim(SVC, HOLDER):
        publish(sink, "old")
        staging = sink.begin_day(SVC, DAY)
        sink.write_staged(staging, "part-00000.parquet", pa.table({"user_id": [1]}))
        with pytest.raises(SinkError, match="does not match the contract") as caught:
            sink.commit_day(SVC, DAY, staging, {"rows": 1}, SCHEMA)
        assert caught.value.code == "contract"
        sink.abort_day(staging)
        staging = sink.begin_day(SVC, DAY)
        with pytest.raises(SinkError, match="nothing was written") as caught:
            sink.commit_day(SVC, DAY, staging, {"rows": 0}, SCHEMA)
        assert caught.value.code == "contract"
        sink.abort_day(staging)
    assert which_version(day_dir(tmp_path), reference) == "old"


def test_a_sink_error_keeps_its_code_and_data_across_processes() -> None:
    err = SinkError("boom", code="storage", data={"path": "/x", "day": "2026-10-02"})
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.code, copy.data) == ("boom", "storage", err.data)
    assert SinkError("x").code == "conflict" and SinkError("x").data == {}
