"""End to end: the JSON-RPC control plane served by a real uvicorn on loopback, called over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from daedalus.adapters.demo.generator import write_demo_workspace
from daedalus.adapters.jsonrpc import server as server_module
from daedalus.adapters.jsonrpc.server import MAX_BATCH, create_app, serve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daedalus.app.application import USE_CASES, Application
from daedalus.app.catalog_cases import CatalogCases
from daedalus.app.jobs import FINISHED
from daedalus.app.settings import Settings
from daedalus.container import build_container

REPO = Path(__file__).resolve().parents[2]
DAEDA = Path(sys.executable).with_name("daeda")
TOKEN = "secret"
SERVICE = "feed_ranking"
FIRST, SECOND = "2026-10-02", "2026-10-03"


class Server:
    """A running server: its URL, workspace, the Application behind it and its catalog cases."""

    def __init__(
        self, url: str, workspace: Path, application: Application, catalog: CatalogCases
    ) -> None:
        self.url, self.workspace, self.application = url, workspace, application
        self.catalog = catalog


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """`app` served by a real uvicorn on a free loopback port (in a thread); yields its URL."""
    port = _free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, name="rpc-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield url
    finally:
        uv.should_exit = True
        thread.join(15)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    ws = tmp_path_factory.mktemp("rpc")
    write_demo_workspace(ws, scale="tiny")
    shutil.copytree(REPO / "feature_views", ws / "feature_views")
    settings_ = Settings.from_env(
        workspace=ws, catalog_dir=ws / "feature_views", out_dir=ws / "out", engine="polars"
    )
    container = build_container(settings_)
    application = container.application()
    with running(create_app(application, token=TOKEN)) as url:
        yield Server(url, ws, application, container.catalog_cases())


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def call(
    client: httpx.Client,
    method: str,
    params: Any = None,
    *,
    token: str | None = None,
    id_: Any = 1,
) -> dict[str, Any]:
    """POST one request; the JSON-RPC response (HTTP status must be 200)."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params is not None:
        body["params"] = params
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    # json.dumps escapes non-ASCII, so a lone surrogate can be sent (httpx's json= cannot).
    response = client.post("/rpc", content=json.dumps(body).encode(), headers=headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["jsonrpc"] == "2.0" and answer["id"] == id_
    return answer


def result(client: httpx.Client, method: str, params: Any = None, **kw: Any) -> Any:
    answer = call(client, method, params, **kw)
    assert "error" not in answer, answer
    return answer["result"]


def error(client: httpx.Client, method: str, params: Any = None, **kw: Any) -> dict[str, Any]:
    answer = call(client, method, params, **kw)
    assert "result" not in answer, answer
    return answer["error"]


def post_raw(client: httpx.Client, content: bytes) -> httpx.Response:
    return client.post("/rpc", content=content, headers={"Content-Type": "application/json"})


def wait_for(client: httpx.Client, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = result(client, "job.status", {"job_id": job_id})
        if job["state"] in FINISHED:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']}: {job}"
        time.sleep(0.5)


# -- reads ------------------------------------------------------------------------------------


def test_health(client: httpx.Client) -> None:
    answer = client.get("/health")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok" and answer.json()["version"]


@pytest.mark.parametrize(
    ("method", "params", "key"),
    [
        ("catalog.list", None, "services"),
        ("catalog.list", {}, "views"),
        ("catalog.describe", {"name": SERVICE}, "schema"),
        ("catalog.describe", ["user_activity"], "outputs"),  # by position
        ("catalog.validate", {}, "ok"),
        ("catalog.validate", {"directory": "feature_views"}, "ok"),
        ("service.schema", {"service": SERVICE}, None),
        ("service.schema", [SERVICE], None),
        ("pipeline.compile", {"service": SERVICE}, "pipeline"),
        ("pipeline.compile", {"service": SERVICE, "format": "text"}, "pipeline"),
        ("pipeline.compile", {"service": SERVICE, "format": "mermaid"}, "pipeline"),
        ("pipeline.compile", [SERVICE, "json", "polars"], "pipeline"),
        ("job.list", {"limit": 5}, "jobs"),
        ("job.list", {"limit": 5.0}, "jobs"),  # an integral number is an integer in JSON
        ("days.list", {"service": SERVICE}, "days"),
    ],
)
def test_every_read_method_answers(
    client: httpx.Client, method: str, params: Any, key: str | None
) -> None:
    answer = result(client, method, params)
    assert isinstance(answer, dict) and answer
    if key is not None:
        assert key in answer
    if method == "catalog.validate":
        assert answer["ok"] is True
    if method == "catalog.list":
        assert SERVICE in [s["name"] for s in answer["services"]]


def test_one_log_line_per_request_without_params(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=server_module.__name__):
        call(client, "service.schema", {"service": "a-param-value"})
    lines = [r.getMessage() for r in caplog.records if r.name == server_module.__name__]
    assert len(lines) == 1, lines
    assert "service.schema" in lines[0] and "-> 200" in lines[0] and " ms" in lines[0]
    assert "a-param-value" not in lines[0]


def test_discover_lists_every_method_with_its_schema(client: httpx.Client) -> None:
    doc = result(client, "rpc.discover")
    assert doc["openrpc"] == "1.2.6"
    methods = {m["name"]: m for m in doc["methods"]}
    assert set(methods) == {case.method for case in USE_CASES}
    for case in USE_CASES:
        method = methods[case.method]
        assert method["summary"] == case.summary
        assert [p["name"] for p in method["params"]] == [p.name for p in case.params]
        for param, described in zip(case.params, method["params"], strict=True):
            assert described["required"] == param.required
            assert described["schema"]["type"] == param.schema["type"]
        assert method["x-requires-token"] == case.writes
    codes = {e["code"] for e in doc["components"]["errors"].values()}
    assert {-32700, -32600, -32601, -32602, -32603, -32001, -32003, -32004} <= codes
    assert {-32006, -32009, -32010} <= codes
    train = methods["pipeline.train"]
    assert {"$ref": "#/components/errors/Unauthorized"} in train["errors"]
    assert train["params"][1]["schema"]["pattern"]


# -- protocol errors --------------------------------------------------------------------------


def test_malformed_json_is_a_parse_error(client: httpx.Client) -> None:
    for body in (b'{"jsonrpc": "2.0", "method"', b"", b"\xff\xfe\x00", b'{"a": NaN}'):
        answer = post_raw(client, body)
        assert answer.status_code == 200
        assert answer.json()["error"]["code"] == -32700 and answer.json()["id"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"jsonrpc": "1.0", "method": "catalog.list", "id": 1},
        {"method": "catalog.list", "id": 1},
        {"jsonrpc": 2.0, "method": "catalog.list", "id": 1},
        {"jsonrpc": "2.0", "method": 7, "id": 1},
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "2.0", "method": "catalog.list", "id": {"x": 1}},
        {"jsonrpc": "2.0", "method": "catalog.list", "id": 1, "param": {}},
        5,
        "catalog.list",
        None,
        [],
        [{"jsonrpc": "2.0", "method": "catalog.list"}] * (MAX_BATCH + 1),
    ],
)
def test_a_bad_request_is_an_invalid_request(client: httpx.Client, body: Any) -> None:
    answer = post_raw(client, json.dumps(body).encode())
    assert answer.status_code == 200
    payload = answer.json()
    assert payload["error"]["code"] == -32600 and payload["id"] is None
    assert payload["error"]["data"]["reason"]


def test_an_unknown_method_is_not_found(client: httpx.Client) -> None:
    err = error(client, "catalog.lst", id_="abc")
    assert err["code"] == -32601
    assert "catalog.list" in err["message"]  # a did-you-mean hint
    assert err["data"] == {"kind": "method_not_found", "method": "catalog.lst"}


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("service.schema", {}, "service"),  # missing
        ("service.schema", {"service": SERVICE, "bogus": 1}, "bogus"),  # unknown
        ("catalog.list", {"x": 1}, "x"),
        ("service.schema", {"service": 7}, "service"),  # wrong type
        ("service.schema", {"service": ""}, "service"),  # too short
        ("job.list", {"limit": "ten"}, "limit"),
        ("job.list", {"limit": True}, "limit"),
        ("job.list", {"limit": 0}, "limit"),
        ("job.list", {"limit": 2.5}, "limit"),
        ("pipeline.compile", {"service": SERVICE, "format": "svg"}, "format"),
        ("pipeline.compile", {"service": SERVICE, "engine": "spark"}, "engine"),
        ("days.manifest", {"service": SERVICE, "day": "2026/10/02"}, "day"),  # pattern
        ("days.manifest", {"service": SERVICE, "day": "2026-13-01"}, "day"),  # not a date
        ("days.manifest", [SERVICE, FIRST, "extra"], "params"),  # too many positional
        ("days.manifest", [SERVICE], "day"),
        ("service.schema", "feed_ranking", "params"),  # neither object nor array
        ("rpc.discover", {"x": 1}, "x"),
        ("catalog.validate", {"directory": "feature_views\x00"}, "directory"),  # NUL
        ("job.status", {"job_id": "\ud800"}, "job_id"),  # a lone surrogate
    ],
)
def test_bad_params_name_the_field(
    client: httpx.Client, method: str, params: Any, field: str
) -> None:
    err = error(client, method, params)
    assert err["code"] == -32602, err
    assert err["data"]["field"] == field and err["data"]["kind"] == "invalid_argument"
    assert field in err["message"] or field == "params"


def test_bad_dates_of_a_write_are_refused_before_any_job(client: httpx.Client) -> None:
    before = result(client, "job.list", {"limit": 1000})["jobs"]
    for params, field in (
        ({"service": SERVICE, "start": "yesterday", "end": SECOND}, "start"),
        ({"service": SERVICE, "start": FIRST, "end": "2026-02-30"}, "end"),
        ({"service": SERVICE, "start": SECOND, "end": FIRST}, "start"),  # the app's own check
        ({"service": SERVICE, "start": FIRST, "end": SECOND, "force": "yes"}, "force"),
    ):
        err = error(client, "pipeline.train", params, token=TOKEN)
        assert err["code"] == -32602 and err["data"]["field"] == field, err
    assert result(client, "job.list", {"limit": 1000})["jobs"] == before


def test_application_errors_keep_their_kind(client: httpx.Client) -> None:
    err = error(client, "service.schema", {"service": "feed_rankin"})
    assert err["code"] == -32004 and err["data"]["kind"] == "not_found"
    assert "feed_ranking" in err["message"]
    err = error(client, "job.status", {"job_id": "nope"})
    assert err["code"] == -32004 and err["data"]["job_id"] == "nope"
    err = error(client, "days.manifest", {"service": SERVICE, "day": "2030-01-01"})
    assert err["code"] == -32004


@pytest.mark.parametrize("directory", ["/etc", "../x", "feature_views/../../"])
def test_paths_outside_the_workspace_are_forbidden(client: httpx.Client, directory: str) -> None:
    err = error(client, "catalog.validate", {"directory": directory})
    assert err["code"] == -32001
    assert err["data"] == {"kind": "forbidden", "field": "directory"}
    assert "outside the workspace" in err["message"]


def test_a_batch_answers_every_request_but_the_notifications(client: httpx.Client) -> None:
    batch = [
        {"jsonrpc": "2.0", "method": "catalog.list", "id": 1},
        {"jsonrpc": "2.0", "method": "nope", "id": 2},
        {"jsonrpc": "2.0", "method": "catalog.list"},  # a notification
        {"jsonrpc": "2.0", "method": "service.schema", "params": {"service": 1}, "id": "3"},
        {"jsonrpc": "2.0", "method": "nope"},  # a notification of an unknown method
        5,
    ]
    answer = client.post("/rpc", json=batch)
    assert answer.status_code == 200
    by_id = {r["id"]: r for r in answer.json()}
    assert len(answer.json()) == 4 and set(by_id) == {1, 2, "3", None}
    assert "services" in by_id[1]["result"]
    assert by_id[2]["error"]["code"] == -32601
    assert by_id["3"]["error"]["code"] == -32602
    assert by_id[None]["error"]["code"] == -32600


def test_notifications_get_no_answer(client: httpx.Client) -> None:
    single = client.post("/rpc", json={"jsonrpc": "2.0", "method": "catalog.list"})
    assert single.status_code == 204 and single.content == b""
    batch = client.post("/rpc", json=[{"jsonrpc": "2.0", "method": "job.list"}] * 3)
    assert batch.status_code == 204 and batch.content == b""


def test_an_oversized_body_is_413(client: httpx.Client) -> None:
    big = json.dumps(
        {"jsonrpc": "2.0", "method": "catalog.list", "id": 1, "params": {"x": "a" * 1_000_000}}
    ).encode()
    answer = post_raw(client, big)
    assert answer.status_code == 413
    assert answer.json()["error"] == {
        "code": -32600,
        "message": "request body too large",
        "data": {"kind": "invalid_request", "limit": 1_000_000},
    }

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        for i in range(0, len(big), 64 * 1024):
            yield big[i : i + 64 * 1024]

    answer = client.post("/rpc", content=chunks())
    assert answer.status_code == 413
    assert client.get("/health").status_code == 200


# -- writes -----------------------------------------------------------------------------------


TRAIN = {"service": SERVICE, "start": FIRST, "end": SECOND, "engine": "polars"}


@pytest.mark.parametrize("method", ["pipeline.train", "job.cancel"])
def test_writes_need_the_token(client: httpx.Client, method: str) -> None:
    before = result(client, "job.list")["jobs"]
    params = TRAIN if method == "pipeline.train" else {"job_id": "whatever"}
    err = error(client, method, params)
    assert err["code"] == -32001 and err["data"] == {"kind": "unauthorized"}
    assert "Authorization: Bearer" in err["message"]
    err = error(client, method, params, token="not-the-secret")
    assert err["code"] == -32001 and "invalid token" in err["message"]
    answer = client.post(
        "/rpc",
        json={"jsonrpc": "2.0", "method": method, "params": params, "id": 1},
        headers={"Authorization": f"Basic {TOKEN}"},
    )
    assert answer.json()["error"]["code"] == -32001
    assert result(client, "job.list")["jobs"] == before


def test_without_a_configured_token_writes_are_always_refused(server: Server) -> None:
    app = create_app(server.application, token=None)

    async def go() -> list[dict[str, Any]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            answers = []
            for token in (None, "", "secret"):
                headers = {} if token is None else {"Authorization": f"Bearer {token}"}
                body = {"jsonrpc": "2.0", "method": "pipeline.train", "params": TRAIN, "id": 1}
                answers.append((await c.post("/rpc", json=body, headers=headers)).json())
            return answers

    for answer in asyncio.run(go()):
        assert answer["error"]["code"] == -32001
        assert "DAEDA_API_TOKEN" in answer["error"]["message"]


@pytest.fixture(scope="module")
def trained(client: httpx.Client) -> dict[str, Any]:
    job = result(client, "pipeline.train", TRAIN, token=TOKEN)
    assert job["state"] in ("queued", "running", "succeeded") and job["id"]
    return wait_for(client, job["id"])


def test_a_train_job_runs_and_its_days_can_be_read(
    client: httpx.Client, trained: dict[str, Any]
) -> None:
    assert trained["state"] == "succeeded", trained
    assert trained["progress"]["days_done"] == 2
    days = result(client, "days.list", {"service": SERVICE})["days"]
    assert [d["day"] for d in days] == [FIRST, SECOND]
    assert all(d["current"] and d["engine"] == "polars" for d in days)
    manifest = result(client, "days.manifest", {"service": SERVICE, "day": FIRST})
    assert manifest["rows"] > 0 and manifest["engine"] == "polars"
    preview = result(client, "days.preview", [SERVICE, SECOND, 3])
    assert len(preview["rows"]) == 3 and preview["columns"]
    assert json.loads(json.dumps(preview["rows"]))  # plain JSON: timestamps as text
    jobs = result(client, "job.list")["jobs"]
    assert trained["id"] in [j["id"] for j in jobs]


def test_a_cancelled_job_leaves_only_complete_days(
    client: httpx.Client, server: Server, trained: dict[str, Any]
) -> None:
    params = {**TRAIN, "start": "2026-10-01", "end": "2026-10-05", "force": True}
    job = result(client, "pipeline.train", params, token=TOKEN)
    # While it runs, a second job for the same service is a conflict.
    err = error(client, "pipeline.train", params, token=TOKEN)
    assert err["code"] == -32009 and err["data"]["job_id"] == job["id"]
    result(client, "job.cancel", {"job_id": job["id"]}, token=TOKEN)
    final = wait_for(client, job["id"])
    assert final["state"] in ("cancelled", "succeeded"), final
    if final["state"] == "cancelled":
        assert final["error"]["kind"] == "cancelled"
    # Cancelling a finished job changes nothing.
    again = result(client, "job.cancel", {"job_id": job["id"]}, token=TOKEN)
    assert again["state"] == final["state"]
    service_dir = server.workspace / "out" / SERVICE
    assert not [p for p in service_dir.iterdir() if p.name.startswith(".staging-")]
    day_dirs = list(service_dir.glob("dt=*"))
    assert day_dirs and all((d / "_manifest.json").is_file() for d in day_dirs)


# -- robustness -------------------------------------------------------------------------------

_NAMES = sorted({p.name for case in USE_CASES for p in case.params})
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["2026-10-02", "feed_ranking", "/etc", "..", "", "a\x00", "\ud800"])
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
# Write methods are left out: without the token they are refused before anything runs anyway.
_methods = st.sampled_from(
    [c.method for c in USE_CASES if not c.writes] + ["rpc.discover", "pipeline.train"]
) | st.text(max_size=20)
_params = (
    st.dictionaries(st.sampled_from(_NAMES) | st.text(max_size=6), _json, max_size=4)
    | st.lists(_json, max_size=4)
    | _scalars
)
_request = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "2.0", "1.0"]), "method": _methods},
    optional={"params": _params, "id": st.integers() | st.text(max_size=6) | st.none()},
)
_bodies = st.one_of(
    _request.map(json.dumps).map(str.encode),
    st.lists(_request | _json, max_size=5).map(json.dumps).map(str.encode),
    _json.map(json.dumps).map(str.encode),
    st.binary(max_size=64),
)


def test_fuzz_never_fails_the_server(client: httpx.Client) -> None:
    internal: list[Any] = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=_bodies)
    def post(body: bytes) -> None:
        answer = post_raw(client, body)
        assert answer.status_code in (200, 204), (body, answer.status_code, answer.text)
        if answer.status_code == 204:
            return
        payload = answer.json()
        for response in payload if isinstance(payload, list) else [payload]:
            assert response["jsonrpc"] == "2.0" and "id" in response
            assert ("result" in response) != ("error" in response)
            if "error" in response:
                assert isinstance(response["error"]["code"], int)
                assert "Traceback" not in json.dumps(response["error"])
                if response["error"]["code"] == -32603:
                    internal.append((body, response))

    post()
    assert not internal, internal[:3]
    assert client.get("/health").status_code == 200


def test_200_concurrent_reads_all_succeed(server: Server) -> None:
    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as c:
            return await asyncio.gather(
                *(
                    c.post("/rpc", json={"jsonrpc": "2.0", "method": "catalog.list", "id": i})
                    for i in range(200)
                )
            )

    answers = asyncio.run(go())
    assert [a.status_code for a in answers] == [200] * 200
    assert sorted(a.json()["id"] for a in answers) == list(range(200))
    assert all("services" in a.json()["result"] for a in answers)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "example.com"])
def test_serve_refuses_a_public_address_without_a_token(server: Server, host: str) -> None:
    for token in (None, ""):
        with pytest.raises(ValueError, match="DAEDA_API_TOKEN"):
            serve(server.application, host=host, port=1, token=token)


# -- files: every catalog file is resolved before it is read ----------------------------------


SECRET = "TOP-SECRET-CONTENT-" * 3


@pytest.fixture
def outside_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file outside the workspace (its own temporary directory), holding a marker."""
    path = tmp_path_factory.mktemp("outside") / "secret.txt"
    path.write_text(f"{SECRET}\nkind: feature_view\n# {SECRET}\n")
    return path


def _assert_no_leak(answer: dict[str, Any]) -> None:
    text = json.dumps(answer)
    assert "TOP-SECRET" not in text and "root:x" not in text, text


@pytest.mark.parametrize("target", ["outside", "/etc/passwd"])
def test_a_catalog_file_linked_outside_the_workspace_is_refused_unread(
    client: httpx.Client, server: Server, outside_file: Path, target: str
) -> None:
    link = server.workspace / "feature_views" / "zz_link.yaml"
    link.symlink_to(outside_file if target == "outside" else Path(target))
    try:
        for method, params in (
            ("catalog.validate", None),
            ("catalog.validate", {"directory": "feature_views"}),
            ("catalog.list", None),
            ("service.schema", {"service": SERVICE}),
            ("pipeline.compile", {"service": SERVICE}),
        ):
            answer = call(client, method, params)
            _assert_no_leak(answer)
            err = answer["error"]
            assert err["code"] == -32001 and err["data"]["kind"] == "forbidden", err
            assert "zz_link.yaml" in err["message"] and "outside the workspace" in err["message"]
            assert err["data"]["file"].endswith("zz_link.yaml")
    finally:
        link.unlink()
    assert result(client, "catalog.validate")["ok"] is True  # the refusal is not cached


def test_a_linked_directory_of_catalog_files_is_refused_too(
    client: httpx.Client, server: Server, outside_file: Path
) -> None:
    # A directory inside the workspace whose entry links out, and a directory linking out.
    inner = server.workspace / "cat_linked"
    inner.mkdir()
    (inner / "a.yaml").symlink_to(outside_file)
    (server.workspace / "cat_out").symlink_to(outside_file.parent, target_is_directory=True)
    for directory in ("cat_linked", "cat_out"):
        answer = call(client, "catalog.validate", {"directory": directory})
        _assert_no_leak(answer)
        assert answer["error"]["code"] == -32001, answer


def test_links_that_stay_inside_the_workspace_are_read(
    client: httpx.Client, server: Server
) -> None:
    linked = server.workspace / "cat_inside"
    linked.mkdir(exist_ok=True)
    for path in (server.workspace / "feature_views").glob("*.yaml"):
        (linked / path.name).symlink_to(Path("..") / "feature_views" / path.name)
    answer = result(client, "catalog.validate", {"directory": "cat_inside"})
    assert answer["ok"] is True and answer["services"] >= 1


def test_a_long_path_is_quoted_clipped(client: httpx.Client) -> None:
    err = error(client, "catalog.validate", {"directory": "/" + "x" * 5000})
    assert err["code"] == -32001 and len(err["message"]) < 400, err["message"]
    err = error(client, "x" * 5000)
    assert err["code"] == -32601 and len(json.dumps(err)) < 1000


# -- Host and Origin: no DNS rebinding --------------------------------------------------------


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_an_unknown_host_is_421_and_a_foreign_origin_403(server: Server) -> None:
    port = _port(server.url)
    body = json.dumps({"jsonrpc": "2.0", "method": "catalog.list", "id": 1}).encode()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", ""):
            answer = c.post(
                "/rpc",
                content=body,
                headers={
                    "Host": host,
                    "Origin": "http://evil.example",
                    "Content-Type": "text/plain",
                },
            )
            assert answer.status_code == 421, (host, answer.text)
            assert answer.json()["error"]["data"]["kind"] == "misdirected"
            assert "services" not in answer.text
            assert c.get("/health", headers={"Host": host}).status_code == 421
        # A loopback name, but not the port this server listens on.
        assert c.get("/health", headers={"Host": f"127.0.0.1:{port + 1}"}).status_code == 421
        for origin in ("http://evil.example", f"http://evil.example:{port}", "null", "file://"):
            answer = c.post(
                "/rpc",
                content=body,
                headers={"Origin": origin, "Content-Type": "application/json"},
            )
            assert answer.status_code == 403, (origin, answer.text)
            assert answer.json()["error"]["data"]["kind"] == "forbidden_origin"
            assert c.get("/health", headers={"Origin": origin}).status_code == 403


def test_loopback_hosts_and_origins_are_served(server: Server) -> None:
    port = _port(server.url)
    body = {"jsonrpc": "2.0", "method": "catalog.list", "id": 1}
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for host in (
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            f"[::1]:{port}",
            f"LOCALHOST:{port}",
        ):
            for origin in (
                None,
                f"http://{host}",
                "http://localhost:5173",
                "https://127.0.0.1",
                "http://[::1]:3000",
            ):
                headers = {"Host": host} | ({"Origin": origin} if origin else {})
                answer = c.post("/rpc", json=body, headers=headers)
                assert answer.status_code == 200, (host, origin, answer.text)
                assert "services" in answer.json()["result"]


def test_added_hosts_are_served(server: Server) -> None:
    app = create_app(server.application, token=None, allowed_hosts=("api.internal", "Other.Lan"))
    with running(app) as url:
        port = _port(url)
        with httpx.Client(base_url=url, timeout=30) as c:
            for host, origin in (
                (f"api.internal:{port}", f"https://api.internal:{port}"),
                (f"other.lan:{port}", "http://other.lan"),
                (f"localhost:{port}", "http://api.internal:8080"),
            ):
                answer = c.get("/health", headers={"Host": host, "Origin": origin})
                assert answer.status_code == 200, (host, origin, answer.text)
            assert c.get("/health", headers={"Host": f"evil.example:{port}"}).status_code == 421


# -- ids: spec-exact, never executed when they do not fit -------------------------------------


@pytest.mark.parametrize("raw_id", ["1e400", "-1e400", "1e-400", "1" * 30, "-" + "9" * 5000])
def test_an_id_that_does_not_fit_is_an_invalid_request_and_never_runs(
    client: httpx.Client, raw_id: str
) -> None:
    before = result(client, "job.list", {"limit": 1000})["jobs"]
    params = json.dumps({**TRAIN, "force": True})
    single = (
        f'{{"jsonrpc":"2.0","method":"pipeline.train","params":{params},"id":{raw_id}}}'
    ).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    answer = client.post("/rpc", content=single, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] is None and answer.json()["error"]["code"] == -32600
    assert "id" in answer.json()["error"]["data"]["reason"]
    assert raw_id[:50] not in answer.text
    # In a batch, only that member is refused; the others are answered with their own ids.
    batch = f'[{single.decode()},{{"jsonrpc":"2.0","method":"job.list","id":7}}]'.encode()
    answer = client.post("/rpc", content=batch, headers=headers)
    assert answer.status_code == 200, answer.text
    answers = answer.json()
    assert isinstance(answers, list) and len(answers) == 2, answers
    by_id = {a["id"]: a for a in answers}
    assert by_id[None]["error"]["code"] == -32600 and "jobs" in by_id[7]["result"]
    assert result(client, "job.list", {"limit": 1000})["jobs"] == before


@pytest.mark.parametrize(
    ("raw_id", "echoed"),
    [
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
        ("1.5", 1.5),
        ("1e300", 1e300),
        ("0.0", 0.0),
        ('"1e400"', "1e400"),
        ("null", None),
    ],
)
def test_ids_that_fit_are_echoed(client: httpx.Client, raw_id: str, echoed: Any) -> None:
    body = f'{{"jsonrpc":"2.0","method":"job.list","params":{{"limit":1}},"id":{raw_id}}}'
    answer = post_raw(client, body.encode())
    assert answer.status_code == 200 and answer.json()["id"] == echoed, answer.text
    assert "jobs" in answer.json()["result"]


def test_a_param_number_that_does_not_fit_is_an_invalid_param(client: httpx.Client) -> None:
    for raw in ("1e400", "-1e400", "9" * 5000):
        body = f'{{"jsonrpc":"2.0","method":"job.list","params":{{"limit":{raw}}},"id":3}}'
        answer = post_raw(client, body.encode()).json()
        assert answer["id"] == 3 and answer["error"]["code"] == -32602, answer
        assert answer["error"]["data"]["field"] == "limit"


# -- timeouts ---------------------------------------------------------------------------------


def test_a_stalled_body_times_out(server: Server) -> None:
    app = create_app(server.application, token=None, read_timeout=0.5)
    with running(app) as url:
        port = _port(url)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                f"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
                '{"jsonrpc": "2.0",'.encode()
            )
            started = time.monotonic()
            # Meanwhile the server answers others.
            assert httpx.get(f"{url}/health", timeout=5).status_code == 200
            received = b""
            while chunk := sock.recv(65536):  # the server closes the connection after answering
                received += chunk
            assert time.monotonic() - started < 5
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), received
        assert json.loads(body)["error"]["data"]["kind"] == "timeout"


# -- ports ------------------------------------------------------------------------------------


def _daeda(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DAEDA), *args], capture_output=True, text=True, timeout=60, check=False, **kw
    )


@pytest.mark.parametrize("port", ["99999", "65536", "-1"])
def test_serve_api_refuses_a_port_out_of_range(server: Server, port: str) -> None:
    proc = _daeda("serve-api", "--workspace", str(server.workspace), "--port", port)
    assert proc.returncode == 5, proc.stderr
    assert port in proc.stderr and "1-65535" in proc.stderr, proc.stderr


def test_serve_api_reports_a_port_in_use(server: Server) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = _daeda("serve-api", "--workspace", str(server.workspace), "--port", str(port))
    assert proc.returncode == 7, proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr and "in use" in proc.stderr, proc.stderr


def test_serve_api_on_port_0_prints_its_port_and_takes_added_hosts(server: Server) -> None:
    env = {**os.environ, "DAEDA_ALLOW_HOSTS": "from-env.internal, second.internal"}
    env.pop("DAEDA_API_TOKEN", None)
    proc = subprocess.Popen(
        [
            str(DAEDA),
            "serve-api",
            "--workspace",
            str(server.workspace),
            "--port",
            "0",
            "--allow-host",
            "api.internal",
            "--allow-host",
            "api2.internal",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = ""
        deadline = time.monotonic() + 60
        while "listening on" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "the server exited"
            assert time.monotonic() < deadline
        url = line.split("listening on ", 1)[1].split()[0].rstrip("/")
        port = _port(url)
        assert url == f"http://127.0.0.1:{port}" and port > 0
        with httpx.Client(base_url=url, timeout=30) as c:
            for name in ("api.internal", "api2.internal", "from-env.internal", "second.internal"):
                answer = c.get("/health", headers={"Host": f"{name}:{port}"})
                assert answer.status_code == 200, (name, answer.text)
            assert c.get("/health", headers={"Host": f"evil.example:{port}"}).status_code == 421
            assert (
                "services"
                in c.post(
                    "/rpc", json={"jsonrpc": "2.0", "method": "catalog.list", "id": 1}
                ).json()["result"]
            )
    finally:
        proc.terminate()
        proc.wait(15)


# -- the catalog is parsed once while it does not change -------------------------------------


def _quiet() -> None:
    """Let an edit age past the cache's racy-timestamp margin (so the next parse is kept)."""
    time.sleep(0.2)


def test_an_unchanged_catalog_is_parsed_once(client: httpx.Client, server: Server) -> None:
    result(client, "catalog.list")
    before = server.catalog.parses
    for _ in range(5):
        result(client, "service.schema", {"service": SERVICE})
        result(client, "catalog.list")
        result(client, "pipeline.compile", {"service": SERVICE})
        result(client, "catalog.validate")
    assert server.catalog.parses == before


def test_concurrent_requests_after_an_edit_parse_it_once(
    client: httpx.Client, server: Server
) -> None:
    path = server.workspace / "feature_views" / "profiles.yaml"
    original = path.read_text()
    try:
        path.write_text(original + "# an edit\n")
        _quiet()
        before = server.catalog.parses

        async def go() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
                body = {"jsonrpc": "2.0", "method": "catalog.list", "id": 1}
                return await asyncio.gather(*(c.post("/rpc", json=body) for _ in range(50)))

        answers = asyncio.run(go())
        assert all("services" in a.json()["result"] for a in answers)
        assert server.catalog.parses == before + 1
    finally:
        path.write_text(original)


def test_a_catalog_edited_while_serving_is_read_on_the_next_request(
    client: httpx.Client, server: Server
) -> None:
    catalog = server.workspace / "feature_views"
    path = catalog / "artwork_popularity.yaml"
    original = path.read_text()
    added = catalog / "zz_added.yaml"
    try:
        result(client, "catalog.list")
        parses = server.catalog.parses
        # Same size, same second: only the content (and the mtime's nanoseconds) differ.
        path.write_text(original.replace("Rolling popularity", "Rolling_popularity"))
        described = result(client, "catalog.describe", {"name": "artwork_popularity"})
        assert described["definition"]["description"].startswith("Rolling_popularity")
        assert server.catalog.parses > parses
        _quiet()
        result(client, "catalog.list")
        parses = server.catalog.parses
        result(client, "catalog.list")
        assert server.catalog.parses == parses
        # An added file is read; a broken one is reported, then its removal is seen.
        added.write_text(original.replace("name: artwork_popularity", "name: artwork_copy"))
        names = [v["name"] for v in result(client, "catalog.list")["views"]]
        assert "artwork_copy" in names
        added.write_text("kind: [\n")
        err = error(client, "catalog.list")
        assert err["code"] == -32003 and err["data"]["errors"][0]["file"].endswith("zz_added.yaml")
        added.unlink()
        names = [v["name"] for v in result(client, "catalog.list")["views"]]
        assert "artwork_copy" not in names and "artwork_popularity" in names
    finally:
        added.unlink(missing_ok=True)
        path.write_text(original)
    assert result(client, "catalog.validate")["ok"] is True


def test_the_previewed_timestamps_are_iso_8601(
    client: httpx.Client, trained: dict[str, Any]
) -> None:
    columns = result(client, "service.schema", {"service": SERVICE})["columns"]
    stamps = [c["name"] for c in columns if c["type"].startswith("TIMESTAMP")]
    assert stamps
    rows = result(client, "days.preview", {"service": SERVICE, "day": FIRST, "limit": 20})["rows"]
    values = [row[name] for row in rows for name in stamps if row[name] is not None]
    assert values and {name for name in stamps if rows[0][name] is not None}
    for value in values:
        assert isinstance(value, str) and re.fullmatch(
            r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", value
        ), value
