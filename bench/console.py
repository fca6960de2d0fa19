#!/usr/bin/env python3
"""The web console in Debian's Chromium: warm page load and click → updated view.

Starts a ``turnout serve`` test bed (``turnout.testing.console``: two echo services,
two paused Releases, a Runbook step waiting for approval, a sandbox with keyed
requests), logs in, loads every page once (cold), then ``--rounds`` more times and
reports the browser's Navigation Timing (request start → load event) per page; and
times two interactions from the click to the updated view: a navigation-bar click
(→ the next page's heading) and saving an edited object (→ "saved" and the new
revision's page). Goals (issue 15): warm load < 300 ms, click → view < 100 ms.
Not a test: nothing is asserted. ``--screenshots DIR`` also writes one PNG per page
(the images of docs/console.md).

    .venv/bin/python bench/console.py [--rounds 20] [--screenshots docs/img/console]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from turnout.samples.echo import EchoIdentity, start_echo
from turnout.testing import BackgroundLoop
from turnout.testing.console import CHROMIUM, ConsoleBed, chromium_missing, login

PAGES = (
    ("overview", "/ui/"),
    ("routes", "/ui/routes"),
    ("sandboxes", "/ui/sandboxes?key=fx-demo"),
    ("releases", "/ui/releases"),
    ("incidents", "/ui/incidents?run={run}"),
    ("traces", "/ui/traces?id={request}"),
    ("configuration", "/ui/config?plural=httproutes"),
    ("object", "/ui/config/default/httproutes/orders"),
    ("revisions", "/ui/revisions?show=1"),
    ("audit", "/ui/audit"),
    ("tokens", "/ui/tokens"),
)


def traffic(bed: ConsoleBed, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        bed.get(f"/orders/{n}")
        bed.get("/legacy/x" if n % 10 == 0 else "/payments/x")
        if n % 50 == 0:  # the key's history keeps 200: the traced request stays findable
            bed.get("/orders/keyed", {"x-turnout-routing-key": "fx-demo"})
        time.sleep(0.01)


def setup(bed: ConsoleBed) -> dict[str, str]:
    sandbox = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {"name": "feature-x", "namespace": "default"},
        "spec": {
            "routingKey": "fx-demo",
            "ttl": "2h",
            "overrides": [
                {"backend": "orders", "endpoints": [{"address": f"127.0.0.1:{bed.candidate}"}]}
            ],
        },
    }
    bed.api("POST", "/api/v1/namespaces/default/sandboxes", sandbox, 201)
    time.sleep(1.0)
    bed.get("/orders/keyed", {"x-turnout-routing-key": "fx-demo"})
    time.sleep(1.5)  # the workers report their history once a second
    return {"run": bed.run_id}


def nav_ms(page: Any) -> float:
    t: float = page.evaluate(
        "() => { const n = performance.getEntriesByType('navigation')[0];"
        " return n.loadEventEnd - n.requestStart; }"
    )
    return t


def cpu_ms(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, in ms (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def dom_ms(page: Any) -> float:
    """Navigation start (the click; for a form, its POST and the 303) → DOMContentLoaded."""
    t: float = page.evaluate(
        "() => performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"
    )
    return t


def summary(values: list[float]) -> str:
    q = statistics.quantiles(values, n=10) if len(values) >= 2 else values * 9
    return f"median {statistics.median(values):6.1f} ms   p90 {q[-1]:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--screenshots", type=Path, default=None)
    args = parser.parse_args()
    missing = chromium_missing()
    if missing:
        sys.exit(f"cannot run: {missing}")
    from playwright.sync_api import sync_playwright

    bg = BackgroundLoop()
    _, stable = bg.run(start_echo(identity=EchoIdentity("default", "orders-1", "orders-1")))
    _, candidate = bg.run(start_echo(identity=EchoIdentity("default", "orders-2", "orders-2")))
    bed = ConsoleBed(Path(tempfile.mkdtemp(prefix="console-bench-")), stable.port, candidate.port)
    bed.start()
    stop = threading.Event()
    worker = threading.Thread(target=traffic, args=(bed, stop), daemon=True)
    try:
        ids = setup(bed)
        worker.start()
        time.sleep(6)  # a few points on the charts
        admin = bed.server.admin
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                page.goto(admin + "/ui/login")
                page.screenshot(path=str(args.screenshots / "login.png"))
            login(page, admin, bed.server.token)
            if args.screenshots:  # let the overview's charts fill a little first
                page.goto(admin + "/ui/")
                page.wait_for_timeout(30_000)
            _, recent = bed.server.api("GET", "/api/v1/trace?key=fx-demo")
            ids["request"] = recent["items"][-1]["requestId"]
            urls = [(name, admin + path.format(**ids)) for name, path in PAGES]
            for name, url in urls:  # cold: fills the browser's cache
                page.goto(url)
                if args.screenshots:
                    page.wait_for_timeout(2500 if name == "overview" else 200)
                    page.screenshot(path=str(args.screenshots / f"{name}.png"))
            if args.screenshots:  # "try a request" on the routes page
                page.goto(admin + "/ui/routes")
                page.fill("#explain-form input[name=url]", bed.gateway + "/orders/42")
                page.click("#explain-form button")
                page.wait_for_selector("#explain")
                page.screenshot(path=str(args.screenshots / "explain.png"))
                page.goto(admin + "/ui/config/default/httproutes/orders")  # a located error
                text = page.locator("#yaml").input_value()
                page.locator("#yaml").fill(text.replace("type: PathPrefix", "type: Prefix", 1))
                page.click("#save")
                page.wait_for_selector("#problems")
                page.screenshot(path=str(args.screenshots / "object-error.png"))
            print(f"warm page load (Navigation Timing, request → load event), {args.rounds} rounds")
            print("  (server CPU: the supervisor's user+system time per load, /proc, which")
            print("   includes its other work: stats, health, reconcilers)")
            every: list[float] = []
            pid = bed.server.proc.pid if bed.server.proc else 0
            for name, url in urls:
                times = []
                cpu0 = cpu_ms(pid)
                for _ in range(args.rounds):
                    page.goto(url)
                    times.append(nav_ms(page))
                cpu = (cpu_ms(pid) - cpu0) / args.rounds
                every += times
                print(f"  {name:<14} {summary(times)}   server CPU {cpu:5.1f} ms")
            print(f"  {'all pages':<14} {summary(every)}")
            # Click → updated view, two ways: in the browser (the new document's Navigation
            # Timing, from the click's navigation start to DOMContentLoaded: what a user
            # waits for) and from outside (playwright's click + wait, which adds its own
            # round trips to the browser).
            clicks: list[float] = []
            inside: list[float] = []
            for i in range(args.rounds):
                page.goto(admin + ("/ui/routes" if i % 2 else "/ui/revisions"))
                target = "Revisions" if i % 2 else "Routes"
                t0 = time.perf_counter()
                page.click(f"header nav >> text={target}")
                page.wait_for_selector(f"h1:has-text('{target}')")
                clicks.append((time.perf_counter() - t0) * 1000)
                inside.append(dom_ms(page))
            print("click → updated view")
            print(f"  navigation click, in the browser   {summary(inside)}")
            print(f"  navigation click, from playwright  {summary(clicks)}")
            saves: list[float] = []
            saves_inside: list[float] = []
            page.goto(admin + "/ui/config/default/backends/orders")
            for i in range(args.rounds):
                doc = yaml.safe_load(page.locator("#yaml").input_value())
                doc["metadata"].setdefault("labels", {})["round"] = str(i)
                edited = yaml.safe_dump(doc, sort_keys=False)
                page.locator("#yaml").fill(edited)
                t0 = time.perf_counter()
                page.click("#save")
                page.wait_for_selector("#done:has-text('saved')")
                saves.append((time.perf_counter() - t0) * 1000)
                saves_inside.append(dom_ms(page))
            print(f"  save an edit, in the browser       {summary(saves_inside)}")
            print(f"  save an edit, from playwright      {summary(saves)}")
            browser.close()
    finally:
        stop.set()
        if worker.is_alive():
            worker.join(timeout=10)
        bed.stop()
        bg.close()


if __name__ == "__main__":
    main()
