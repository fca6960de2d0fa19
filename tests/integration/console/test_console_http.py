"""The console over HTTP without a browser: httpx into the real admin app (ASGI), a real
SQLite store and real tokens. Sessions, cookies, CSRF, RBAC, audit, the 503 without the
browser libraries, and a located validation error."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from turnout.control.console import mount_console
from turnout.control.service import ControlPlane
from turnout.control.store import open_store
from turnout.observe.metrics import Aggregate
from turnout.supervisor.admin import create_app
from turnout.testing.manifests import backend

pytestmark = pytest.mark.skipif(
    not (Path(__file__).parents[3] / "turnout/control/console/static/vendor/htmx.min.js").exists(),
    reason="the console's browser libraries are not installed (npm ci; see docs/console.md)",
)


class Source:
    def aggregate(self) -> Aggregate:
        return Aggregate()

    def status(self) -> dict[str, Any]:
        return {
            "ready": True,
            "revision": 0,
            "workers": [],
            "live_workers": 0,
            "worker_restarts": 0,
            "reloads_ok": 0,
            "reloads_failed": 0,
            "last_reload_error": "",
            "listeners": ["127.0.0.1:8080"],
            "storeRevision": 0,
            "certificates": [],
        }


Body = Callable[[FastAPI, ControlPlane, dict[str, str]], Awaitable[None]]


def run(tmp_path: Path, body: Body) -> None:
    async def main() -> None:
        store = await open_store(f"sqlite:///{tmp_path}/t.db")
        plane: list[ControlPlane] = []

        async def reload(reason: str) -> bool:  # what the supervisor does: the view follows
            plane[0].desired()
            return True

        control = ControlPlane(
            store, data_dir=tmp_path, on_change=reload, runtime=lambda: {"workers": []}
        )
        plane.append(control)
        await control.start()
        try:
            app = create_app(Source(), control)
            admin = (tmp_path / "admin-token").read_text().strip()
            tokens = {"admin": admin}
            async with client(app) as c:
                for role in ("viewer", "editor"):
                    r = await c.post(
                        "/api/v1/tokens",
                        json={"name": role, "role": role},
                        headers={"authorization": f"Bearer {admin}"},
                    )
                    assert r.status_code == 201, r.text
                    tokens[role] = r.json()["token"]
                for name in ("orders", "payments"):
                    r = await c.post(
                        "/api/v1/namespaces/default/backends",
                        json=backend(name, 9),
                        headers={"authorization": f"Bearer {admin}"},
                    )
                    assert r.status_code == 201, r.text
            await body(app, control, tokens)
        finally:
            # audit records are written in the background: let them land before closing
            await asyncio.gather(*control.audit_log.tasks, return_exceptions=True)
            await control.close()

    asyncio.run(main())


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.9", 4242)),
        base_url="http://admin",
    )


async def login(c: httpx.AsyncClient, token: str) -> str:
    """Log in; returns the page's CSRF token."""
    r = await c.post("/ui/login", data={"token": token})
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    page = await c.get("/ui/sandboxes")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


async def audit(c: httpx.AsyncClient, admin: str, control: ControlPlane) -> list[dict[str, Any]]:
    """The audit log, once the records written in the background have landed."""
    await asyncio.gather(*control.audit_log.tasks)
    r = await c.get("/api/v1/audit", headers={"authorization": f"Bearer {admin}"})
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_login_sets_a_strict_httponly_cookie_and_logout_ends_the_session(tmp_path: Path) -> None:
    async def body(app: FastAPI, control: ControlPlane, tokens: dict[str, str]) -> None:
        async with client(app) as c:
            r = await c.get("/ui/")
            assert r.status_code == 303 and r.headers["location"] == "/ui/login"
            r = await c.post("/ui/login", data={"token": "tnt_nope"})
            assert r.status_code == 401 and "token" in r.text
            r = await c.post("/ui/login", data={"token": "x" * 10_000})
            assert r.status_code == 413  # not read into memory: the form is too long
            r = await c.post("/ui/login", data={"token": tokens["viewer"]})
            cookie = r.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
            assert "max-age=28800" in cookie
            assert tokens["viewer"] not in r.headers["set-cookie"]  # the token stays here
            page = await c.get("/ui/")
            assert page.status_code == 200
            csp = page.headers["content-security-policy"]
            assert "script-src 'self';" in csp and "unsafe-eval" not in csp
            assert "<script>" not in page.text  # no inline script anywhere
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert csrf
            old = c.cookies.get("turnout_session")
            r = await c.post("/ui/logout", data={"csrf": csrf.group(1)})
            assert r.status_code == 303 and r.headers["location"] == "/ui/login"
            c.cookies.set("turnout_session", old or "", path="/ui")
            assert (await c.get("/ui/")).status_code == 303  # the old id is dead
            actions = [(a["action"], a["result"]) for a in await audit(c, tokens["admin"], control)]
            assert ("login", "ok") in actions and ("logout", "ok") in actions

    run(tmp_path, body)


def test_sessions_expire(tmp_path: Path) -> None:
    async def body(app: FastAPI, control: ControlPlane, tokens: dict[str, str]) -> None:
        console = app.state.console
        now = [1000.0]
        console.sessions.clock = lambda: now[0]
        async with client(app) as c:
            await login(c, tokens["viewer"])
            now[0] += console.sessions.ttl - 1
            assert (await c.get("/ui/")).status_code == 200
            now[0] += 1
            assert (await c.get("/ui/")).status_code == 303

    run(tmp_path, body)


def test_every_write_needs_the_csrf_token(tmp_path: Path) -> None:
    async def body(app: FastAPI, control: ControlPlane, tokens: dict[str, str]) -> None:
        async with client(app) as c:
            csrf = await login(c, tokens["editor"])
            form = {"name": "fx", "namespace": "default", "override": "orders", "ttl": "1h"}
            for bad in ({}, {"csrf": "wrong"}, {"csrf": csrf[:-1]}):
                r = await c.post("/ui/sandboxes", data={**form, **bad})
                assert r.status_code == 403 and "CSRF" in r.text
            # the right token, but posted by another site's page
            r = await c.post("/ui/sandboxes", data={**form, "csrf": csrf},
                             headers={"origin": "https://evil.example"})  # fmt: skip
            assert r.status_code == 403
            r = await c.post("/ui/login", data={"token": tokens["viewer"]},
                             headers={"origin": "https://evil.example"})  # fmt: skip
            assert r.status_code == 403 and "set-cookie" not in r.headers
            assert ("Sandbox", "default", "fx") not in control.stored
            two = {**form, "override": ["orders", "payments"], "address.orders": "127.0.0.1:9100"}
            r = await c.post("/ui/sandboxes", data=two, headers={"x-csrf-token": csrf})
            assert r.status_code == 303, r.text
            spec = control.stored[("Sandbox", "default", "fx")].spec
            assert spec["overrides"] == [
                {"backend": "orders", "endpoints": [{"address": "127.0.0.1:9100"}]},
                {"backend": "payments", "local": {}},
            ]
            assert spec["ttl"] == "1h"
            r = await c.post("/ui/sandboxes", data={"csrf": csrf, "name": "none"})
            assert r.status_code == 400 and "pick at least one backend" in r.text
            entries = await audit(c, tokens["admin"], control)
            create = next(a for a in entries if a["target"] == "Sandbox default/fx")
            assert create["actor"] == "token:editor" and create["result"] == "ok"
            assert create["remote"] == "127.0.0.9:4242"  # the browser's address, not ours
            page = (await c.get("/ui/sandboxes")).text
            assert "/ui/sandboxes/default/fx/delete" in page
            r = await c.post("/ui/sandboxes/default/fx/delete", data={"csrf": csrf})
            assert r.status_code == 303
            assert ("Sandbox", "default", "fx") not in control.stored
            refused = [a for a in entries if a["action"] == "console"]
            assert len(refused) == 4 and all(a["result"] == "forbidden" for a in refused)

    run(tmp_path, body)


def test_a_viewer_sees_no_write_controls_and_is_refused_if_it_tries(tmp_path: Path) -> None:
    async def body(app: FastAPI, control: ControlPlane, tokens: dict[str, str]) -> None:
        async with client(app) as c:
            csrf = await login(c, tokens["viewer"])
            page = (await c.get("/ui/sandboxes")).text
            assert 'id="create-sandbox"' not in page
            for path in ("/ui/revisions", "/ui/releases", "/ui/config/default/backends/orders"):
                text = (await c.get(path)).text
                assert "<textarea" not in text and "rollback-" not in text, path
            form = {
                "csrf": csrf,
                "name": "fx",
                "override": "orders",
                "address.orders": "127.0.0.1:1",
            }
            r = await c.post("/ui/sandboxes", data=form)
            assert r.status_code == 403 and "needs editor" in r.text
            assert ("Sandbox", "default", "fx") not in control.stored
            r = await c.post("/ui/rollback", data={"csrf": csrf, "revision": "1"})
            assert r.status_code == 403
            assert (await c.get("/ui/audit")).status_code == 403  # admin only, as in the API
            entries = await audit(c, tokens["admin"], control)
            assert any(a["actor"] == "token:viewer" and a["result"] == "forbidden" for a in entries)

    run(tmp_path, body)


def test_a_bad_edit_shows_located_errors_and_changes_nothing(tmp_path: Path) -> None:
    async def body(app: FastAPI, control: ControlPlane, tokens: dict[str, str]) -> None:
        async with client(app) as c:
            csrf = await login(c, tokens["editor"])
            page = (await c.get("/ui/config/default/backends/orders")).text
            assert "<textarea" in page
            before = control.store_revision
            text = (
                "apiVersion: turnout.dev/v1alpha1\nkind: Backend\n"
                "metadata: {name: orders, namespace: default}\n"
                "spec:\n  endpoints: [{address: '127.0.0.1:9'}]\n  colour: blue\n"
            )
            r = await c.post(
                "/ui/config/default/backends/orders", data={"csrf": csrf, "yaml": text}
            )
            assert r.status_code == 422
            assert 'class="bad-line"' in r.text and "line 6" in r.text and "colour" in r.text
            assert control.store_revision == before
            fixed = text.replace("  colour: blue\n", "")
            r = await c.post(
                "/ui/config/default/backends/orders", data={"csrf": csrf, "yaml": fixed + "\n"}
            )
            assert r.status_code == 303

    run(tmp_path, body)


def test_without_the_browser_libraries_every_ui_path_answers_503(tmp_path: Path) -> None:
    async def body(app: FastAPI, control: ControlPlane, tokens: dict[str, str]) -> None:
        bare = FastAPI()
        mount_console(bare, control, lambda: "", vendor=tmp_path / "empty")
        async with client(bare) as c:
            for path in ("/ui", "/ui/", "/ui/login", "/ui/static/console.js"):
                r = await c.get(path)
                assert r.status_code == 503 and "npm ci" in r.text, path

    run(tmp_path, body)


def test_an_admin_creates_a_token_sees_its_secret_once_and_revokes_it(tmp_path: Path) -> None:
    async def body(app: FastAPI, control: ControlPlane, tokens: dict[str, str]) -> None:
        async with client(app) as c:
            csrf = await login(c, tokens["admin"])
            r = await c.post("/ui/tokens", data={"csrf": csrf, "name": "ci", "role": "editor"})
            assert r.status_code == 200 and 'id="secret"' in r.text
            secret = re.search(r"(tnt_[A-Za-z0-9]{12}_[A-Za-z0-9]{32})", r.text)
            assert secret
            listing = (await c.get("/ui/tokens")).text
            assert secret.group(1) not in listing  # shown once, never again
            token_id = secret.group(1).split("_")[1]
            r = await c.post(f"/ui/tokens/{token_id}/revoke", data={"csrf": csrf})
            assert r.status_code == 303
            check = await c.get(
                "/api/v1/whoami", headers={"authorization": f"Bearer {secret.group(1)}"}
            )
            assert check.status_code == 401

    run(tmp_path, body)
