"""Plugins for Turnout's tests: one that fails on request (raise, hang, bad verdict),
one that records its lifecycle in a file, and one that does nothing (benchmarks)."""

from __future__ import annotations

import asyncio
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict

from turnout.plugins import Context, LocalReply, Plugin, ResponseHead, header


class FaultyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaultyPlugin(Plugin[FaultyConfig]):
    """``x-fault: raise|hang|verdict|response`` picks the failure; no header: pass."""

    config_model = FaultyConfig

    async def on_request(self, ctx: Context) -> LocalReply | None:
        fault = header(ctx, "x-fault")
        if fault == "raise":
            raise RuntimeError("the plugin broke")
        if fault == "hang":
            await asyncio.sleep(3600)
        if fault == "verdict":
            return "yes"  # type: ignore[return-value]
        if fault == "response":
            ctx.values()["fail-response"] = True
        return None

    def on_response(self, ctx: Context, head: ResponseHead) -> LocalReply | None:
        if ctx.state is not None and ctx.state.get("fail-response"):
            raise ValueError("the response hook broke")
        return None


class LifecycleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    log: str
    tag: str = "a"
    mode: Literal["ok", "fail-setup"] = "ok"


class LifecyclePlugin(Plugin[LifecycleConfig]):
    config_model = LifecycleConfig

    def _note(self, event: str) -> None:
        with open(self.config.log, "a") as f:
            f.write(f"{os.getpid()} {event} {self.config.tag}\n")

    async def setup(self) -> None:
        if self.config.mode == "fail-setup":
            raise RuntimeError("cannot set up")
        self._note("setup")

    def reconfigure(self, config: LifecycleConfig) -> None:
        self.config = config
        self._note("reconfigure")

    def close(self) -> None:
        self._note("close")

    def on_request(self, ctx: Context) -> LocalReply | None:
        ctx.head.headers.append((b"x-plugin-tag", self.config.tag.encode()))
        return None


class EmptyPlugin(Plugin[None]):
    def on_request(self, ctx: Context) -> LocalReply | None:
        return None
