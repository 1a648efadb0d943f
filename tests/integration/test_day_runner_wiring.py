"""Which day runner the container builds, and how its settings are read and checked (no cluster
is contacted: building a runner connects to nothing; tests/e2e/test_ray_days.py runs one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from daedalus.adapters.cli.app import EXIT_CODES, app
from daedalus.adapters.lance_ray.days import RayDayRunner

from daedalus.app.errors import AppError
from daedalus.app.settings import Settings
from daedalus.container import build_container
from daedalus.pipeline.runner import LocalDayRunner

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RAY_ADDRESS", "DAEDA_RAY_DAYS_IN_FLIGHT"):
        monkeypatch.delenv(var, raising=False)


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings.from_env(workspace=tmp_path, catalog_dir=REPO / "feature_views", **kw)


def test_without_a_ray_address_days_run_locally(tmp_path: Path) -> None:
    runner = build_container(settings(tmp_path)).day_runner()
    assert isinstance(runner, LocalDayRunner) and runner.name == "local"


def test_a_ray_address_from_the_flag_or_the_environment_picks_the_ray_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = build_container(
        settings(tmp_path, ray_address="10.0.0.1:6379", ray_days_in_flight=3)
    ).day_runner()
    assert isinstance(runner, RayDayRunner) and runner.name == "ray"
    assert (runner.address, runner.max_in_flight) == ("10.0.0.1:6379", 3)
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    monkeypatch.setenv("DAEDA_RAY_DAYS_IN_FLIGHT", "5")
    runner = build_container(settings(tmp_path)).day_runner()
    assert (runner.address, runner.max_in_flight) == ("auto", 5)


def test_days_in_flight_must_be_a_positive_integer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(AppError, match="at least 1") as err:
        settings(tmp_path, ray_days_in_flight=0)
    assert err.value.kind == "invalid_argument"
    monkeypatch.setenv("DAEDA_RAY_DAYS_IN_FLIGHT", "many")
    with pytest.raises(AppError, match="DAEDA_RAY_DAYS_IN_FLIGHT must be an integer"):
        settings(tmp_path)
    with pytest.raises(ValueError, match="at least 1"):
        RayDayRunner("auto", max_in_flight=0)


def test_the_cli_refuses_zero_days_in_flight_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = app(
        [
            "pipeline",
            "train",
            "feed_ranking",
            "--workspace",
            str(tmp_path),
            "--catalog",
            str(REPO / "feature_views"),
            "--start",
            "2026-10-02",
            "--end",
            "2026-10-02",
            "--ray-address",
            "127.0.0.1:1",
            "--ray-days-in-flight",
            "0",
        ],
        result_action="return_value",
    )
    assert code == EXIT_CODES["invalid_argument"]
    assert "days in flight on Ray must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
