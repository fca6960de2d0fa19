"""Enrich requests with headers looked up from another service (an asynchronous call-out).

For each request, ``GET {url}`` is sent with the configured request headers (e.g. the
caller's ``x-user-id``); fields of its JSON answer are copied into request headers
(``copy: {plan: x-user-plan}``) before the request is forwarded. When the lookup
service answers anything but 200, the request is refused (``onLookupFailure: Reject``,
403) or forwarded unchanged (``Continue``). When it does not answer within the
FilterPlugin's ``timeout``, or is unreachable, the gateway's failure policy applies
(``failOpen``/``failureStatus``), as for any plugin error.

The HTTP client is opened in ``setup`` (once per worker) and closed in ``close``; its
connection pool is reused by every request.
"""

from __future__ import annotations

from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from turnout.plugins import Context, LocalReply, Plugin, header, reply, set_header


class EnrichmentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    url: HttpUrl
    send_headers: list[str] = Field(default=[], alias="sendHeaders")
    copy_fields: dict[str, str] = Field(alias="copy", min_length=1)  # JSON field -> header
    on_lookup_failure: Literal["Reject", "Continue"] = Field(
        default="Reject", alias="onLookupFailure"
    )


class EnrichmentPlugin(Plugin[EnrichmentConfig]):
    config_model = EnrichmentConfig

    def __init__(self, config: EnrichmentConfig) -> None:
        super().__init__(config)
        self.client: httpx.AsyncClient | None = None

    async def setup(self) -> None:
        self.client = httpx.AsyncClient()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def on_request(self, ctx: Context) -> LocalReply | None:
        assert self.client is not None, "setup() opens the client"
        config = self.config
        sent = {}
        for name in config.send_headers:
            value = header(ctx, name)
            if value is not None:
                sent[name] = value
        answer = await self.client.get(str(config.url), headers=sent)
        if answer.status_code != 200:
            if config.on_lookup_failure == "Continue":
                return None
            return reply(403, "lookup_refused", f"lookup answered {answer.status_code}")
        data = answer.json()
        for field, name in config.copy_fields.items():
            value = data.get(field) if isinstance(data, dict) else None
            if value is not None:
                set_header(ctx, name, str(value))
        return None
