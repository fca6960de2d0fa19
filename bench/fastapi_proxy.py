"""The common Python approach to a reverse proxy: FastAPI + one shared httpx.AsyncClient.

Run under uvicorn (1 worker, uvloop + httptools, access log off):

    BENCH_UPSTREAM=http://127.0.0.1:8081 uvicorn --app-dir bench fastapi_proxy:app \\
        --loop uvloop --http httptools --no-access-log --port 8083

The client is created once (connection pool with keep-alive, sized above the benchmark's
concurrency so no request waits for a pool slot). The upstream response is read whole
and returned as a ``Response`` (for small bodies this is faster than the also-common
``send(stream=True)`` + ``StreamingResponse`` variant). Hop-by-hop headers are dropped
in both directions.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:8081")
HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "upgrade",
        "host",
        "content-length",
    }
)

client: httpx.AsyncClient


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global client
    client = httpx.AsyncClient(
        base_url=UPSTREAM,
        limits=httpx.Limits(max_connections=512, max_keepalive_connections=256),
        timeout=httpx.Timeout(30.0),
    )
    async with client:
        yield


app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)


@app.api_route("/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def proxy(request: Request, path: str) -> Response:
    headers = [(k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in HOP]
    upstream = await client.request(
        request.method,
        httpx.URL(path=request.url.path, query=request.url.query.encode("latin-1")),
        headers=headers,
        content=await request.body(),
    )
    return Response(
        content=upstream.content,
        status_code=upstream.status_code,
        headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP},
    )
