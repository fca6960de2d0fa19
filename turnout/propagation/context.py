"""The propagation context of the request being served, and moving it across hops.

A service calls :func:`extract` on each inbound request's headers (the ASGI, WSGI and
gRPC integrations do it for you) and runs the request inside :func:`use`; every
outbound call then gets the context's headers from :func:`inject` (the httpx,
requests, aiohttp and gRPC client integrations do it for you).

The context lives in a :class:`contextvars.ContextVar`, so it follows the request the
way Python's own context does: into every coroutine and ``asyncio`` task started while
serving it (tasks copy the context when created), and nowhere else. Threads are the
exception: a thread starts with an empty context, and a plain
``concurrent.futures.ThreadPoolExecutor`` runs work in its own threads' contexts, so a
call made there would carry no key. :func:`wrap` and :class:`ContextThreadPoolExecutor`
carry the submitter's context over (``asyncio.to_thread`` already does).

What travels is the inbound W3C ``baggage`` (all its members) and the routing key, found
where ``turnout.core.routing_keys`` says and in the same order as the gateway looks:
``x-turnout-routing-key``; baggage members ``turnout-routing-key``, ``sd-routing-key``;
the same in ``tracestate``; ``ot-baggage-*`` and ``uberctx-*`` item headers. Outbound,
it is written as ``x-turnout-routing-key`` and as the first baggage member (so no limit
can drop it), merged into any baggage the caller set on the request itself.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Generic, ParamSpec, TypeVar

from turnout.core.routing_keys import BAGGAGE_KEYS, HEADER, ITEM_HEADERS, valid_key
from turnout.propagation.baggage import (
    ASCII_WHITESPACE,
    Member,
    format_baggage,
    parse_baggage,
    routing_key_in,
    with_member,
)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

BAGGAGE: Final = "baggage"
TRACESTATE: Final = "tracestate"

# Header names and values as servers hand them over: str (most) or bytes (ASGI, raw).
Text = str | bytes
Headers = Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[Text, Text]]


@dataclass(frozen=True, slots=True)
class PropagationContext:
    """What an inbound request carries that outbound calls must carry on.

    ``routing_key`` is the request's sandbox routing key (valid per
    ``turnout.core.routing_keys.valid_key``) or None; ``members`` are the inbound
    baggage list members, in order, as parsed by
    :func:`~turnout.propagation.baggage.parse_baggage`.
    """

    routing_key: str | None = None
    members: tuple[Member, ...] = ()

    def __post_init__(self) -> None:
        # The key is written into headers unescaped: a made-up one must not smuggle
        # a CR/LF or a comma into them.
        if self.routing_key is not None and not valid_key(self.routing_key):
            raise ValueError(f"not a valid routing key: {self.routing_key!r}")

    @property
    def baggage(self) -> dict[str, str]:
        """Baggage as a fresh ``{key: decoded value}`` dict; of duplicate keys the first
        wins, as in the gateway's routing-key lookup."""
        result: dict[str, str] = {}
        for member in self.members:
            result.setdefault(member.key, member.value)
        return result

    def __bool__(self) -> bool:
        return self.routing_key is not None or bool(self.members)


EMPTY: Final = PropagationContext()

_CURRENT: contextvars.ContextVar[PropagationContext] = contextvars.ContextVar(
    "turnout.propagation", default=EMPTY
)


def _str(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _pairs(headers: Headers) -> Iterator[tuple[str | bytes, str | bytes]]:
    if isinstance(headers, Mapping):
        # .items() rather than iterating keys: multi-value mappings (aiohttp's
        # CIMultiDict, Starlette's Headers) list every value there.
        yield from headers.items()
    else:
        yield from headers


_WANTED: Final = frozenset({BAGGAGE, TRACESTATE, HEADER, *ITEM_HEADERS})


def extract(headers: Headers) -> PropagationContext:
    """The propagation context an inbound request's headers carry.

    ``headers`` is a mapping or an iterable of ``(name, value)`` pairs, names and values
    ``str`` or ``bytes``; names match case-insensitively. A repeated header counts as
    one whose values are joined with ``","`` (RFC 9110 list semantics, and what the
    gateway does: two ``x-turnout-routing-key`` headers are no valid key). Values that
    are not valid keys are ignored, never an error.
    """
    found: dict[str, list[str]] = {}
    for raw_name, raw_value in _pairs(headers):
        name = _str(raw_name).lower()
        if name in _WANTED:
            found.setdefault(name, []).append(_str(raw_value))
    if not found:
        return EMPTY
    joined = {name: ",".join(values) for name, values in found.items()}
    baggage = joined.get(BAGGAGE, "")
    return PropagationContext(_routing_key(joined), parse_baggage(baggage) if baggage else ())


def _routing_key(joined: dict[str, str]) -> str | None:
    """The key, looked for where and in the order the gateway looks."""
    value = joined.get(HEADER, "").strip(ASCII_WHITESPACE)
    if valid_key(value):
        return value
    for name in (BAGGAGE, TRACESTATE):
        found = routing_key_in(joined.get(name, ""))
        if found is not None:
            return found
    for name in ITEM_HEADERS:
        value = joined.get(name, "").strip(ASCII_WHITESPACE)
        if valid_key(value):
            return value
    return None


def current() -> PropagationContext:
    """The propagation context of the request being served (empty outside one)."""
    return _CURRENT.get()


@contextmanager
def use(ctx: PropagationContext) -> Iterator[PropagationContext]:
    """Make ``ctx`` current for the ``with`` block (and tasks started in it)."""
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)


def bound_context(ctx: PropagationContext) -> contextvars.Context:
    """A copy of the current :class:`contextvars.Context` in which ``ctx`` is current.

    For code that a server starts and resumes piecemeal, possibly in other threads
    (a WSGI response generator, a gRPC streaming handler): run every piece with
    ``context.run(...)`` and each sees ``ctx``, while the server's own context is
    never changed.
    """
    context = contextvars.copy_context()
    context.run(_CURRENT.set, ctx)
    return context


class IteratorInContext(Generic[T]):
    """Iterates ``iterable`` (and closes it, if it has ``close``) inside ``context``,
    step by step, in whichever thread asks for the next item: for response iterators a
    server steps after the handler has returned (WSGI, gRPC)."""

    def __init__(self, context: contextvars.Context, iterable: Iterable[T]) -> None:
        self._context = context
        self._iterable = iterable
        self._iterator = context.run(iter, iterable)  # iter() may run application code

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        return self._context.run(next, self._iterator)

    def close(self) -> None:
        close = getattr(self._iterable, "close", None)
        if close is not None:
            self._context.run(close)


def outbound_headers(existing_baggage: Iterable[str] = ()) -> dict[str, str]:
    """The headers an outbound call made now must carry: ``baggage`` (when there is any)
    and ``x-turnout-routing-key`` (when there is a key). Empty outside a request.

    ``existing_baggage`` are the values of ``baggage`` headers the caller already put on
    the outbound request: their members are kept and win over inbound members of the
    same key, except the routing-key members, which are set to the context's key.
    """
    ctx = _CURRENT.get()
    if not ctx:
        return {}
    listing = ",".join(existing_baggage)
    members: list[Member] = []
    present: set[str] = set()
    for member in (*(parse_baggage(listing) if listing else ()), *ctx.members):
        if member.key not in present:  # the caller's first, and of duplicates the first
            present.add(member.key)
            members.append(member)
    result: dict[str, str] = {}
    key = ctx.routing_key
    if key is not None:
        # Every routing-key member agrees with the key (so an sd-routing-key reader sees
        # the same one), and ours goes first so the size limits never drop it.
        members = [
            Member(m.key, key, m.properties) if m.key in BAGGAGE_KEYS else m for m in members
        ]
        members = list(with_member(members, Member(BAGGAGE_KEYS[0], key)))
    baggage = format_baggage(members)
    if baggage:
        result[BAGGAGE] = baggage
    if key is not None:
        result[HEADER] = key
    return result


def inject(headers: MutableMapping[str, str]) -> None:
    """Write the current context's headers into an outbound request's ``headers``.

    Works on case-insensitive header types (httpx, requests, aiohttp) and on plain
    dicts, whatever case the caller used: any existing ``baggage`` headers are merged
    (see :func:`outbound_headers`) and replaced by one, and ``x-turnout-routing-key`` is
    overwritten. Outside a request it changes nothing.
    """
    if not _CURRENT.get():
        return
    names: dict[str, list[str]] = {BAGGAGE: [], HEADER: []}
    for name in list(headers):
        lowered = name.lower()
        if lowered in names and name not in names[lowered]:
            names[lowered].append(name)
    getall = getattr(headers, "getall", None)  # multidict: several values per name
    if callable(getall):
        existing = [str(v) for v in getall(BAGGAGE, ())]
    else:
        existing = [headers[name] for name in names[BAGGAGE]]
    out = outbound_headers(existing)
    for lowered, value in out.items():
        for name in names[lowered]:
            headers.pop(name, None)
        headers[lowered] = value


def wrap(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` bound to the caller's context: however and in whatever thread it is
    called later, it runs in a copy of the context current when ``wrap`` was called."""
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        # A Context can be entered by one thread at a time, and a wrapped function may
        # be called from several (executor.map): each call gets its own copy.
        return context.copy().run(fn, *args, **kwargs)

    return run


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` that runs each callable in a copy of the context of
    the thread that submitted it, so the propagation context (and every other context
    variable) follows the work into the pool.

    ``map`` and ``loop.run_in_executor(executor, ...)`` go through ``submit``, so they
    carry it too. ``loop.set_default_executor(ContextThreadPoolExecutor())`` covers
    ``run_in_executor(None, ...)``.
    """

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        # Copied here, in the submitting thread, where the request's context is current.
        context = contextvars.copy_context()
        return super().submit(functools.partial(context.run, fn, *args, **kwargs))
