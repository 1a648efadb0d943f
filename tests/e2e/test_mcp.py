"""End to end: the MCP server in its own process, driven by the SDK's client over stdio.

One server session serves the whole module (starting it, and Ray inside it, is the slow part):
the client runs in a background event loop thread and the tests call it synchronously.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import mcp.types as types
import pytest
from daedalus.adapters.demo.generator import write_demo_workspace
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from daedalus.app.application import USE_CASES

REPO = Path(__file__).resolve().parents[2]
SERVICE, DAY = "feed_ranking", "2026-10-02"
TRAIN_TIMEOUT = 240.0


class McpSession:
    """A server process and a client session, held open by a task on a background loop."""

    def __init__(self, params: StdioServerParameters, errlog: Path) -> None:
        self.errlog = errlog
        self._log = errlog.open("w")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp-client")
        self._thread.start()
        self._ready: concurrent.futures.Future[ClientSession] = concurrent.futures.Future()
        self._stop: asyncio.Event | None = None
        self._held = asyncio.run_coroutine_threadsafe(self._hold(params), self._loop)
        self.session = self._ready.result(timeout=120)

    async def _hold(self, params: StdioServerParameters) -> None:
        # The transport and session are entered and left in this one task, as anyio requires.
        self._stop = asyncio.Event()
        try:
            async with (
                stdio_client(params, errlog=self._log) as (read, write),
                ClientSession(read, write) as session,
            ):
                self.initialized = await session.initialize()
                self._ready.set_result(session)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    def run(
        self, make: Callable[[ClientSession], Coroutine[Any, Any, Any]], timeout: float = 120
    ) -> Any:
        return asyncio.run_coroutine_threadsafe(make(self.session), self._loop).result(timeout)

    def call(self, tool: str, arguments: dict[str, Any] | None = None) -> types.CallToolResult:
        return self.run(lambda s: s.call_tool(tool, arguments or {}))

    def ok(self, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """A successful call's structured answer (checked equal to its text)."""
        result = self.call(tool, arguments)
        text = result.content[0].text
        assert not result.is_error, f"{tool} failed: {text}\n{self.server_log()}"
        assert json.loads(text) == result.structured_content
        return result.structured_content

    def server_log(self) -> str:
        self._log.flush()
        return "server stderr (tail):\n" + self.errlog.read_text()[-3000:]

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        try:
            self._held.result(timeout=60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
            self._log.close()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mcp")
    write_demo_workspace(root, scale="tiny")
    shutil.copytree(REPO / "feature_views", root / "feature_views")
    return root


@pytest.fixture(scope="module")
def mcp(workspace: Path) -> Iterator[McpSession]:
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "daedalus.adapters.mcp",
            "--workspace",
            str(workspace),
            "--catalog",
            str(workspace / "feature_views"),
            "--out",
            str(workspace / "out"),
        ],
        env=dict(os.environ),  # the SDK passes only a few variables by default
    )
    session = McpSession(params, workspace / "mcp-server.log")
    yield session
    session.close()


def test_the_server_introduces_itself(mcp: McpSession) -> None:
    init = mcp.initialized
    assert init.server_info.name == "daedalus"
    assert "train_start" in (init.instructions or "")
    assert init.capabilities.tools is not None and init.capabilities.resources is not None


def test_every_use_case_is_a_tool_with_its_schema_and_a_valid_example(mcp: McpSession) -> None:
    tools = {t.name: t for t in mcp.run(lambda s: s.list_tools()).tools}
    assert list(tools) == [case.name for case in USE_CASES]
    for case in USE_CASES:
        tool = tools[case.name]
        assert tool.input_schema == case.input_schema()
        assert tool.description and tool.description.startswith(case.summary)
        example = json.loads(tool.description.rsplit("Example arguments: ", 1)[1])
        jsonschema.validate(example, tool.input_schema)  # the example is one a call accepts
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is (not case.writes)
    assert sorted(tools["train_start"].input_schema["required"]) == ["end", "service", "start"]


READS: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ("catalog_list", {}, lambda d: SERVICE in [s["name"] for s in d["services"]]),
    ("catalog_describe", {"name": SERVICE}, lambda d: d["kind"] == "feature_service"),
    ("catalog_describe", {"name": "user_activity"}, lambda d: d["kind"] == "feature_view"),
    ("catalog_validate", {}, lambda d: d["ok"] and d["errors"] == []),
    ("catalog_validate", {"directory": "feature_views"}, lambda d: d["ok"]),
    (
        "service_schema",
        {"service": SERVICE},
        lambda d: "artwork_embedding" in [c["name"] for c in d["columns"]],
    ),
    (
        "pipeline_compile",
        {"service": SERVICE, "format": "json"},
        lambda d: d["pipeline"]["operators"][0]["kind"] == "read_spine",
    ),
    ("pipeline_compile", {"service": SERVICE, "format": "mermaid"}, lambda d: SERVICE in str(d)),
    ("job_list", {"limit": 5}, lambda d: isinstance(d["jobs"], list)),
    ("days_list", {"service": SERVICE}, lambda d: d["service"] == SERVICE),
]


@pytest.mark.parametrize(("tool", "arguments", "check"), READS, ids=[r[0] for r in READS])
def test_read_tools(
    mcp: McpSession, tool: str, arguments: dict[str, Any], check: Callable[[dict], bool]
) -> None:
    answer = mcp.ok(tool, arguments)
    assert check(answer), json.dumps(answer)[:2000]


def test_a_training_job_then_its_day_is_read_and_audited(mcp: McpSession) -> None:
    job = mcp.ok("train_start", {"service": SERVICE, "start": DAY, "end": DAY, "engine": "polars"})
    assert job["state"] in ("queued", "running", "succeeded")
    deadline = time.monotonic() + TRAIN_TIMEOUT
    while job["state"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"job still {job['state']}\n{mcp.server_log()}"
        time.sleep(1.0)
        job = mcp.ok("job_status", {"job_id": job["id"]})
    assert job["state"] == "succeeded", f"{job.get('error')}\n{mcp.server_log()}"
    assert job["result"]["days_written"] == 1
    assert job["id"] in [j["id"] for j in mcp.ok("job_list", {})["jobs"]]

    days = mcp.ok("days_list", {"service": SERVICE})["days"]
    assert [(d["day"], d["current"]) for d in days] == [(DAY, True)]
    manifest = mcp.ok("day_manifest", {"service": SERVICE, "day": DAY})
    assert manifest["rows"] > 0 and manifest["engine"] == "polars"
    preview = mcp.ok("day_preview", {"service": SERVICE, "day": DAY, "limit": 3})
    assert "user_id" in json.dumps(preview)
    audit = mcp.ok("day_audit", {"service": SERVICE, "day": DAY, "sample": 20})
    assert audit["ok"], audit["differences"][:5]
    assert audit["rows_checked"] == min(20, audit["rows_in_day"])


def test_resources_are_the_catalog_files_and_the_service_schemas(
    mcp: McpSession, workspace: Path
) -> None:
    catalog = workspace / "feature_views"
    listed = {str(r.uri): r for r in mcp.run(lambda s: s.list_resources()).resources}
    files = sorted(p.name for p in catalog.glob("*.yaml"))
    assert sorted(u for u in listed if u.startswith("daedalus://catalog/")) == [
        f"daedalus://catalog/{name}" for name in files
    ]
    assert listed["daedalus://catalog/ranking.yaml"].mime_type == "application/yaml"

    read = mcp.run(lambda s: s.read_resource("daedalus://catalog/ranking.yaml"))
    assert read.contents[0].text == (catalog / "ranking.yaml").read_text()

    uri = f"daedalus://services/{SERVICE}/schema"
    assert listed[uri].mime_type == "application/json"
    schema = json.loads(mcp.run(lambda s: s.read_resource(uri)).contents[0].text)
    assert schema["service"] == SERVICE and "user_id" in [c["name"] for c in schema["columns"]]

    templates = mcp.run(lambda s: s.list_resource_templates()).resource_templates
    assert {t.uri_template for t in templates} == {
        "daedalus://catalog/{file}",
        "daedalus://services/{service}/schema",
    }


def test_a_new_catalog_file_is_listed_without_a_restart(mcp: McpSession, workspace: Path) -> None:
    extra = workspace / "feature_views" / "zz_notes.yaml"
    extra.write_text("# notes\n")
    try:
        uris = [str(r.uri) for r in mcp.run(lambda s: s.list_resources()).resources]
        assert "daedalus://catalog/zz_notes.yaml" in uris
        read = mcp.run(lambda s: s.read_resource("daedalus://catalog/zz_notes.yaml"))
        assert read.contents[0].text == "# notes\n"
    finally:
        extra.unlink()
    uris = [str(r.uri) for r in mcp.run(lambda s: s.list_resources()).resources]
    assert "daedalus://catalog/zz_notes.yaml" not in uris


def test_an_unknown_or_escaping_resource_is_a_protocol_error(mcp: McpSession) -> None:
    for uri in (
        "daedalus://catalog/../pyproject.toml",
        "daedalus://catalog/missing.yaml",
        "daedalus://services/feed_rankin/schema",
        "file:///etc/passwd",
    ):
        with pytest.raises(MCPError, match="unknown resource"):
            mcp.run(lambda s, uri=uri: s.read_resource(uri))
    assert mcp.ok("catalog_list", {})["services"]


BAD_CALLS: list[tuple[str, dict[str, Any], str, str | None, list[str]]] = [
    # tool, arguments, error kind, field at fault, phrases of the message
    ("service_schema", {"service": "feed_rankin"}, "not_found", "service", ["did you mean"]),
    ("catalog_describe", {"name": "user_activty"}, "not_found", "name", ["did you mean"]),
    ("train_start", {"service": SERVICE, "end": DAY}, "invalid_argument", "start", ["required"]),
    (
        "train_start",
        {"service": SERVICE, "start": 20261002, "end": DAY},
        "invalid_argument",
        "start",
        ["not of type 'string'"],
    ),
    (
        "train_start",
        {"service": SERVICE, "start": "2026-13-01", "end": DAY},
        "invalid_argument",
        "start",
        ["not a 'date'"],
    ),
    (
        "day_preview",
        {"service": SERVICE, "day": DAY, "limit": "5"},
        "invalid_argument",
        "limit",
        ["not of type 'integer'"],
    ),
    ("days_list", {"service": SERVICE, "colour": 1}, "invalid_argument", "colour", ["not an"]),
    (
        "catalog_validate",
        {"directory": "/etc"},
        "forbidden",
        "directory",
        ["outside the workspace"],
    ),
    ("job_status", {"job_id": "nope"}, "not_found", "job_id", ["unknown job"]),
    (
        "day_manifest",
        {"service": SERVICE, "day": "2026-01-01"},
        "not_found",
        "day",
        ["not written"],
    ),
    ("catalog_lst", {}, "not_found", None, ["unknown tool", "did you mean catalog_list"]),
]


@pytest.mark.parametrize(
    ("tool", "arguments", "kind", "field", "phrases"),
    BAD_CALLS,
    ids=[f"{b[0]}-{b[3] or b[2]}" for b in BAD_CALLS],
)
def test_a_bad_call_is_a_tool_error_and_the_session_goes_on(
    mcp: McpSession,
    tool: str,
    arguments: dict[str, Any],
    kind: str,
    field: str | None,
    phrases: list[str],
) -> None:
    result = mcp.call(tool, arguments)
    assert result.is_error
    text = result.content[0].text
    assert text.startswith(f"error {kind}")
    for phrase in phrases:
        assert phrase in text
    error = result.structured_content["error"]
    assert error["kind"] == kind and error.get("field") == field
    if field is not None:
        assert repr(field) in text  # the field at fault is named in the text too
    assert mcp.ok("catalog_list", {})["services"]
