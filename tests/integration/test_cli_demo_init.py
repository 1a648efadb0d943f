"""`daeda demo init` again: a complete workspace is left alone, another one needs --overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from daedalus.adapters.cli.app import EXIT_CODES, app


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DAEDA_CATALOG", "DAEDA_WORKSPACE", "DAEDA_OUT", "DAEDA_ENGINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def daeda(*tokens: str) -> int:
    return app(list(tokens), result_action="return_value")


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under `root`, the Lance store's included: bytes, mtime and inode."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(root))] = (path.read_bytes(), st.st_mtime_ns, st.st_ino)
    return out


def marker(root: Path) -> dict:
    return json.loads((root / "workspace.json").read_text())


def test_a_second_init_of_the_same_scale_writes_nothing_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "demo"
    assert daeda("demo", "init", str(root), "--scale", "tiny") == 0
    assert "nothing written" not in capsys.readouterr().out
    before = snapshot(root)

    assert daeda("demo", "init", str(root), "--scale", "tiny") == 0
    out = capsys.readouterr()
    assert "already complete; nothing written" in out.out, out
    assert snapshot(root) == before

    assert daeda("demo", "init", str(root), "--scale", "tiny", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["written"] is False and data["status"] == "unchanged"
    assert data["scale"] == "tiny" and data["rows"]["events"] > 0
    assert snapshot(root) == before


def test_a_fresh_init_says_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert daeda("demo", "init", str(tmp_path / "d"), "--scale", "tiny", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["written"] is True and data["status"] == "created"


def test_another_scale_needs_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "demo"
    assert daeda("demo", "init", str(root), "--scale", "small") == 0
    capsys.readouterr()
    before = snapshot(root)

    assert daeda("demo", "init", str(root), "--scale", "tiny") == EXIT_CODES["conflict"] == 7
    err = capsys.readouterr().err
    assert "error:" in err and "--overwrite" in err and "small" in err
    assert snapshot(root) == before

    assert daeda("demo", "init", str(root), "--scale", "tiny", "--json") == 7
    assert json.loads(capsys.readouterr().out)["error"]["kind"] == "conflict"
    assert snapshot(root) == before

    assert daeda("demo", "init", str(root), "--scale", "tiny", "--overwrite", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["written"] is True and data["status"] == "rewritten" and data["scale"] == "tiny"
    assert (marker(root)["scale"], marker(root)["complete"]) == ("tiny", True)
    days = sorted(p.name for p in (root / "data" / "events").iterdir())
    assert len(days) == 5 and days[-1] == "part-2026-10-05.parquet"  # small's later days gone
    assert len(list((root / "data" / "impressions").iterdir())) == 5


def test_another_seed_needs_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    assert daeda("demo", "init", str(root), "--scale", "tiny") == 0
    before = snapshot(root)
    assert daeda("demo", "init", str(root), "--scale", "tiny", "--seed", "8") == 7
    assert snapshot(root) == before
    assert daeda("demo", "init", str(root), "--scale", "tiny", "--seed", "8", "--overwrite") == 0
    assert marker(root)["seed"] == 8


def test_an_interrupted_init_is_completed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "demo"
    assert daeda("demo", "init", str(root), "--scale", "tiny") == 0
    (root / "workspace.json").write_text(json.dumps(marker(root) | {"complete": False}))
    (root / "data" / "events" / "part-2026-10-05.parquet").unlink()
    capsys.readouterr()
    assert daeda("demo", "init", str(root), "--scale", "tiny", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["written"] is True and data["status"] == "completed"
    assert marker(root)["complete"] is True
    assert (root / "data" / "events" / "part-2026-10-05.parquet").is_file()


def test_two_fresh_inits_write_byte_identical_parquet(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert daeda("demo", "init", str(a), "--scale", "tiny") == 0
    assert daeda("demo", "init", str(b), "--scale", "tiny") == 0
    files = sorted(p.relative_to(a) for p in a.rglob("*.parquet") if ".lance" not in str(p))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.parquet") if ".lance" not in str(p))
    assert len(files) == 2 * 5 + 2
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "workspace.json").read_bytes() == (b / "workspace.json").read_bytes()
