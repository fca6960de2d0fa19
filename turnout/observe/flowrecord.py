"""Field positions of a traced request's record (built by ``proxy/spans.request_flow``).

One flat tuple per kept request, read by the OTLP encoder (``observe.otlp``) in the
worker's export task and, pickled, by the supervisor (``observe.history.flow_doc``).
New fields go at the end, so older readers that unpack a prefix keep working.
"""

from __future__ import annotations

from typing import Final

REQUEST_ID: Final = 0  # bytes
METHOD: Final = 1  # bytes
PATH: Final = 2  # bytes, without the query
HOST: Final = 3  # str
TRACE_ID: Final = 4  # int
SPAN_ID: Final = 5  # int (the server span)
SAMPLED: Final = 6  # bool
WALL_OFFSET: Final = 7  # float: add to a perf_counter time for Unix time
START: Final = 8  # float, perf_counter
END: Final = 9  # float, perf_counter
STATUS: Final = 10  # int
LISTENER: Final = 11  # str "gateway/listener" or ""
ROUTE: Final = 12  # str "namespace/name" or ""
BACKEND: Final = 13  # str or ""
ENDPOINT: Final = 14  # str or ""
ROUTING_KEY: Final = 15  # bytes
OVERRIDDEN: Final = 16  # bool: a Sandbox's endpoints replaced the baseline's
REPLY_CODE: Final = 17  # bytes: the gateway answered itself (e.g. ``no_route``)
ATTEMPTS: Final = 18  # list of attempt tuples (A_* below)
PARENT_ID: Final = 19  # int, 0 = a root span
SCHEME: Final = 20  # bytes
CLIENT_IP: Final = 21  # bytes
VERSION: Final = 22  # bytes, e.g. b"1.1"
USER_AGENT: Final = 23  # bytes or None
BYTES_IN: Final = 24  # int
BYTES_OUT: Final = 25  # int
PORT: Final = 26  # int, the listener's declared port (0: none)
FILTERS: Final = 27  # tuple[str, ...]: the kinds of the filters that acted, in order
RELEASE: Final = 28  # str: the release version the request went to, or ""

# an upstream attempt
A_ENDPOINT: Final = 0  # str
A_START: Final = 1  # float
A_END: Final = 2  # float, 0.0 = still open when the request ended
A_STATUS: Final = 3  # int, 0 = no answer
A_ERROR: Final = 4  # str
A_RESEND: Final = 5  # int
A_SPAN_ID: Final = 6  # int
A_HOST: Final = 7  # str ("" for a unix socket)
A_PORT: Final = 8  # int
A_MIRROR: Final = 9  # str: "" for an attempt; for a RequestMirror's copy, its backend
