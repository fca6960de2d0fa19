"""Gateway API conformance (HTTPRoute, GRPCRoute) for Turnout: one pytest item per upstream test.

Runs the transcribed upstream tests of ``shared/conformance/gateway-api/cases.yaml``
against a real ``turnout serve`` and real echo backends; the environment is described in
``tests/conformance/harness.py``, the comparisons in ``tests/conformance/checks.py``, and
how to run it in ``docs/conformance.md``::

    pytest tests/conformance

Knobs (environment): ``TURNOUT_CONFORMANCE_DIR`` (suite data), ``TURNOUT_CONFORMANCE_NET``
(loopback /24 for Gateways, default ``127.0.1``), ``TURNOUT_CONFORMANCE_WINDOW`` (seconds
a case may take to become consistent, default 5; upstream 30),
``TURNOUT_CONFORMANCE_ALL=1`` (also run the tests in ``SKIPPED`` below, to see how far an
unclaimed feature has got), ``TURNOUT_CONFORMANCE_REPORT=FILE`` (write the results table
as Markdown).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.conformance.checks import CaseRunner, run_cases
from tests.conformance.conftest import Conformance
from tests.conformance.harness import RunnerError, Suite, load_suite
from tests.conformance.report import record

# --- what Turnout claims today ------------------------------------------------------------
#
# A test runs when it is transcribed, every feature it declares is in SUPPORTED_FEATURES,
# and it is not in SKIPPED. SKIPPED is the one table of tests reported as skipped, with
# the reason; the 11 tests upstream's transcription left out (status-only, ReferenceGrant,
# Service types) come from cases.yaml ``skipped:`` and are reported with its reason.

SUPPORTED_FEATURES = frozenset(
    {
        "Gateway",
        "HTTPRoute",
        "HTTPRouteMethodMatching",
        "HTTPRouteQueryParamMatching",
        "HTTPRouteResponseHeaderModification",
        "HTTPRouteBackendRequestHeaderModification",
        "HTTPRoute303RedirectStatusCode",
        "HTTPRoute307RedirectStatusCode",
        "HTTPRoute308RedirectStatusCode",
        "HTTPRoutePathRedirect",
        "HTTPRoutePortRedirect",
        "HTTPRouteSchemeRedirect",
        "GatewayPort8080",
        "HTTPRouteHostRewrite",
        "HTTPRoutePathRewrite",
        "HTTPRouteRequestTimeout",
        "HTTPRouteBackendTimeout",
        "GatewayHTTPListenerIsolation",
        "HTTPRouteParentRefPort",
        "HTTPRouteNamedRouteRule",
        "HTTPRouteBackendProtocolWebSocket",
        "HTTPRouteBackendRequestRedirect",
        "HTTPRouteBackendURLRewrite",
        "HTTPRouteRetry",
        "HTTPRouteRetryConnectionError",
        "HTTPRouteRetryBackendTimeout",
        "HTTPRouteRequestMirror",
        "HTTPRouteRequestMultipleMirrors",
        "HTTPRouteRequestPercentageMirror",
        "GatewayHTTPSListenerDetectMisdirectedRequests",
        "HTTPRouteBackendProtocolH2C",
        "GRPCRoute",
        "GRPCRouteNamedRouteRule",
        "GRPCRouteRequestHeaderModifier",
    }
)

SKIPPED: dict[str, str] = {
    "HTTPRouteCORS": "the CORS filter is not supported yet",
}

# Cases inside an otherwise runnable test that need a feature Turnout lacks (none today). A
# test whose other cases all pass is then reported as skipped ("partial"), never as passed.
# H2 (HTTP/2 over TLS) cases are not listed here: the runner skips them at run time while the
# gateway's ALPN does not select h2 (checks.CaseRunner.h2_skip).


def case_skip_reason(case: dict[str, Any]) -> str:
    req = case["request"]
    if req.get("protocol", "HTTP/1.1") not in ("HTTP/1.1", "H2", "H2C"):
        return f"{req['protocol']} from the client is not supported yet"
    return ""


RUN_ALL = os.environ.get("TURNOUT_CONFORMANCE_ALL", "") not in ("", "0")

SUITE: Suite | None = load_suite()
NAMES: list[str] = sorted([*SUITE.tests, *SUITE.not_transcribed]) if SUITE else ["<suite>"]


def skip_reason(suite: Suite | None, name: str) -> str:
    if suite is None:
        return "Gateway API conformance data not found (set TURNOUT_CONFORMANCE_DIR)"
    if name in suite.not_transcribed:
        return "not transcribed (cases.yaml skipped:): " + suite.not_transcribed[name]["reason"]
    if RUN_ALL:
        return ""
    if name in SKIPPED:
        return SKIPPED[name]
    missing = sorted(set(suite.tests[name]["features"]) - SUPPORTED_FEATURES)
    if missing:
        return f"feature(s) not claimed: {', '.join(missing)}"
    return ""


@pytest.mark.parametrize("name", NAMES)
def test_gateway_api(name: str, request: pytest.FixtureRequest) -> None:
    reason = skip_reason(SUITE, name)
    if reason:
        record(name, "skip", reason=reason)
        pytest.skip(reason)
    env: Conformance = request.getfixturevalue("conformance")
    test = env.suite.tests[name]
    problem = ""
    try:
        env.gateway.apply(test)
    except RunnerError as exc:
        problem = str(exc)
    if problem:
        n = len(test["cases"])
        record(name, "fail", cases=n, failed=n, reason="manifests not served")
        pytest.fail(problem, pytrace=False)
    runner = CaseRunner(
        test, env.gateway, env.fleet, env.suite.defaults, env.timing, case_skip_reason
    )
    results = run_cases(runner, test["cases"])
    failed = [r for r in results if not r.ok]
    skipped = [r for r in results if r.skipped]
    ran = len(results) - len(skipped)
    flaky = sum(1 for r in results if r.ok and r.failed_attempts)
    if failed:
        record(name, "fail", cases=ran, failed=len(failed), flaky=flaky)
        lines = [f"{name}: {len(failed)} of {ran} cases failed"]
        lines.extend(r.report() for r in failed)
        if skipped:
            lines.append(f"({len(skipped)} more cases not run: {skipped[0].skipped})")
        if env.gateway.reload_log:
            lines.append("Turnout logged while loading this test's manifests:")
            lines.append(env.gateway.reload_log)
        pytest.fail("\n".join(lines), pytrace=False)
    if skipped:
        reasons = sorted({r.skipped for r in skipped})
        if ran:
            reason = (
                f"partial: the {ran} runnable cases pass; {len(skipped)} of {len(results)} "
                f"cases not run: {'; '.join(reasons)}"
            )
        else:
            reason = f"none of the {len(results)} cases run: {'; '.join(reasons)}"
        record(name, "skip", reason=reason)
        pytest.skip(reason)
    record(name, "pass", cases=ran, flaky=flaky)
