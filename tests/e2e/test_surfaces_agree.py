"""The same use case through the four surfaces — CLI, JSON-RPC, MCP, Dagster — returns the same data."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import httpx
import pytest
import uvicorn
from daedalus.adapters.cli.app import app as cli
from daedalus.adapters.dagster.assets import build_definitions
from daedalus.adapters.demo.generator import write_demo_workspace
from daedalus.adapters.jsonrpc.server import create_app
from mcp import StdioServerParameters

from daedalus.app.settings import Settings
from daedalus.container import build_container
from tests.e2e.test_jsonrpc import _free_port
from tests.e2e.test_mcp import McpSession

REPO = Path(__file__).resolve().parents[2]
SERVICE, DAY = "feed_ranking", "2026-10-03"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("surfaces")
    write_demo_workspace(root, scale="tiny")
    shutil.copytree(REPO / "feature_views", root / "feature_views")
    return root


@pytest.fixture(scope="module")
def settings(ws: Path) -> Settings:
    return Settings.from_env(
        workspace=ws, catalog_dir=ws / "feature_views", out_dir=ws / "out", engine="polars"
    )


@pytest.fixture(scope="module")
def dagster_manifest(settings: Settings) -> dict:
    """Dagster trains the day: materialising the partition runs the executor."""
    defs = build_definitions(settings)
    result = dg.materialize(list(defs.assets or ()), partition_key=DAY, resources=defs.resources)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    return event.materialization.metadata["manifest"].value


@pytest.fixture(scope="module")
def rpc_url(settings: Settings) -> Iterator[str]:
    application = build_container(settings).application()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(application, token="t"), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(15)


@pytest.fixture(scope="module")
def mcp(ws: Path) -> Iterator[McpSession]:
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "daedalus.adapters.mcp",
            "--workspace",
            str(ws),
            "--catalog",
            str(ws / "feature_views"),
            "--out",
            str(ws / "out"),
        ],
        env=dict(os.environ),
    )
    session = McpSession(params, ws / "mcp.log")
    yield session
    session.close()


def via_cli(capsys: pytest.CaptureFixture[str], ws: Path, *tokens: str) -> dict:
    capsys.readouterr()
    assert cli([*tokens, "--workspace", str(ws), "--json"], result_action="return_value") == 0
    return json.loads(capsys.readouterr().out)


def via_rpc(url: str, method: str, params: dict) -> dict:
    answer = httpx.post(
        f"{url}/rpc",
        json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
        timeout=60,
    ).json()
    assert "result" in answer, answer
    return answer["result"]


@pytest.mark.parametrize(
    ("cli_tokens", "method", "tool", "params"),
    [
        (
            ("pipeline", "manifest", SERVICE, "--day", DAY),
            "days.manifest",
            "day_manifest",
            {"service": SERVICE, "day": DAY},
        ),
        (("service", "schema", SERVICE), "service.schema", "service_schema", {"service": SERVICE}),
        (("catalog", "list"), "catalog.list", "catalog_list", {}),
        (
            ("pipeline", "compile", SERVICE, "--format", "json", "--engine", "polars"),
            "pipeline.compile",
            "pipeline_compile",
            {"service": SERVICE, "format": "json", "engine": "polars"},
        ),
    ],
)
def test_cli_rpc_and_mcp_return_the_same_data(
    capsys: pytest.CaptureFixture[str],
    ws: Path,
    dagster_manifest: dict,
    rpc_url: str,
    mcp: McpSession,
    cli_tokens: tuple[str, ...],
    method: str,
    tool: str,
    params: dict,
) -> None:
    from_cli = via_cli(capsys, ws, *cli_tokens)
    from_rpc = via_rpc(rpc_url, method, params)
    from_mcp = mcp.ok(tool, params)
    assert from_cli == from_rpc == from_mcp


def test_dagster_materialisation_carries_the_same_manifest(
    capsys: pytest.CaptureFixture[str],
    ws: Path,
    dagster_manifest: dict,
    rpc_url: str,
    mcp: McpSession,
) -> None:
    from_rpc = via_rpc(rpc_url, "days.manifest", {"service": SERVICE, "day": DAY})
    assert dagster_manifest == from_rpc == mcp.ok("day_manifest", {"service": SERVICE, "day": DAY})
    assert dagster_manifest["rows"] > 0 and dagster_manifest["day"] == DAY


def test_previews_agree_with_iso_timestamps(
    capsys: pytest.CaptureFixture[str],
    ws: Path,
    dagster_manifest: dict,
    rpc_url: str,
    mcp: McpSession,
) -> None:
    params = {"service": SERVICE, "day": DAY, "limit": 3}
    from_cli = via_cli(capsys, ws, "pipeline", "preview", SERVICE, "--day", DAY, "--limit", "3")
    from_rpc = via_rpc(rpc_url, "days.preview", params)
    from_mcp = mcp.ok("day_preview", params)
    assert from_cli == from_rpc == from_mcp
    ts = from_rpc["rows"][0]["ts"]
    assert isinstance(ts, str) and ts.startswith(DAY + "T")


@pytest.mark.parametrize(
    ("cli_tokens", "method", "tool", "params", "kind"),
    [
        (
            ("service", "schema", "nope"),
            "service.schema",
            "service_schema",
            {"service": "nope"},
            "not_found",
        ),
        (
            ("pipeline", "preview", SERVICE, "--day", "2031-01-01"),
            "days.preview",
            "day_preview",
            {"service": SERVICE, "day": "2031-01-01"},
            "not_found",
        ),
    ],
)
def test_errors_agree(
    capsys: pytest.CaptureFixture[str],
    ws: Path,
    rpc_url: str,
    mcp: McpSession,
    cli_tokens: tuple[str, ...],
    method: str,
    tool: str,
    params: dict,
    kind: str,
) -> None:
    capsys.readouterr()
    code = cli([*cli_tokens, "--workspace", str(ws), "--json"], result_action="return_value")
    assert code == 4  # not found
    from_cli = json.loads(capsys.readouterr().out)["error"]
    answer = httpx.post(
        f"{rpc_url}/rpc",
        json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
        timeout=60,
    ).json()
    from_rpc = answer["error"]
    from_mcp = mcp.fails(tool, params)
    assert from_cli["kind"] == from_rpc["data"]["kind"] == from_mcp["kind"] == kind
    assert from_cli["message"] == from_rpc["message"] == from_mcp["message"]
    assert from_rpc["code"] == -32004
