"""push uploads the generated dashboards into a Grafana folder idempotently, through grafana-client.

The Grafana is an aiohttp.web app on 127.0.0.1 that implements the endpoints
grafana-client calls (``GET``/``POST /api/folders``, ``POST /api/dashboards/db``)
with Grafana's semantics: bearer-token check, folder UID conflicts (409), and a
dashboard with an existing UID refused (412) unless ``overwrite`` is true. It
records every request.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from dashboards.build import DASHBOARDS, JSON_DIR
from dashboards.push import PushError, folder_uid_for, push, token_from_env
from monitor.testing.broker import free_port

TOKEN = "glsa_test_token_0123456789"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FakeGrafana:
    """State of the impersonated Grafana and the requests it received."""

    url: str = ""
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)  # <uid: folder>
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # <uid: stored body>
    requests: list[tuple[str, str, Any]] = field(default_factory=list)  # (method, path, json)

    def calls(self, method: str, path: str) -> list[Any]:
        return [body for m, p, body in self.requests if (m, p) == (method, path)]


def _app(state: FakeGrafana) -> web.Application:
    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        state.requests.append((request.method, request.path, body))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"message": "invalid API key"}, status=401)
        return await handler(request)

    async def list_folders(request: web.Request) -> web.Response:
        return web.json_response([{"id": f["id"], "uid": uid, "title": f["title"]}
                                  for uid, f in state.folders.items()])

    async def create_folder(request: web.Request) -> web.Response:
        body = await request.json()
        uid = body.get("uid") or f"gen{len(state.folders)}"
        if uid in state.folders:
            return web.json_response({"message": "a folder with the same uid already exists"},
                                     status=409)
        state.folders[uid] = {"id": len(state.folders) + 1, "title": body["title"]}
        return web.json_response({"id": state.folders[uid]["id"], "uid": uid,
                                  "title": body["title"], "version": 1})

    async def save_dashboard(request: web.Request) -> web.Response:
        body = await request.json()
        dashboard = body["dashboard"]
        uid = dashboard["uid"]
        if body.get("folderUid") not in state.folders:
            return web.json_response({"message": "folder not found"}, status=400)
        previous = state.dashboards.get(uid)
        if previous is not None and not body.get("overwrite"):
            return web.json_response({"status": "name-exists", "message": "exists"}, status=412)
        version = previous["version"] + 1 if previous else 1
        state.dashboards[uid] = {"folderUid": body["folderUid"], "title": dashboard["title"],
                                 "version": version, "message": body.get("message")}
        return web.json_response({"id": len(state.dashboards), "uid": uid, "status": "success",
                                  "version": version, "url": f"/d/{uid}/x"})

    app = web.Application(middlewares=[auth])
    app.router.add_get("/api/folders", list_folders)
    app.router.add_post("/api/folders", create_folder)
    app.router.add_post("/api/dashboards/db", save_dashboard)
    return app


@pytest.fixture
async def grafana() -> AsyncIterator[FakeGrafana]:
    """A Grafana API impersonation listening on 127.0.0.1."""
    state = FakeGrafana()
    runner = web.AppRunner(_app(state))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


async def test_push_twice_creates_the_folder_once_and_overwrites_by_uid(grafana: FakeGrafana) -> None:
    """The first push creates folder 'cardmon' and uploads the three dashboards; the second creates nothing and resends the same UIDs with overwrite."""
    first = await asyncio.to_thread(push, grafana.url, TOKEN, folder="cardmon")
    assert first.folder_created and first.folder_uid == "cardmon"
    assert list(first.dashboards) == sorted(DASHBOARDS)  # file-name order
    assert first.dashboards["cardmon-pipeline"] == "/d/cardmon-pipeline/x"

    second = await asyncio.to_thread(push, grafana.url, TOKEN, folder="cardmon")
    assert not second.folder_created and second.folder_uid == "cardmon"

    assert grafana.calls("POST", "/api/folders") == [{"title": "cardmon", "uid": "cardmon"}]
    uploads = grafana.calls("POST", "/api/dashboards/db")
    assert [u["dashboard"]["uid"] for u in uploads] == sorted(DASHBOARDS) * 2
    assert all(u["overwrite"] is True and u["folderUid"] == "cardmon" for u in uploads)
    assert all(u["dashboard"]["id"] is None for u in uploads)
    # Grafana ends with three dashboards, each at version 2, not six.
    assert {uid: d["version"] for uid, d in grafana.dashboards.items()} == dict.fromkeys(DASHBOARDS, 2)
    # What is sent is the committed JSON (plus id None), byte-for-byte in content.
    committed = json.loads((JSON_DIR / "cardmon-fleet-health.json").read_text(encoding="utf-8"))
    assert uploads[0]["dashboard"] == {**committed, "id": None}


async def test_push_reuses_an_existing_folder_with_the_same_title(grafana: FakeGrafana) -> None:
    """A folder titled like the target but with another UID is reused, not duplicated."""
    grafana.folders["abc123"] = {"id": 7, "title": "Card monitoring"}
    result = await asyncio.to_thread(push, grafana.url, TOKEN, folder="Card monitoring")
    assert (result.folder_uid, result.folder_created) == ("abc123", False)
    assert grafana.calls("POST", "/api/folders") == []
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {"abc123"}


async def test_push_with_a_wrong_token_fails_naming_the_step(grafana: FakeGrafana) -> None:
    """A token Grafana refuses raises PushError at the folder step and uploads nothing."""
    with pytest.raises(PushError, match="listing Grafana folders failed"):
        await asyncio.to_thread(push, grafana.url, "wrong", folder="cardmon")
    assert grafana.dashboards == {} and grafana.folders == {}


async def test_push_to_an_unreachable_grafana_raises_push_error() -> None:
    """Nothing listening at the URL gives PushError, not a library exception."""
    with pytest.raises(PushError, match="listing Grafana folders failed"):
        await asyncio.to_thread(push, f"http://127.0.0.1:{free_port()}", TOKEN, timeout=2)


async def test_push_refuses_an_empty_json_folder(tmp_path: Path, grafana: FakeGrafana) -> None:
    """A folder without generated JSON is an error before any request is made."""
    with pytest.raises(PushError, match="no dashboard JSON"):
        await asyncio.to_thread(push, grafana.url, TOKEN, directory=tmp_path)
    assert grafana.requests == []


def test_token_comes_from_grafana_token_then_grafana_api_key() -> None:
    """GRAFANA_TOKEN wins over GRAFANA_API_KEY; blank values count as unset."""
    assert token_from_env({"GRAFANA_TOKEN": "a", "GRAFANA_API_KEY": "b"}) == "a"
    assert token_from_env({"GRAFANA_TOKEN": " ", "GRAFANA_API_KEY": "b"}) == "b"
    assert token_from_env({}) is None


def test_folder_uid_is_a_stable_slug_of_the_title() -> None:
    """Folder UIDs are lower-case slugs of at most 40 characters; a title without letters is refused."""
    assert folder_uid_for("cardmon / Operations") == "cardmon-operations"
    assert len(folder_uid_for("x" * 80)) == 40
    with pytest.raises(ValueError):
        folder_uid_for(" / ")


def test_push_imports_without_grafana_foundation_sdk() -> None:
    """`dashboards.push` (the runtime command) works where the SDK, a build-time extra, is absent."""
    code = ("import sys; sys.modules['grafana_foundation_sdk'] = None\n"
            "import dashboards, dashboards.push\n"
            "print(dashboards.JSON_DIR.name, dashboards.DATASOURCE_UID)")
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["json", "cardmon-prometheus"]
