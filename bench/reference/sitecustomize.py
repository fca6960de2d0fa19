"""Benchmark aid: run Turnout with its HTTP/2 codecs as they were before issue 17.

With this directory on ``PYTHONPATH`` and ``TURNOUT_BENCH_REFERENCE_CODEC=1`` in the
environment, every Python process (the supervisor, and the workers, which inherit the
environment) puts back the ``hpack`` library's HPACK contexts and h2's own inbound field
validation and cookie joining in place of ``hpack_codec`` and ``http2_fields``. The rest
of the build (compiled or not) stays the same, so two ``bench/protocols.py`` runs, one
with and one without, compare the codecs alone on one build:

    TURNOUT_BENCH_REFERENCE_CODEC=1 PYTHONPATH=bench/reference \\
        .venv/bin/python bench/protocols.py --rows h2,h2c,grpc
"""

from __future__ import annotations

import os

if os.environ.get("TURNOUT_BENCH_REFERENCE_CODEC"):
    import hpack

    from turnout.proxy.protocols import http2_client, http2_overrides

    _server_init = http2_overrides.ServerH2Connection.__init__
    _client_init = http2_client.Http2ClientConnection.__init__

    def _server(self, config):  # type: ignore[no-untyped-def]
        _server_init(self, config)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder(self.DEFAULT_MAX_HEADER_LIST_SIZE)
        self.config.validate_inbound_headers = True
        self.config.normalize_inbound_headers = True

    def _client(self, handler):  # type: ignore[no-untyped-def]
        _client_init(self, handler)
        self._h2.encoder = hpack.Encoder()
        self._h2.decoder = hpack.Decoder(self._h2.DEFAULT_MAX_HEADER_LIST_SIZE)

    http2_overrides.ServerH2Connection.__init__ = _server  # type: ignore[method-assign]
    http2_client.Http2ClientConnection.__init__ = _client  # type: ignore[method-assign]
    http2_overrides.request_fields = http2_overrides.trailer_fields = lambda headers: headers  # type: ignore[assignment]
