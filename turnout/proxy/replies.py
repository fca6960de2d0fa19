"""Responses the gateway makes itself: JSON errors, bodiless replies, gRPC errors.

``local_response`` builds the head, body and trailers; the exchange sends them. An
error has ``code``: plain HTTP gets ``{"error", "message", "request_id"}`` as JSON; a
gRPC call gets HTTP 200, no message and the status in the trailers (``protocols.grpc``),
as gRPC clients read it. Without ``code`` (a redirect, a 204) there is no body.
"""

from __future__ import annotations

from typing import Final

from turnout.proxy.protocols.grpc import CONTENT_TYPE as GRPC_CONTENT_TYPE
from turnout.proxy.protocols.grpc import error_trailers
from turnout.proxy.protocols.heads import Headers, ResponseHead

_ERROR_TEMPLATE: Final = b'{"error":"%s","message":"%s","request_id":"%s"}\n'


def local_response(
    status: int,
    code: bytes,
    message: bytes,
    extra: Headers | None,
    request_id: bytes,
    grpc: bool,
) -> tuple[ResponseHead, bytes, Headers | None]:
    """(head, body, trailers) of a reply from the gateway (``grpc``: a gRPC call's form)."""
    if code and grpc:
        headers: Headers = [(b"content-type", GRPC_CONTENT_TYPE)]
        if extra:
            headers.extend(extra)
        headers.append((b"x-request-id", request_id))
        return ResponseHead(200, headers), b"", error_trailers(status, message)
    if code:
        body = _ERROR_TEMPLATE % (code, message.replace(b'"', b"'"), request_id)
        headers = [(b"content-type", b"application/json")]
    else:
        body = b""
        headers = []
    if extra:
        headers.extend(extra)
    headers.append((b"x-request-id", request_id))
    head = ResponseHead(status, headers)
    head.content_length = len(body)
    return head, body, None
