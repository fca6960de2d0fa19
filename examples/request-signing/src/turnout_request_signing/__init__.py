"""Sign every forwarded request with HMAC-SHA256, so the upstream can tell requests that
came through the gateway (and were not changed on the way) from any other.

The string to sign is the method, the path with its query, a timestamp and the values of
the configured headers, one per line::

    GET
    /orders?page=2
    1765152000
    example.com

and the upstream receives ``x-signature-timestamp`` and
``x-signature: keyId=<id>,headers=host;content-type,signature=<hex>``. A client's own
``x-signature*`` headers are removed first. The response hook adds ``x-signed-by`` so a
client can see that signing happened (and to show a response hook).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from turnout.plugins import Context, LocalReply, Plugin, ResponseHead, header


class SigningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    key_id: str = Field(alias="keyId", min_length=1)
    secret: SecretStr = Field(min_length=16)
    signed_headers: list[str] = Field(default=["host"], alias="signedHeaders")


class SigningPlugin(Plugin[SigningConfig]):
    config_model = SigningConfig

    def __init__(self, config: SigningConfig) -> None:
        super().__init__(config)
        self._key = config.secret.get_secret_value().encode()

    def reconfigure(self, config: SigningConfig) -> None:
        self.config = config
        self._key = config.secret.get_secret_value().encode()

    def on_request(self, ctx: Context) -> LocalReply | None:
        head = ctx.head
        stamp = str(int(time.time()))
        target = head.path + (b"?" + head.query if head.query else b"")
        lines = [head.method, target, stamp.encode()]
        for name in self.config.signed_headers:
            if name.lower() == "host":
                lines.append(head.authority)
            else:
                lines.append((header(ctx, name) or "").encode("latin-1"))
        signature = hmac.new(self._key, b"\n".join(lines), hashlib.sha256).hexdigest()
        names = ";".join(n.lower() for n in self.config.signed_headers)
        value = f"keyId={self.config.key_id},headers={names},signature={signature}"
        head.headers = [h for h in head.headers if not h[0].startswith(b"x-signature")]
        head.headers.append((b"x-signature-timestamp", stamp.encode()))
        head.headers.append((b"x-signature", value.encode()))
        return None

    def on_response(self, ctx: Context, head: ResponseHead) -> LocalReply | None:
        head.headers.append((b"x-signed-by", self.config.key_id.encode()))
        return None


def verify(
    secret: str,
    method: str,
    target: str,
    timestamp: str,
    values: list[str],
    signature: str,
) -> bool:
    """What an upstream does with the headers (the example's tests use it)."""
    lines = [method, target, timestamp, *values]
    expected = hmac.new(secret.encode(), "\n".join(lines).encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)
