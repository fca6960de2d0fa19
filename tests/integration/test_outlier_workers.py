"""Outlier ejection is per host, not per worker (issue 20 item 5): with two workers the
failures users see before an endpoint is out everywhere equal the consecutive-5xx
threshold, and the one ejection shows once in the metrics and in the Backend's status."""

from __future__ import annotations

from collections import Counter

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.requests import get


def test_two_workers_share_one_ejection(serve: ServeFactory, port: int, echo: EchoFactory) -> None:
    good, bad = echo("good-0"), echo("bad-0")
    bad.force_status = 500
    passive = {"consecutive5XxErrors": 3, "baseEjectionTime": "5m", "maxEjectionPercent": 50}
    b = backend("shop", good.port, bad.port, healthCheck={"passive": passive})
    proc = serve(dump(gateway(port=port), b, route("r", [to("shop")])), workers=2)
    assert len(proc.worker_pids()) == 2
    # A new connection per request: the kernel spreads them over both workers, so with
    # ejections per worker each of them would let three failures through.
    statuses = Counter(get(port, "/").status for _ in range(60))
    assert statuses[500] == 3, statuses
    assert statuses[200] == 57, statuses
    assert bad.requests == 3
    wait_until(
        lambda: proc.metric("turnout_outlier_ejections_total", backend="default/shop") == 1,
        10.0,
        "the one ejection to show in the metrics",
    )
    # ... and the endpoint's status and gauge say for how long it stays out
    bad_key = f"127.0.0.1:{bad.port}"
    assert 0 < proc.metric("turnout_endpoint_ejected_seconds", endpoint=bad_key) <= 300
    obj = proc.api("GET", "/api/v1/namespaces/default/backends/shop")[1]
    left = {e["address"]: e.get("ejectedFor") for e in obj["status"]["endpoints"]}
    assert left[f"127.0.0.1:{good.port}"] is None
    assert 0 < left[bad_key] <= 300
