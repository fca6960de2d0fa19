"""Where the CLI finds its server and token.

Each of the two is resolved on its own, first found wins (contract "CLI contexts"):

1. ``--server`` / ``--token`` flags;
2. ``TURNOUT_SERVER`` / ``TURNOUT_TOKEN``;
3. the context named by ``--context`` / ``TURNOUT_CONTEXT`` or by ``current-context`` in the
   contexts file (``$TURNOUT_CONFIG``, else ``$XDG_CONFIG_HOME/turnout/config.yaml``, else
   ``~/.config/turnout/config.yaml``), whose entries carry ``server``, ``token`` or
   ``tokenFile`` (relative to the contexts file) and optionally ``namespace``,
   ``certificateAuthority`` (a PEM file verifying an https server; env
   ``TURNOUT_CA_FILE``) and ``insecureSkipTLSVerify`` (env
   ``TURNOUT_INSECURE_SKIP_TLS_VERIFY=1``);
4. the local defaults: ``http://127.0.0.1:9901`` and the bootstrap token that
   ``turnout serve`` writes to ``<data dir>/admin-token``.

The bootstrap token is only sent to a loopback server, so pointing the CLI at a remote
URL never leaks the local admin token. Every value remembers its source, for messages
such as "the server rejected the token from TURNOUT_TOKEN". Nothing here talks to the
network; PyYAML is imported only when a contexts file exists.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from turnout.cli.errors import CliError
from turnout.cli.options import Connection
from turnout.core.paths import (
    ADMIN_TOKEN_FILE,
    DEFAULT_ADMIN_ADDRESS,
    default_contexts_file,
    default_data_dir,
)

DEFAULT_SERVER = f"http://{DEFAULT_ADMIN_ADDRESS}"


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved server and token, with where each came from (for messages)."""

    server: str
    server_source: str
    token: str | None
    token_source: str  # "--token", "TURNOUT_TOKEN", "context 'x' (file)", "<path>", "" = none
    timeout: float = 10.0
    namespace: str | None = None  # the context's default namespace, if it sets one
    looked_for_token: tuple[str, ...] = ()  # when token is None: the places tried
    ca_file: Path | None = None  # PEM CAs that verify an https server (else the system's)
    insecure: bool = False  # https without verifying the server (never the default)


@dataclass(frozen=True, slots=True)
class Context:
    name: str
    server: str | None
    token: str | None
    token_file: Path | None
    namespace: str | None
    ca_file: Path | None = None
    insecure: bool = False


def normalise_server(raw: str, source: str) -> str:
    """``host:port`` → ``http://host:port``; no trailing slash; only http(s) URLs."""
    text = raw.strip()
    if not text:
        raise CliError(f"empty server URL from {source}")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"invalid server URL {raw!r} from {source}: expected http(s)://host:port")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise CliError(f"invalid server URL {raw!r} from {source}: bad port") from None
    return text.rstrip("/")


def is_loopback(server: str) -> bool:
    host = urlsplit(server).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_contexts(path: Path) -> tuple[str | None, dict[str, Context]]:
    """``(current-context, {name: Context})`` from a kubeconfig-style file."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read the contexts file {path}: {exc.strerror or exc}") from None
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or exc
        raise CliError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        return None, {}
    if not isinstance(data, dict):
        raise CliError(f"{path}: expected a mapping with 'contexts' and 'current-context'")
    current = data.get("current-context")
    if current is not None and not isinstance(current, str):
        raise CliError(f"{path}: current-context must be a string")
    raw_contexts = data.get("contexts") or []
    if not isinstance(raw_contexts, list):
        raise CliError(f"{path}: contexts must be a list")
    contexts: dict[str, Context] = {}
    for i, entry in enumerate(raw_contexts):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise CliError(f"{path}: contexts[{i}] needs a 'name'")
        # kubeconfig nests the fields under "context:"; accept both shapes.
        nested = entry.get("context")
        fields: dict[str, Any] = nested if isinstance(nested, dict) else entry
        for key in ("server", "token", "tokenFile", "namespace"):
            value = fields.get(key)
            if value is not None and not isinstance(value, str):
                raise CliError(f"{path}: contexts[{i}].{key} must be a string")
        token_file = fields.get("tokenFile")
        ca_file = fields.get("certificateAuthority")
        if ca_file is not None and not isinstance(ca_file, str):
            raise CliError(f"{path}: contexts[{i}].certificateAuthority must be a string")
        insecure = fields.get("insecureSkipTLSVerify", False)
        if not isinstance(insecure, bool):
            raise CliError(f"{path}: contexts[{i}].insecureSkipTLSVerify must be true or false")
        contexts[entry["name"]] = Context(
            name=entry["name"],
            server=fields.get("server"),
            token=fields.get("token"),
            token_file=(path.parent / Path(token_file).expanduser()) if token_file else None,
            namespace=fields.get("namespace"),
            ca_file=(path.parent / Path(ca_file).expanduser()) if ca_file else None,
            insecure=insecure,
        )
    return current, contexts


def _read_token_file(path: Path, source: str) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CliError(f"cannot read the token file {path} ({source}): {exc.strerror}") from None
    if not token:
        raise CliError(f"the token file {path} ({source}) is empty")
    return token


def resolve(conn: Connection) -> Target:
    """Apply the precedence rules; raises ``CliError`` for a missing or broken context."""
    env = os.environ
    server: tuple[str, str] | None = None
    token: tuple[str, str] | None = None
    if conn.server:
        server = (conn.server, "--server")
    elif env.get("TURNOUT_SERVER"):
        server = (env["TURNOUT_SERVER"], "TURNOUT_SERVER")
    if conn.token:
        token = (conn.token, "--token")
    elif env.get("TURNOUT_TOKEN"):
        token = (env["TURNOUT_TOKEN"], "TURNOUT_TOKEN")

    namespace: str | None = None
    ca_file = Path(env["TURNOUT_CA_FILE"]).expanduser() if env.get("TURNOUT_CA_FILE") else None
    insecure = env.get("TURNOUT_INSECURE_SKIP_TLS_VERIFY", "").lower() in ("1", "true", "yes")
    context_name = conn.context or env.get("TURNOUT_CONTEXT") or None
    name_source = "--context" if conn.context else "TURNOUT_CONTEXT"
    path = default_contexts_file()
    if context_name or path.is_file():
        if not path.is_file():
            raise CliError(
                f"context {context_name!r} ({name_source}) not found: "
                f"there is no contexts file at {path}"
            )
        current, contexts = load_contexts(path)
        if not context_name and current:
            context_name, name_source = current, "current-context"
        if context_name:
            ctx = contexts.get(context_name)
            if ctx is None:
                known = ", ".join(sorted(contexts)) or "none"
                raise CliError(
                    f"context {context_name!r} ({name_source}) is not in {path} (known: {known})"
                )
            where = f"context {ctx.name!r} in {path}"
            if server is None and ctx.server:
                server = (ctx.server, where)
            if token is None:
                if ctx.token:
                    token = (ctx.token.strip(), where)
                elif ctx.token_file:
                    label = f"tokenFile {ctx.token_file} of {where}"
                    token = (_read_token_file(ctx.token_file, where), label)
            namespace = ctx.namespace
            ca_file = ca_file or ctx.ca_file
            insecure = insecure or ctx.insecure

    if server is None:
        server = (DEFAULT_SERVER, "the default")
    url = normalise_server(*server)
    looked: tuple[str, ...] = ()
    if token is None:
        bootstrap = default_data_dir() / ADMIN_TOKEN_FILE
        if is_loopback(url) and bootstrap.is_file():
            token = (_read_token_file(bootstrap, "bootstrap token"), f"bootstrap token {bootstrap}")
        else:
            looked = ("--token", "TURNOUT_TOKEN", f"a context in {path}")
            if is_loopback(url):
                looked += (str(bootstrap),)
    return Target(
        server=url,
        server_source=server[1],
        token=token[0] if token else None,
        token_source=token[1] if token else "",
        timeout=conn.timeout,
        namespace=namespace,
        looked_for_token=looked,
        ca_file=ca_file,
        insecure=insecure,
    )
