"""The shared request helper against a tiny local HTTP server."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from turnout.testing.requests import get, request


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        payload = b'{"method":"%s","path":"%s","x":"%s","body":"%s"}' % (
            self.command.encode(),
            self.path.encode(),
            (self.headers.get("x-test") or "").encode(),
            body,
        )
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Twice", "a")
        self.send_header("X-Twice", "b")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_get_reads_status_headers_and_body(port: int) -> None:
    reply = get(port, "/a?b=1", {"x-test": "yes"})
    assert reply.status == 200 and reply.is_json
    assert reply.json() == {"method": "GET", "path": "/a?b=1", "x": "yes", "body": ""}
    assert reply.headers["x-twice"] == "b"  # the last value; all of them are on the response
    assert [v for k, v in reply.response.getheaders() if k == "X-Twice"] == ["a", "b"]


def test_request_sends_method_and_body_and_reuses_a_given_connection(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        first = request(port, "/p", method="POST", body=b"hi", conn=conn)
        second = get(port, "/q", conn=conn)  # same keep-alive connection
    finally:
        conn.close()
    assert first.status == 201 and first.json()["body"] == "hi"
    assert second.json()["path"] == "/q"
