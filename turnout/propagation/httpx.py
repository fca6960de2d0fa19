"""httpx integration: a request event hook that injects the propagation headers.

    client = httpx.Client(event_hooks=event_hooks())
    client = httpx.AsyncClient(event_hooks=event_hooks())
    install(existing_client)  # appends the hook, keeping the client's own hooks

Why an event hook and not a transport wrapper: hooks run for every request the client
sends, redirects included, whatever transport (or mounts, proxies, test transport) the
client was built with, and in the caller's thread or task, where the request's
context is current. A wrapping transport would have to be threaded through each of
those.

One hook serves both clients. ``httpx.Client`` calls request hooks and ignores what
they return; ``httpx.AsyncClient`` awaits what they return. :func:`inject_request`
writes the headers at once, while being called (so, for the async client, in the
calling task), and returns an already-finished awaitable, which the sync client
discards and the async one awaits for nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Final

import httpx

from turnout.propagation.context import inject


class _Done:
    """An awaitable that is finished before it starts."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        yield from ()


_DONE: Final = _Done()


def inject_request(request: httpx.Request) -> _Done:
    """The request hook: adds ``baggage`` / ``x-turnout-routing-key`` to ``request``.

    Usable as a sync hook and, awaited, as an async one."""
    inject(request.headers)
    return _DONE


def event_hooks() -> dict[str, list[Callable[..., Any]]]:
    """``event_hooks=`` for ``httpx.Client`` or ``httpx.AsyncClient``."""
    return {"request": [inject_request], "response": []}


def install(client: httpx.Client | httpx.AsyncClient) -> None:
    """Add the hook to an existing client, after its own request hooks (so it sees the
    ``baggage`` they set and merges into it). Installing twice adds it once."""
    hooks = client.event_hooks
    if inject_request not in hooks["request"]:
        hooks["request"] = [*hooks["request"], inject_request]
        client.event_hooks = hooks
