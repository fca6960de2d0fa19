"""Filter plugins without sockets: located config errors, ExtensionRef checks, the guarded
filters (exceptions, timeouts, bad verdicts, failOpen), the per-worker lifecycle and a
plugin on a real exchange (fake loop, fake sockets).

Plugin classes are registered in the loader's cache here, as an installed entry point
would be on first use; tests/integration/plugins installs real packages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from turnout.config import plugins as loader
from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.observe.stats import WorkerStats
from turnout.plugins import Context, LocalReply, Plugin, ResponseHead, reply, set_header
from turnout.proxy.filters.plugin_host import PluginHost, PluginSetupError
from turnout.testing.exchange import ExchangeHarness
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.plugins import PluginConfigError, PluginHarness


class TagConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str = Field(min_length=1)
    limit: int = 3


EVENTS: list[str] = []


class TagPlugin(Plugin[TagConfig]):
    config_model = TagConfig

    def setup(self) -> None:
        EVENTS.append(f"setup {self.config.value}")

    def reconfigure(self, config: TagConfig) -> None:
        self.config = config
        EVENTS.append(f"reconfigure {config.value}")

    async def close(self) -> None:
        EVENTS.append(f"close {self.config.value}")

    def on_request(self, ctx: Context) -> LocalReply | None:
        if ctx.head.path == b"/deny":
            return reply(403, "denied", "no")
        set_header(ctx, "x-tag", self.config.value)
        ctx.values()["seen"] = ctx.route
        return None

    def on_response(self, ctx: Context, head: ResponseHead) -> LocalReply | None:
        head.headers.append((b"x-tag-route", str(ctx.values()["seen"]).encode()))
        head.headers.append((b"x-tag-backend", ctx.backend.encode()))
        return None


class BrokenPlugin(Plugin[None]):
    def on_request(self, ctx: Context) -> LocalReply | None:
        if ctx.head.path == b"/verdict":
            return 42  # type: ignore[return-value]
        raise RuntimeError("boom")

    def on_response(self, ctx: Context, head: ResponseHead) -> LocalReply | None:
        raise KeyError("response")


class SlowPlugin(Plugin[None]):
    async def on_request(self, ctx: Context) -> LocalReply | None:
        if ctx.head.path == b"/fast":
            return None
        await asyncio.Event().wait()  # never set: the plugin's timeout ends it
        return None


class FailingSetup(Plugin[None]):
    async def setup(self) -> None:
        raise OSError("no database")


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    saved = dict(loader._LOADED)
    loader._LOADED.update(
        {"tag": TagPlugin, "broken": BrokenPlugin, "slow": SlowPlugin, "failing": FailingSetup}
    )
    EVENTS.clear()
    yield
    loader._LOADED.clear()
    loader._LOADED.update(saved)


def plugin(name: str, kind: str, config: dict[str, Any] | None = None, **spec: Any) -> Any:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "FilterPlugin",
        "metadata": {"name": name},
        "spec": {"plugin": kind, **({"config": config} if config is not None else {}), **spec},
    }


def ext(name: str, kind: str = "FilterPlugin") -> dict[str, Any]:
    return {
        "type": "ExtensionRef",
        "extensionRef": {"group": "turnout.dev", "kind": kind, "name": name},
    }


def problems_of(text: str) -> list[tuple[int | None, str, str, str]]:
    resources, parse_problems = parse_text(text, "plugins.yaml")
    assert parse_problems == []
    _, problems = validate(resources)
    return [(p.line, p.path, p.message, p.severity) for p in problems]


# -- configuration -------------------------------------------------------------------------


def test_plugin_config_errors_are_located_in_the_manifest() -> None:
    text = dump(plugin("t", "tag", {"value": "", "limit": "many", "extra": 1}))
    found = problems_of(text)
    by_path = {path: (line, message) for line, path, message, _ in found}
    assert set(by_path) == {"spec.config.value", "spec.config.limit", "spec.config.extra"}
    lines = text.splitlines()
    for path, (line, _) in by_path.items():
        assert line is not None and path.rsplit(".", 1)[1] in lines[line - 1]
    assert "at least 1 character" in by_path["spec.config.value"][1]


def test_unknown_plugin_names_the_installed_ones() -> None:
    [(line, path, message, severity)] = problems_of(dump(plugin("t", "nope")))
    assert path == "spec.plugin" and severity == "error" and line == 6
    assert "no plugin 'nope' is installed" in message and "turnout.filters" in message


def test_plugin_without_model_refuses_config() -> None:
    [(_, path, message, _)] = problems_of(dump(plugin("b", "broken", {"x": 1})))
    assert (path, message) == ("spec.config", "this plugin takes no configuration")


def test_extension_refs_are_checked() -> None:
    rules = [
        to("svc", filters=[ext("missing"), ext("x", kind="Other")]),
        {"backendRefs": [{"name": "svc", "filters": [ext("t")]}]},
    ]
    found = problems_of(
        dump(gateway(), backend("svc", 9), route("r", rules), plugin("t", "tag", {"value": "v"}))
    )
    assert [(p, s) for _, p, _, s in found] == [
        ("spec.rules[0].filters[0].extensionRef.name", "warning"),
        ("spec.rules[0].filters[1].extensionRef.kind", "error"),
        ("spec.rules[1].backendRefs[0].filters[0].type", "error"),
    ]
    assert "FilterPlugin default/missing does not exist; requests answer 500" in found[0][2]


def test_grpcroute_extension_ref_is_accepted() -> None:
    grpc = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": "g"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"filters": [ext("t")], "backendRefs": [{"name": "svc"}]}],
        },
    }
    assert (
        problems_of(dump(gateway(), backend("svc", 9), grpc, plugin("t", "tag", {"value": "v"})))
        == []
    )


# -- the guarded filters, through the harness ------------------------------------------------


def test_harness_runs_hooks_and_keeps_per_request_state() -> None:
    async def main() -> None:
        async with PluginHarness(TagPlugin, {"value": "blue"}, route="shop/api") as h:
            out = await h.request("GET", "/x", headers={"x-tag": "forged"})
            assert out.forwarded and [v for n, v in out.head.headers if n == b"x-tag"] == [b"blue"]
            assert h.response(out).header("x-tag-route") == "shop/api"
            denied = await h.request("GET", "/deny")
            assert denied.status == 403 and denied.reply is not None
            assert denied.reply.code == b"denied"
        assert EVENTS == ["setup blue", "close blue"]

    asyncio.run(main())


def test_harness_refuses_bad_config() -> None:
    with pytest.raises(PluginConfigError, match=r"config\.value"):
        PluginHarness(TagPlugin, {"value": ""})


def test_exceptions_and_bad_verdicts_answer_the_failure_status_and_are_counted() -> None:
    async def main() -> None:
        async with PluginHarness(BrokenPlugin, failure_status=503) as h:
            out = await h.request("GET", "/")
            assert out.status == 503 and out.reply is not None
            assert out.reply.code == b"plugin_error"
            assert (await h.request("GET", "/verdict")).status == 503
            assert h.failures == {"error": 1, "verdict": 1}
            response = h.response(out)
            assert response.reply is not None and response.reply.status == 503
            assert h.failures == {"error": 2, "verdict": 1}

    asyncio.run(main())


def test_fail_open_lets_the_request_through() -> None:
    async def main() -> None:
        async with PluginHarness(BrokenPlugin, fail_open=True) as h:
            out = await h.request("GET", "/")
            assert out.forwarded
            assert h.response(out).reply is None
            assert h.failures == {"error": 2}

    asyncio.run(main())


def test_async_hook_is_bounded_by_the_timeout() -> None:
    async def main() -> None:
        async with PluginHarness(SlowPlugin, timeout="20ms") as h:
            assert (await h.request("GET", "/fast")).forwarded
            out = await h.request("GET", "/slow")
            assert out.status == 500 and out.reply is not None
            assert out.reply.code == b"plugin_timeout"
            assert h.failures == {"timeout": 1}

    asyncio.run(main())


# -- lifecycle -------------------------------------------------------------------------------


def config_of(*objects: dict[str, Any]) -> Any:
    resources, _ = parse_text(dump(*objects), "plugins.yaml")
    config, problems = validate(resources)
    assert [p for p in problems if p.severity == "error"] == []
    return config


def test_lifecycle_setup_reconfigure_replace_close() -> None:
    async def main() -> None:
        host = PluginHost(WorkerStats())
        host.stage(config_of(plugin("a", "tag", {"value": "1"})))
        assert EVENTS == []  # staging constructs only
        await host.commit()
        first = host.live[("default", "a")].instance
        assert EVENTS == ["setup 1"]
        host.stage(config_of(plugin("a", "tag", {"value": "1"})))
        await host.commit()  # unchanged: nothing happens
        host.stage(config_of(plugin("a", "tag", {"value": "2"})))
        await host.commit()
        assert host.live[("default", "a")].instance is first
        assert EVENTS == ["setup 1", "reconfigure 2"]
        host.stage(config_of(plugin("b", "tag", {"value": "3"})))
        await host.commit()
        assert EVENTS == ["setup 1", "reconfigure 2", "setup 3", "close 2"]
        # a staged revision that is never committed (a failed build) changes nothing
        host.stage(config_of(plugin("c", "tag", {"value": "4"})))
        host.stage(config_of(plugin("b", "tag", {"value": "3"})))
        await host.commit()
        await host.close_all()
        assert EVENTS[-1] == "close 3" and "setup 4" not in EVENTS

    asyncio.run(main())


def test_failed_setup_fails_the_revision_and_keeps_the_old_plugins() -> None:
    async def main() -> None:
        host = PluginHost(WorkerStats())
        host.stage(config_of(plugin("a", "tag", {"value": "1"})))
        await host.commit()
        host.stage(config_of(plugin("a", "tag", {"value": "1"}), plugin("f", "failing")))
        with pytest.raises(PluginSetupError, match="default/f: setup failed"):
            await host.commit()
        assert list(host.live) == [("default", "a")]
        assert EVENTS == ["setup 1"]

    asyncio.run(main())


# -- on a real exchange ----------------------------------------------------------------------


def test_plugin_on_the_exchange_and_a_missing_plugin_answers_500() -> None:
    rules = [to("svc", "/ok", filters=[ext("t")]), to("svc", "/gone", filters=[ext("missing")])]
    h = ExchangeHarness(
        dump(gateway(), backend("svc", 9), route("r", rules), plugin("t", "tag", {"value": "v"}))
    )
    call = h.request(b"GET", b"/ok")
    up = h.connect(call)
    assert b"x-tag: v\r\n" in up.received
    h.respond(up, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    assert call.down.status == 200
    assert call.down.header(b"x-tag-route") == b"default/r"
    assert call.down.header(b"x-tag-backend") == b"default/svc"  # the chosen backendRef
    gone = h.request(b"GET", b"/gone")
    assert gone.down.status == 500


def test_scaffolded_names_are_checked(tmp_path: Path) -> None:
    from turnout.cli.errors import CliError
    from turnout.cli.plugin_skeleton import create

    with pytest.raises(CliError, match="not a plugin name"):
        create("Bad_Name", str(tmp_path))
    root = create("add-tenant", str(tmp_path))
    assert (root / "src" / "turnout_add_tenant" / "__init__.py").exists()
    assert (
        'add-tenant = "turnout_add_tenant:AddTenantPlugin"' in (root / "pyproject.toml").read_text()
    )
    with pytest.raises(CliError, match="already exists"):
        create("add-tenant", str(tmp_path))
