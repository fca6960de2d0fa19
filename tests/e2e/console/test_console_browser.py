"""The web console in a real browser (Debian's Chromium via playwright) against a real
``turnout serve``: log in, live numbers while traffic runs, a sandbox and its keyed
requests, promote and abort releases, pause a release queue, approve a runbook step,
a located edit error, a rollback, and a viewer refused a write. Each test is one user
story on one page."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EchoFactory
from turnout.testing.console import CHROMIUM, ConsoleBed, chromium_missing, login

missing = chromium_missing()
pytestmark = pytest.mark.skipif(missing is not None, reason=missing or "")

TIMEOUT = 15_000  # ms: the machine is shared; every wait is for a visible change


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory, echo_module: EchoFactory) -> Iterator[ConsoleBed]:
    stable = echo_module("orders-local-0")
    candidate = echo_module("orders-v2-local-0")
    found = ConsoleBed(tmp_path_factory.mktemp("console"), stable.port, candidate.port)
    found.start()
    yield found
    found.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, bed: ConsoleBed) -> Iterator[Any]:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT)
    found = context.new_page()
    errors: list[str] = []
    found.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield found
    context.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors


def expect() -> Any:
    from playwright.sync_api import expect as found

    found.set_options(timeout=TIMEOUT)
    return found


def test_log_in_and_see_live_numbers_change_while_traffic_runs(page: Any, bed: ConsoleBed) -> None:
    admin = bed.server.admin
    page.goto(f"{admin}/ui/")
    assert page.url.endswith("/ui/login")  # no session: the login page
    page.fill("#token", "tnt_wrong")
    page.click("#login")
    expect()(page.locator("#error")).to_contain_text("token")
    login(page, admin, bed.server.token)
    total = page.locator("table.live tr", has_text="default/orders").locator("td.total")
    expect()(total).to_be_visible()
    before = int(total.inner_text())
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            bed.get("/orders/1")

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        # htmx refreshes the table every 2 s: the count grows without a reload
        expect()(total).not_to_have_text(str(before))
        assert int(total.inner_text()) > before
        expect()(page.locator("#chart-rps canvas")).to_have_count(1)  # ECharts drew
    finally:
        stop.set()
        worker.join()


def test_create_a_sandbox_and_see_a_keyed_request_arrive(page: Any, bed: ConsoleBed) -> None:
    login(page, bed.server.admin, bed.server.token)
    page.click("text=Sandboxes")
    form = page.locator("#create-sandbox")
    form.locator("input[name=name]").fill("feature-x")
    form.locator("input[name=routingKey]").fill("fx-key")
    form.locator("#override-default-orders").check()
    form.locator("input[name='address.orders']").fill(f"127.0.0.1:{bed.candidate}")
    form.locator("button").click()
    expect()(page.locator("#done")).to_contain_text("created: sandbox default/feature-x")
    page.click("a.key:has-text('fx-key')")
    expect()(page.locator("#stream")).to_contain_text("no request with this key yet")
    assert bed.get("/orders/seen-by-the-sandbox", {"x-turnout-routing-key": "fx-key"}) == 200
    row = page.locator("#stream tr.req")
    expect()(row).to_contain_text("/orders/seen-by-the-sandbox")
    expect()(row).to_contain_text(f"127.0.0.1:{bed.candidate}")  # served by the override
    row.locator("a").click()  # its request flow, from the same history
    expect()(page.locator("#waterfall")).to_contain_text("/orders/seen-by-the-sandbox")
    page.goto(f"{bed.server.admin}/ui/traces?key=fx-key")  # the key's recent requests
    expect()(page.locator("table.stream")).to_contain_text("/orders/seen-by-the-sandbox")


def test_promote_one_release_and_abort_another(page: Any, bed: ConsoleBed) -> None:
    login(page, bed.server.admin, bed.server.token)
    page.goto(f"{bed.server.admin}/ui/releases")
    orders = page.locator("#release-default-orders-v2")
    expect()(orders.locator(".phase")).to_have_text("Paused")
    expect()(orders.locator(".weight")).to_have_text("20%")
    page.click("#promote-orders-v2")
    expect()(page.locator("#done")).to_contain_text("promote: default/orders-v2")
    expect()(orders.locator(".phase")).to_have_text("Promoted")
    expect()(orders.locator(".weight")).to_have_text("100%")
    payments = page.locator("#release-default-payments-v2")
    page.click("#abort-payments-v2")
    expect()(payments.locator(".phase")).to_have_text("Aborted")
    expect()(payments.locator(".weight")).to_have_text("0%")
    _, history = bed.server.api("GET", "/api/v1/namespaces/default/releases/payments-v2/history")
    assert any("abort" in str(h) for h in history["items"])


def test_pause_and_resume_an_environments_release_queue(page: Any, bed: ConsoleBed) -> None:
    environment = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": "prod"},
        "spec": {"namespaces": ["shop"]},  # its own namespace: the other stories' releases
    }
    bed.api("POST", "/api/v1/apply", {"manifests": [environment]}, 200)
    login(page, bed.server.admin, bed.server.token)
    page.goto(f"{bed.server.admin}/ui/releases")
    queue = page.locator("#queue-prod")
    expect()(queue.locator(".queue-state")).to_have_text("open")
    queue.locator("input[name=reason]").fill("code freeze")
    page.click("#pause-queue-prod")
    expect()(page.locator("#done")).to_contain_text("pause: queue prod")
    expect()(queue.locator(".queue-state")).to_contain_text("paused by")
    expect()(queue.locator(".queue-state")).to_contain_text("code freeze")
    _, found = bed.server.api("GET", "/api/v1/release-queues/prod")
    assert found["paused"]["reason"] == "code freeze"
    page.click("#resume-queue-prod")
    expect()(page.locator("#done")).to_contain_text("resume: queue prod")
    expect()(queue.locator(".queue-state")).to_have_text("open")
    _, found = bed.server.api("GET", "/api/v1/release-queues/prod")
    assert found["paused"] is None


def test_approve_a_pending_runbook_step(page: Any, bed: ConsoleBed) -> None:
    login(page, bed.server.admin, bed.server.token)
    page.click("text=Incidents")
    page.click(f"#approve-{bed.run_id}")
    expect()(page.locator("#done")).to_contain_text(f"approve: run {bed.run_id}")
    _, run = bed.server.api("GET", f"/api/v1/incidents/{bed.run_id}")
    assert run["state"] != "waiting_approval"
    page.goto(f"{bed.server.admin}/ui/incidents?run={bed.run_id}")
    expect()(page.locator(".timeline")).to_contain_text("approved")


def test_edit_a_route_with_an_error_see_it_located_then_roll_back(
    page: Any, bed: ConsoleBed
) -> None:
    login(page, bed.server.admin, bed.server.token)
    page.goto(f"{bed.server.admin}/ui/config/default/httproutes/orders")
    text = page.locator("#yaml").input_value()
    broken = text.replace("rules:", "rules:\n  - backendRefs: [{name: orders, wieght: 5}]", 1)
    page.locator("#yaml").fill(broken)
    page.click("#save")
    problems = page.locator("#problems")
    expect()(problems).to_contain_text("wieght")
    line = re.search(r"line (\d+)", problems.inner_text())
    assert line is not None
    bad = page.locator(".gutter li.bad-line")
    expect()(bad).to_have_text(line.group(1))  # the line is marked beside the text
    # a good edit, then roll it back from the revisions page
    fixed = text.replace("value: /orders", "value: /orders-renamed")
    assert fixed != text
    page.locator("#yaml").fill(fixed)
    page.click("#save")
    expect()(page.locator("#done")).to_have_text("saved")
    _, revs = bed.server.api("GET", "/api/v1/revisions")
    saved = revs["items"][0]["revision"]
    page.goto(f"{bed.server.admin}/ui/revisions?show={saved - 1}")
    expect()(page.locator("#diff")).to_contain_text("/orders-renamed")
    page.click(f"#rollback-{saved - 1}")
    expect()(page.locator("#done")).to_contain_text(f"rolled back to revision {saved - 1}")
    _, obj = bed.server.api("GET", "/api/v1/namespaces/default/httproutes/orders")
    assert "/orders-renamed" not in str(obj["spec"])


def test_a_viewer_sees_no_write_controls_and_is_refused_a_forged_write(
    page: Any, bed: ConsoleBed
) -> None:
    login(page, bed.server.admin, bed.viewer)
    expect()(page.locator("header .who")).to_contain_text("(viewer)")
    page.goto(f"{bed.server.admin}/ui/releases")
    expect()(page.locator("h1")).to_have_text("Releases")
    assert page.locator("button:has-text('Promote')").count() == 0
    page.goto(f"{bed.server.admin}/ui/sandboxes")
    assert page.locator("#create-sandbox").count() == 0
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    resp = page.request.post(
        f"{bed.server.admin}/ui/releases/default/orders-v2/abort", form={"csrf": csrf}
    )
    assert resp.status == 403 and "needs editor" in resp.text()
    _, audit = bed.server.api("GET", "/api/v1/audit")
    assert any(a["actor"] == "token:watcher" and a["result"] == "forbidden" for a in audit["items"])


def test_try_a_request_shows_explain(page: Any, bed: ConsoleBed) -> None:
    login(page, bed.server.admin, bed.viewer)  # a read: a viewer may
    page.click("header nav >> text=Routes")
    page.fill("#explain-form input[name=url]", f"{bed.gateway}/payments/1")
    page.click("#explain-form button")
    explained = page.locator("#explain")
    expect()(explained).to_contain_text("default/payments")
    expect()(explained).to_contain_text("is not under the prefix /orders")  # why not the others


def test_every_page_renders_for_an_admin(page: Any, bed: ConsoleBed, tmp_path: Path) -> None:
    login(page, bed.server.admin, bed.server.token)
    for name in ("Routes", "Traces", "Configuration", "Revisions", "Audit", "Tokens"):
        page.click(f"header nav >> text={name}")
        expect()(page.locator("h1")).to_be_visible()
        assert "Refused" not in page.locator("h1").inner_text(), name
