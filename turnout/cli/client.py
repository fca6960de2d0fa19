"""A small synchronous client of the admin API (httpx), with every failure as one line.

``Client.call`` sends one request and returns the decoded JSON body. Transport failures
(refused, unresolvable, timed out) and error statuses become ``CliError`` messages that
say what to do next: a 401 names the token's source (flag, env var, context, bootstrap
file); 403/404/409/503 carry the server's own one-line ``message``; 422 becomes
``ValidationFailed`` with the server's located problems. Imported lazily by the commands,
never by ``turnout --help``.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Generator
from typing import Any

import httpx

from turnout import __version__
from turnout.cli.bearer import bearer_headers, token_fix
from turnout.cli.contexts import Target, is_loopback, resolve
from turnout.cli.errors import CliError, ServerProblem, ValidationFailed
from turnout.cli.options import Connection

DRY_RUN = {"dryRun": "All"}


class Client:
    def __init__(self, target: Target) -> None:
        self.target = target
        headers = {"Accept": "application/json", "User-Agent": f"turnout-cli/{__version__}"}
        headers.update(bearer_headers(target))
        self._http = httpx.Client(
            base_url=target.server,
            headers=headers,
            timeout=target.timeout,
            # proxies (HTTPS_PROXY...) apply to remote servers, never to a local one
            trust_env=not is_loopback(target.server),
            verify=tls_verify(target),
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- requests -------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: str | None = None,
        content_type: str | None = None,
    ) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        headers = {"Content-Type": content_type} if content_type else None
        try:
            resp = self._http.request(
                method,
                path,
                params=clean,
                json=json,
                content=content.encode() if content is not None else None,
                headers=headers,
            )
        except httpx.TimeoutException:
            raise CliError(
                f"the Turnout admin API at {self.target.server} did not answer within "
                f"{self.target.timeout:g} s (--timeout)"
            ) from None
        except httpx.ConnectError as exc:
            raise CliError(self._unreachable(exc)) from None
        except httpx.TransportError as exc:
            raise CliError(
                f"lost the connection to the Turnout admin API at {self.target.server}: "
                f"{_first_line(exc) or type(exc).__name__}"
            ) from None
        if resp.status_code >= 400:
            raise self._error(method, path, resp)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise CliError(
                f"the server at {self.target.server} sent a non-JSON answer to {method} {path}"
                " (is it a Turnout admin API?)"
            ) from None

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.call("GET", path, params=params)

    def get_text(self, path: str) -> str:
        """``GET path`` as text (``/metrics``); failures map to ``CliError`` like ``call``."""
        try:
            resp = self._http.get(path, headers={"Accept": "text/plain"})
        except httpx.ConnectError as exc:
            raise CliError(self._unreachable(exc)) from None
        except httpx.TransportError as exc:
            raise CliError(
                f"the Turnout admin API at {self.target.server} failed on GET {path}: "
                f"{_first_line(exc) or type(exc).__name__}"
            ) from None
        if resp.status_code >= 400:
            raise self._error("GET", path, resp)
        return resp.text

    def stream_lines(
        self, path: str, params: dict[str, Any] | None = None, idle_timeout: float | None = None
    ) -> Generator[str, None, None]:
        """``GET path`` and yield the body's non-empty lines as they arrive (NDJSON
        streams). ``idle_timeout`` bounds the wait for the next bytes (``None``: forever);
        connecting is bounded by ``--timeout``. Failures map to ``CliError`` like ``call``."""
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        timeout = httpx.Timeout(self.target.timeout, read=idle_timeout)
        try:
            with self._http.stream("GET", path, params=clean, timeout=timeout) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise self._error("GET", path, resp)
                for line in resp.iter_lines():
                    if line.strip():
                        yield line
        except httpx.ReadTimeout:
            raise CliError(
                f"the Turnout admin API at {self.target.server} sent nothing on GET {path} "
                f"for {idle_timeout or 0:g} s"
            ) from None
        except httpx.TimeoutException:
            raise CliError(
                f"the Turnout admin API at {self.target.server} did not answer within "
                f"{self.target.timeout:g} s (--timeout)"
            ) from None
        except httpx.ConnectError as exc:
            raise CliError(self._unreachable(exc)) from None
        except httpx.TransportError as exc:
            raise CliError(
                f"lost the connection to the Turnout admin API at {self.target.server}: "
                f"{_first_line(exc) or type(exc).__name__}"
            ) from None

    # -- error mapping ----------------------------------------------------------------

    def _unreachable(self, exc: httpx.ConnectError) -> str:
        cause: BaseException | None = exc
        reason = _first_line(exc) or "connect failed"
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError):
                return (
                    f"the Turnout admin API at {self.target.server} presented a certificate "
                    f"that is not trusted ({cause.verify_message}); name its CA with "
                    "TURNOUT_CA_FILE or the context's certificateAuthority"
                )
            if isinstance(cause, ConnectionRefusedError):
                reason = "connection refused"
                break
            if isinstance(cause, socket.gaierror):
                reason = f"cannot resolve the host name: {cause.strerror or cause}"
                break
            cause = cause.__cause__ or cause.__context__
        if "refused" in reason.lower():
            reason = "connection refused"
        hint = "; is `turnout serve` running?" if reason == "connection refused" else ""
        return f"cannot reach the Turnout admin API at {self.target.server} ({reason}){hint}"

    def _error(self, method: str, path: str, resp: httpx.Response) -> CliError:
        body: Any = None
        try:
            body = resp.json()
        except ValueError:
            pass
        message = ""
        if isinstance(body, dict):
            raw = body.get("message") or body.get("detail")
            if isinstance(raw, str):
                message = raw
            elif raw is not None:
                message = str(raw)
        message = _one_line(message)
        code = resp.status_code
        if code == 401:
            return CliError(self._unauthorized(message), status=401)
        if code == 422 and isinstance(body, dict):
            problems = [ServerProblem.from_json(p) for p in body.get("problems") or []]
            return ValidationFailed(message or "the server found problems", problems)
        if not message:
            reason = resp.reason_phrase or "error"
            if code == 404:
                return CliError(
                    f"{method} {path}: 404 {reason} from {self.target.server}"
                    " (is it a Turnout admin API of this version?)",
                    status=404,
                )
            text = _one_line(resp.text)[:200]
            message = f"{method} {path}: {code} {reason}" + (f": {text}" if text else "")
        return CliError(message, status=code)

    def _unauthorized(self, message: str) -> str:
        t = self.target
        detail = f" ({message})" if message else ""
        if not t.token:
            looked = ", ".join(t.looked_for_token) or "--token, TURNOUT_TOKEN, a context"
            return (
                f"the Turnout admin API at {t.server} needs a token and none was found "
                f"(looked at {looked}); pass --token, set TURNOUT_TOKEN, or add a context"
            )
        return (
            f"the server at {t.server} rejected the token from {t.token_source}{detail}; "
            f"{token_fix(t)}"
        )


def tls_verify(target: Target) -> ssl.SSLContext | bool:
    """How to check an https server: its CA file, the system's CAs, or (asked for
    explicitly) not at all. Building a TLS context costs ~80 ms; a plain-http URL never
    uses one (redirects are not followed), so it gets ``False``."""
    if not target.server.startswith("https://"):
        return False
    if target.insecure:
        return False
    if target.ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(target.ca_file))
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise CliError(f"cannot load the CA file {target.ca_file}: {reason}") from None


def _first_line(exc: BaseException) -> str:
    return _one_line(str(exc))


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def connect(conn: Connection) -> Client:
    """Resolve server and token (flags, env, contexts file, defaults) and open a client."""
    return Client(resolve(conn))
