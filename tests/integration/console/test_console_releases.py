"""The Releases page over HTTP (httpx into the real admin app, real store and tokens):
an Environment's queue with positions and why each release waits, ``dependsOn``, a due
approval gate with its Approve button, and pause/resume of the queue; a viewer sees
the same page without any button and is refused a forged write."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from fastapi import FastAPI

from tests.integration.console.test_console_http import audit, client, login, run
from tests.integration.console.test_console_http import pytestmark as needs_vendor
from turnout.control.service import ControlPlane
from turnout.testing.manifests import backend

pytestmark = needs_vendor  # skips, saying why, without the browser libraries


def release(name: str, stable: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "backend": stable,
            "candidate": {"backend": f"{name}-c"},
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
            **spec,
        },
    }


ENVIRONMENT = {
    "apiVersion": "turnout.dev/v1alpha1",
    "kind": "Environment",
    "metadata": {"name": "prod"},
    "spec": {"namespaces": ["default"]},
}


async def seed(c: Any, admin: str, control: ControlPlane) -> None:
    """orders-v2 live at a due ``qa`` gate, orders-v3 queued behind it, and payments-v2
    waiting (``dependsOn``) for orders-v2 to be promoted."""
    control.start_background()  # the reconcilers, as the supervisor runs them
    manifests = [
        ENVIRONMENT,
        *(backend(f"{n}-c", 9) for n in ("orders-v2", "orders-v3", "payments-v2")),
        release("orders-v2", "orders", approvals=[{"name": "qa", "type": "confirm-rollout"}]),
        release("orders-v3", "orders"),
        release("payments-v2", "payments", dependsOn=["orders-v2"]),
    ]
    auth = {"authorization": f"Bearer {admin}"}
    r = await c.post("/api/v1/apply", json={"manifests": manifests}, headers=auth)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 20
    while True:  # the release reconciler runs on its own: wait for orders-v2 to start
        r = await c.get("/api/v1/namespaces/default/releases/orders-v2/state", headers=auth)
        if r.json()["dueApprovals"]:
            return
        assert time.monotonic() < deadline, str(r.json())
        await asyncio.sleep(0.1)


def test_the_queue_trains_and_a_due_gate_are_shown_and_an_editor_acts_on_them(
    tmp_path: Any,
) -> None:
    async def body(app: FastAPI, control: ControlPlane, tokens: dict[str, str]) -> None:
        async with client(app) as c:
            await seed(c, tokens["admin"], control)
            csrf = await login(c, tokens["editor"])
            page = (await c.get("/ui/releases")).text
            queue = page[page.index('id="queue-prod"') : page.index("</section>")]
            assert "namespaces default" in queue and 'data-paused="false"' in queue
            live = re.search(r'<tr class="active">.*?</tr>', queue)
            assert live and "default/orders-v2" in live.group(0)
            rows = re.findall(r'<tr class="queued">(.*?)</tr>', queue)
            by_name = {re.search(r"default/[\w-]+", r).group(0): r for r in rows}  # type: ignore[union-attr]
            assert set(by_name) == {"default/orders-v3", "default/payments-v2"}
            assert "orders-v2 is Progressing on backend orders" in by_name["default/orders-v3"]
            assert "waiting for release default/orders-v2" in by_name["default/payments-v2"]
            assert 'class="depends">depends on: orders-v2' in page
            assert "<strong>qa</strong> (confirm-rollout)" in page
            assert 'id="approve-orders-v2-qa"' in page and 'id="pause-queue-prod"' in page

            r = await c.post(
                "/ui/release-queues/prod/pause", data={"csrf": csrf, "reason": "freeze"}
            )
            assert r.status_code == 303 and "pause%3A+queue+prod" in r.headers["location"]
            page = (await c.get("/ui/releases")).text
            assert "paused by token:editor: freeze" in page and 'id="resume-queue-prod"' in page
            r = await c.post("/ui/release-queues/prod/resume", data={"csrf": csrf})
            assert r.status_code == 303
            assert 'data-paused="false"' in (await c.get("/ui/releases")).text
            r = await c.post("/ui/release-queues/prod/explode", data={"csrf": csrf})
            assert r.status_code == 404
            r = await c.post("/ui/release-queues/staging/pause", data={"csrf": csrf})
            assert r.status_code == 404 and "staging" in r.text  # the API's answer

            r = await c.post(
                "/ui/releases/default/orders-v2/approve", data={"csrf": csrf, "gate": "qa"}
            )
            assert r.status_code == 303 and "approve+qa" in r.headers["location"]
            auth = {"authorization": f"Bearer {tokens['admin']}"}
            history = await c.get(
                "/api/v1/namespaces/default/releases/orders-v2/history", headers=auth
            )
            top = history.json()["items"][0]
            assert top["actor"] == "token:editor" and top["message"].startswith("approve qa")
            r = await c.post(
                "/ui/releases/default/orders-v2/approve", data={"csrf": csrf, "gate": "nope"}
            )
            assert r.status_code == 409 and "no approval gate" in r.text
            r = await c.post("/ui/release-queues/prod/pause", data={"reason": "no csrf"})
            assert r.status_code == 403
            entries = await audit(c, tokens["admin"], control)
            assert any(a["actor"] == "token:editor" and "approve" in str(a) for a in entries)

    run(tmp_path, body)


def test_a_viewer_sees_the_queue_but_no_buttons_and_is_refused_a_forged_pause(
    tmp_path: Any,
) -> None:
    async def body(app: FastAPI, control: ControlPlane, tokens: dict[str, str]) -> None:
        async with client(app) as c:
            await seed(c, tokens["admin"], control)
            csrf = await login(c, tokens["viewer"])
            page = (await c.get("/ui/releases")).text
            assert 'id="queue-prod"' in page and "<strong>qa</strong>" in page
            assert "<button" not in page.split("<main", 1)[1]
            r = await c.post("/ui/release-queues/prod/pause", data={"csrf": csrf})
            assert r.status_code == 403 and "needs editor" in r.text
            r = await c.post(
                "/ui/releases/default/orders-v2/approve", data={"csrf": csrf, "gate": "qa"}
            )
            assert r.status_code == 403
            auth = {"authorization": f"Bearer {tokens['admin']}"}
            q = (await c.get("/api/v1/release-queues/prod", headers=auth)).json()
            assert q["paused"] is None

    run(tmp_path, body)
