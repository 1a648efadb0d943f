"""End to end: the MCP server in its own process, driven by the SDK's client over stdio and
over streamable HTTP (`daeda mcp --http`, with httpx for what the SDK client would not send).

One stdio server session serves most of the module: the client runs in a background event
loop thread and the tests call it synchronously. The long-lived test, the symlink test's
targets and the HTTP tests start servers of their own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TextIO

import httpx
import httpx2
import jsonschema
import mcp.types as types
import pyarrow.parquet as pq
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from daedalus.app.application import USE_CASES
from daedalus.app.jsonable import jsonable
from tests.e2e.conftest import LOST_SERVICE, copy_workspace

REPO = Path(__file__).resolve().parents[2]
DAEDA = Path(sys.executable).with_name("daeda")
SERVICE, DAY = "feed_ranking", "2026-10-02"
TRAIN_TIMEOUT = 240.0
FINISHED = ("succeeded", "failed", "cancelled")
#: The most characters of one value a tool error may quote (the server clips at 200 + "…").
CLIP = 201

Connect = Callable[[TextIO], Any]  # errlog -> an async context manager of (read, write)


def server_env(token: str | None = None) -> dict[str, str]:
    """This environment without DAEDA_* settings (a developer's shell may hold some), with
    DAEDA_MCP_TOKEN set to `token` if given. (The SDK's stdio client passes only a few
    variables by default.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAEDA_")}
    if token is not None:
        env["DAEDA_MCP_TOKEN"] = token
    return env


def stdio(*args: str, env: dict[str, str] | None = None) -> Connect:
    """A stdio transport to `python -m daedalus.adapters.mcp ARGS` (`env`: added settings)."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "daedalus.adapters.mcp", *args],
        env={**server_env(), **(env or {})},
    )
    return lambda errlog: stdio_client(params, errlog=errlog)


def http(url: str, token: str | None = None) -> Connect:
    """A streamable HTTP transport to `url`, sending `token` as a bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    @contextlib.asynccontextmanager
    async def connect(errlog: TextIO) -> Any:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60, read=300)) as client,
            streamable_http_client(url, http_client=client) as streams,
        ):
            yield streams

    return connect


def workspace_args(root: Path, catalog: Path | None = None) -> list[str]:
    catalog = root / "feature_views" if catalog is None else catalog
    return ["--workspace", str(root), "--catalog", str(catalog), "--out", str(root / "out")]


class McpSession:
    """A client session (and, over stdio, its server process), held open by a task on a
    background loop."""

    def __init__(self, connect: Connect | StdioServerParameters, errlog: Path) -> None:
        if isinstance(connect, StdioServerParameters):  # as test_surfaces_agree passes it
            params = connect
            connect = lambda log: stdio_client(params, errlog=log)  # noqa: E731
        self.errlog = errlog
        self._log = errlog.open("a")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="mcp-client", daemon=True
        )
        self._thread.start()
        self._ready: concurrent.futures.Future[ClientSession] = concurrent.futures.Future()
        self._stop: asyncio.Event | None = None
        self._held = asyncio.run_coroutine_threadsafe(self._hold(connect), self._loop)
        try:
            self.session = self._ready.result(timeout=120)
        except BaseException:
            # No session: stop the loop, so that a failed start cannot keep the tests running.
            self._held.cancel()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._log.close()
            raise

    async def _hold(self, connect: Connect) -> None:
        # The transport and session are entered and left in this one task, as anyio requires.
        self._stop = asyncio.Event()
        try:
            async with (
                connect(self._log) as (read, write),
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

    def fails(self, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """A failed call's error (kind, message, field, data), with its text as `text`."""
        result = self.call(tool, arguments)
        assert result.is_error, f"{tool} did not fail: {result.content[0].text[:2000]}"
        return {**result.structured_content["error"], "text": result.content[0].text}

    def wait(self, job: dict[str, Any], timeout: float = TRAIN_TIMEOUT) -> dict[str, Any]:
        """Poll job_status until the job is finished."""
        deadline = time.monotonic() + timeout
        while job["state"] not in FINISHED:
            assert time.monotonic() < deadline, f"job still {job['state']}\n{self.server_log()}"
            time.sleep(0.5)
            job = self.ok("job_status", {"job_id": job["id"]})
        return job

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
def workspace(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_workspace(tiny_demo, tmp_path_factory.mktemp("mcp") / "demo")


@pytest.fixture(scope="module")
def mcp(workspace: Path) -> Iterator[McpSession]:
    session = McpSession(stdio(*workspace_args(workspace)), workspace / "mcp-server.log")
    yield session
    session.close()


@pytest.fixture(scope="module")
def trained(mcp: McpSession) -> dict[str, Any]:
    """DAY of SERVICE trained through train_start and job_status: the finished job."""
    job = mcp.ok("train_start", {"service": SERVICE, "start": DAY, "end": DAY, "engine": "polars"})
    assert job["state"] in ("queued", "running", "succeeded")
    return mcp.wait(job)


def test_the_server_introduces_itself(mcp: McpSession) -> None:
    init = mcp.initialized
    assert init.server_info.name == "daedalus"
    assert "train_start" in (init.instructions or "")
    assert init.capabilities.tools is not None and init.capabilities.resources is not None


def check_tools_and_examples(session: McpSession, workspace: Path) -> dict[str, types.Tool]:
    """Every use case is a tool with its schema, and every example's arguments are valid: they
    pass the schema, and a directory they name exists relative to the workspace."""
    tools = {t.name: t for t in session.run(lambda s: s.list_tools()).tools}
    assert list(tools) == [case.name for case in USE_CASES]
    for case in USE_CASES:
        tool = tools[case.name]
        assert tool.input_schema == case.input_schema()
        assert tool.description and tool.description.startswith(case.summary)
        example = json.loads(tool.description.rsplit("Example arguments: ", 1)[1])
        jsonschema.validate(example, tool.input_schema)  # the example is one a call accepts
        if "directory" in example:
            assert (workspace / example["directory"]).is_dir(), (case.name, example)
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is (not case.writes)
    assert sorted(tools["train_start"].input_schema["required"]) == ["end", "service", "start"]
    example = json.loads(tools["catalog_validate"].description.rsplit("Example arguments: ", 1)[1])
    assert session.ok("catalog_validate", example)["ok"]  # the example works as given
    return tools


def test_every_use_case_is_a_tool_with_its_schema_and_a_valid_example(
    mcp: McpSession, workspace: Path
) -> None:
    check_tools_and_examples(mcp, workspace)


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


def test_a_training_job_then_its_day_is_read_and_audited(
    mcp: McpSession, trained: dict[str, Any]
) -> None:
    job = trained
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


ISO_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")


def test_day_preview_timestamps_are_iso_8601_as_json_rpc_gives_them(
    mcp: McpSession, workspace: Path, trained: dict[str, Any]
) -> None:
    preview = mcp.ok("day_preview", {"service": SERVICE, "day": DAY, "limit": 5})
    rows = preview["rows"]
    assert len(rows) == 5 and rows[0]["ts"]
    for row in rows:
        assert ISO_TIMESTAMP.match(row["ts"]), row["ts"]  # "2026-10-02T08:15:00+00:00"
    # Exactly the values of the written file, encoded as every surface encodes them (JSON-RPC's
    # days.preview answers `jsonable` of the same rows).
    (part,) = sorted((workspace / "out" / SERVICE / f"dt={DAY}").glob("*.parquet"))
    written = pq.read_table(part).slice(0, 5).to_pylist()
    assert rows == jsonable(written)


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


# -- nothing a client sends, or a file outside the workspace holds, is echoed at length -----------

LONG = 100_000
LONG_CALLS: list[tuple[str, dict[str, Any], str]] = [
    # tool, arguments, error kind
    ("service_schema", {"service": "x" * LONG}, "invalid_argument"),
    ("catalog_describe", {"name": "it's " * (LONG // 5)}, "invalid_argument"),
    ("catalog_validate", {"directory": "y" * LONG}, "internal"),  # the OS refuses the name
    ("catalog_validate", {"directory": "/" + "d/" * (LONG // 2)}, "forbidden"),
    ("job_status", {"job_id": "j" * LONG}, "invalid_argument"),
    ("day_preview", {"service": SERVICE, "day": "9" * LONG}, "invalid_argument"),
    ("days_list", {"service": SERVICE, "k" * LONG: 1}, "invalid_argument"),
    ("t" * LONG, {}, "not_found"),
]


@pytest.mark.parametrize(
    ("tool", "arguments", "kind"),
    LONG_CALLS,
    ids=[f"{c[0][:20]}-{next(iter(c[1]), '')[:12]}" for c in LONG_CALLS],
)
def test_a_huge_argument_is_quoted_clipped_not_echoed(
    mcp: McpSession, tool: str, arguments: dict[str, Any], kind: str
) -> None:
    error = mcp.fails(tool, arguments)
    assert error["kind"] == kind, error["text"][:500]
    # Before: the value came back twice (in the text and in the structured error), 400 KB.
    assert len(error["text"]) < 3000, len(error["text"])
    assert len(json.dumps(error)) < 8000
    for run in re.findall(r"(.)\1{" + str(CLIP) + ",}", json.dumps(error)):
        pytest.fail(f"a run of {run!r} longer than {CLIP} characters was echoed")
    assert mcp.ok("catalog_list", {})["services"]


def test_text_with_a_nul_is_refused_naming_the_field(mcp: McpSession) -> None:
    error = mcp.fails("catalog_describe", {"name": "user\x00activity"})
    assert error["kind"] == "invalid_argument" and error["field"] == "name"
    assert "NUL" in error["message"]


@pytest.fixture
def outside_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    secret = tmp_path_factory.mktemp("elsewhere") / "secret.yaml"
    secret.write_text("zq-secret-8c1f3a: the content of a file outside the workspace\n")
    return secret


@pytest.mark.parametrize("target", ["/etc/passwd", "outside"])
def test_a_catalog_link_to_a_file_outside_is_refused_without_quoting_it(
    mcp: McpSession, workspace: Path, outside_file: Path, target: str
) -> None:
    secret = outside_file if target == "outside" else Path(target)
    if not secret.is_file():
        pytest.skip(f"no {secret} here")
    first_line = secret.read_text().splitlines()[0]
    marker = first_line[:12]  # "zq-secret-8c", "root:x:0:0:r"
    link = workspace / "feature_views" / "zz_leak.yaml"
    link.symlink_to(secret)
    try:
        results = [
            mcp.call("catalog_validate", {}),
            mcp.call("catalog_validate", {"directory": "feature_views"}),
            mcp.call("catalog_list", {}),
            mcp.call("service_schema", {"service": SERVICE}),
        ]
        for result in results:
            # Refused (a tool error naming the link) or located (an error entry on the link).
            text = result.content[0].text
            assert "zz_leak.yaml" in text, text[:2000]
            if result.is_error:
                assert result.structured_content["error"]["kind"] in (
                    "forbidden",
                    "invalid_catalog",
                )
            else:
                assert not result.structured_content["ok"]
        listed = [str(r.uri) for r in mcp.run(lambda s: s.list_resources()).resources]
        assert "daedalus://catalog/zz_leak.yaml" not in listed
        with pytest.raises(MCPError, match="outside the workspace") as refused:
            mcp.run(lambda s: s.read_resource("daedalus://catalog/zz_leak.yaml"))
        everything = json.dumps([[r.model_dump(mode="json") for r in results], str(refused.value)])
        assert marker not in everything
    finally:
        link.unlink()
    assert mcp.ok("catalog_validate", {})["ok"]


# -- a server survives its jobs ----------------------------------------------------------------

#: How long the server is kept busy after its first job ended (Ray used to die at ~60 s).
KEEP_CALLING = 122.0
#: The longest any one call may take to answer.
ANSWER_WITHIN = 30.0


def test_long_lived_processes_live_long(tiny_demo: Path, tmp_path: Path) -> None:
    root = copy_workspace(tiny_demo, tmp_path / "demo")
    (root / "feature_views" / "lost.yaml").write_text(LOST_SERVICE)
    # Every enrich pooled through Ray Data (the demo's batches are far below the 2M rows pooled
    # in process): Ray is then started by a job's thread, which used to take Ray, and a minute
    # later the server, down with it.
    on_ray = {"DAEDA_ENRICH_IN_PROCESS_ROWS": "0"}
    server = McpSession(stdio(*workspace_args(root), env=on_ray), tmp_path / "server.log")
    slowest = 0.0

    def answered(tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        nonlocal slowest
        started = time.monotonic()
        answer = server.ok(tool, arguments)
        slowest = max(slowest, time.monotonic() - started)
        return answer

    try:
        # 1. A job that succeeds, its enrich on a Ray its thread started.
        first = server.wait(answered("train_start", {"service": SERVICE, "start": DAY, "end": DAY}))
        ended = time.monotonic()
        assert first["state"] == "succeeded", f"{first['error']}\n{server.server_log()}"
        manifest = answered("day_manifest", {"service": SERVICE, "day": DAY})
        assert manifest["batch"]["enriched_in"] == "ray", manifest["batch"]

        # 2. A job that is cancelled (every day, forced: it cannot end before the cancel).
        every_day = {"service": SERVICE, "start": "2026-10-01", "end": "2026-10-05", "force": True}
        second = answered("train_start", every_day)
        answered("job_cancel", {"job_id": second["id"]})
        second = server.wait(second)
        assert second["state"] == "cancelled", second
        assert second["error"]["kind"] == "cancelled"

        # 3. A job that fails: the service's source has no file.
        third = answered("train_start", {"service": "lost_ranking", "start": DAY, "end": DAY})
        third = server.wait(third)
        assert third["state"] == "failed" and third["error"]["kind"] == "invalid_input", third
        assert "data/lost" in third["error"]["message"]

        # 4. The server keeps answering, well past the minute after which it used to die.
        calls = 0
        while time.monotonic() - ended < KEEP_CALLING:
            services = answered("catalog_list")["services"]
            assert SERVICE in [s["name"] for s in services]
            jobs = answered("job_list", {"limit": 3})["jobs"]
            assert [j["id"] for j in jobs] == [third["id"], second["id"], first["id"]]
            assert answered("job_status", {"job_id": first["id"]})["state"] == "succeeded"
            calls += 3
            time.sleep(5.0)
        assert calls >= 60

        # 5. And Ray, started by a thread that ended two minutes ago, still pools.
        last = {"service": SERVICE, "start": "2026-10-03", "end": "2026-10-03"}
        last_job = server.wait(answered("train_start", last))
        assert last_job["state"] == "succeeded", f"{last_job['error']}\n{server.server_log()}"
        manifest = answered("day_manifest", {"service": SERVICE, "day": "2026-10-03"})
        assert manifest["batch"]["enriched_in"] == "ray"
        assert slowest < ANSWER_WITHIN, slowest
    finally:
        server.close()


# -- streamable HTTP ---------------------------------------------------------------------------

TOKEN = "s3cret-mcp-token"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
#: `daeda mcp`, as the console script runs it.
DAEDA_MCP = [
    sys.executable,
    "-c",
    "import sys; from daedalus.adapters.cli.app import main; sys.argv[0] = 'daeda'; main()",
    "mcp",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HttpServer:
    """`daeda mcp --http` in a process of its own, on a free loopback port."""

    def __init__(self, args: list[str], log: Path, token: str | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [*DAEDA_MCP, "--http", "--port", str(self.port), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=server_env(token),
            )
        deadline = time.monotonic() + 120
        while True:
            assert self.process.poll() is None, f"the server ended:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no server:\n{log.read_text()[-3000:]}"
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            time.sleep(0.1)

    def post(self, headers: dict[str, str], body: Any = INITIALIZE) -> httpx.Response:
        return httpx.post(self.url, json=body, headers={**MCP_HEADERS, **headers}, timeout=30)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)


@pytest.fixture(scope="module")
def readme_layout(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The README's desktop configuration: the workspace is the repository's demo/, the
    catalog is the repository's feature_views/ beside it (outside the workspace)."""
    repo = tmp_path_factory.mktemp("repo")
    workspace = copy_workspace(tiny_demo, repo / "demo")
    shutil.move(workspace / "feature_views", repo / "feature_views")
    return workspace, repo / "feature_views"


def test_examples_are_valid_under_the_readme_configuration(
    readme_layout: tuple[Path, Path],
) -> None:
    workspace, catalog = readme_layout
    session = McpSession(stdio(*workspace_args(workspace, catalog)), workspace / "mcp-readme.log")
    try:
        # The catalog_validate example used to name feature_views, not in the workspace here.
        check_tools_and_examples(session, workspace)
    finally:
        session.close()


@pytest.fixture(scope="module")
def http_server(readme_layout: tuple[Path, Path]) -> Iterator[HttpServer]:
    workspace, catalog = readme_layout
    args = workspace_args(workspace, catalog)  # the token comes from DAEDA_MCP_TOKEN
    server = HttpServer(args, workspace / "mcp-http.log", token=TOKEN)
    yield server
    server.close()


@pytest.fixture(scope="module")
def open_http_server(readme_layout: tuple[Path, Path]) -> Iterator[HttpServer]:
    workspace, catalog = readme_layout
    server = HttpServer(
        [*workspace_args(workspace, catalog), "--host", "localhost"],
        workspace / "mcp-http-open.log",
        token=None,
    )
    yield server
    server.close()


def test_http_every_request_needs_the_bearer_token(http_server: HttpServer) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
    ):
        answer = http_server.post(headers)
        assert answer.status_code == 401, (headers, answer.text)
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in answer.text
    assert httpx.get(http_server.url, headers=MCP_HEADERS, timeout=30).status_code == 401
    answer = http_server.post({"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert "daedalus" in answer.text


def test_http_checks_host_and_origin(http_server: HttpServer) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert http_server.post({**auth, "Host": "evil.example"}).status_code == 421
    assert http_server.post({**auth, "Host": f"evil.example:{http_server.port}"}).status_code == 421
    assert http_server.post({**auth, "Origin": "http://evil.example"}).status_code == 403
    assert http_server.post({"Host": "evil.example"}).status_code == 421  # before the token
    good = {**auth, "Host": f"localhost:{http_server.port}", "Origin": "http://127.0.0.1:3000"}
    assert http_server.post(good).status_code == 200


def test_http_with_the_token_serves_every_tool_and_its_examples_are_valid(
    http_server: HttpServer, readme_layout: tuple[Path, Path]
) -> None:
    workspace, _catalog = readme_layout
    session = McpSession(http(http_server.url, TOKEN), workspace / "mcp-http-client.log")
    try:
        # Under the README's configuration: the catalog_validate example used to name
        # feature_views, which is not in the workspace there.
        check_tools_and_examples(session, workspace)
        assert session.ok("catalog_list")["services"]
        job = session.ok("train_start", {"service": SERVICE, "start": DAY, "end": DAY})
        assert session.wait(job)["state"] == "succeeded"
        rows = session.ok("day_preview", {"service": SERVICE, "day": DAY, "limit": 2})["rows"]
        assert all(ISO_TIMESTAMP.match(row["ts"]) for row in rows)
        assert session.fails("job_cancel", {"job_id": "nope"})["kind"] == "not_found"
        uris = [str(r.uri) for r in session.run(lambda s: s.list_resources()).resources]
        assert "daedalus://catalog/ranking.yaml" in uris  # the catalog outside the workspace
    finally:
        session.close()


def test_http_without_a_token_serves_reads_and_refuses_writes(
    open_http_server: HttpServer, readme_layout: tuple[Path, Path]
) -> None:
    workspace, _catalog = readme_layout
    session = McpSession(http(open_http_server.url), workspace / "mcp-http-open-client.log")
    try:
        tools = check_tools_and_examples(session, workspace)
        assert "refuses" in (tools["train_start"].description or "")
        assert session.ok("catalog_list")["services"]
        for tool, arguments in (
            ("train_start", {"service": SERVICE, "start": DAY, "end": DAY}),
            ("job_cancel", {"job_id": "nope"}),
        ):
            error = session.fails(tool, arguments)
            assert error["kind"] == "unauthorized" and "DAEDA_MCP_TOKEN" in error["message"]
    finally:
        session.close()
    assert open_http_server.post({"Host": "evil.example"}).status_code == 421
    assert open_http_server.post({"Origin": "http://evil.example"}).status_code == 403


@pytest.mark.parametrize(
    ("args", "code", "phrase"),
    [
        (["--http", "--host", "0.0.0.0"], 8, "without a token"),
        (["--http", "--host", "example.com"], 8, "without a token"),
        (["--port", "8001"], 5, "--http only"),
        (["--token", "t"], 5, "--http only"),
    ],
    ids=["any-interface", "a-host-name", "port-without-http", "token-without-http"],
)
def test_daeda_mcp_refuses_a_server_it_should_not_start(
    tmp_path: Path, args: list[str], code: int, phrase: str
) -> None:
    done = subprocess.run(
        [*DAEDA_MCP, *args, "--workspace", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=server_env(None),
        timeout=120,
    )
    assert done.returncode == code, done.stderr[-2000:]
    assert phrase in done.stderr
