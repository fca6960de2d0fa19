"""``turnout`` — serve, check and inspect a Turnout gateway.

Every ``serve`` flag also reads a ``TURNOUT_*`` environment variable. Errors are one
clear line and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

from typing import Annotated

import typer

from turnout import __version__
from turnout.cli.commands import register as register_client_commands
from turnout.cli.units import duration, size

app = typer.Typer(
    name="turnout",
    help="A Python-native API gateway and traffic control plane.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """A Python-native API gateway and traffic control plane."""


FileOpt = Annotated[
    list[str] | None,
    typer.Option("--file", "-f", help="Manifest file or directory (repeatable); '-' is stdin."),
]


@app.command()
def serve(
    file: FileOpt = None,
    workers: Annotated[
        int, typer.Option(envvar="TURNOUT_WORKERS", help="Worker processes (default: CPU count).")
    ] = 0,
    admin_address: Annotated[
        str, typer.Option(envvar="TURNOUT_ADMIN_ADDRESS", help="Admin API, /metrics, /healthz.")
    ] = "127.0.0.1:9901",
    access_log: Annotated[
        str, typer.Option(envvar="TURNOUT_ACCESS_LOG", help="'-' (stdout), a file path, or 'off'.")
    ] = "-",
    access_log_fields: Annotated[
        str, typer.Option(envvar="TURNOUT_ACCESS_LOG_FIELDS", help="Comma-separated field list.")
    ] = "",
    access_log_sample: Annotated[
        float,
        typer.Option(
            envvar="TURNOUT_ACCESS_LOG_SAMPLE",
            min=0.0,
            max=1.0,
            help="Share of successful requests logged (4xx/5xx always are).",
        ),
    ] = 1.0,
    header_timeout: Annotated[
        str, typer.Option(envvar="TURNOUT_HEADER_TIMEOUT", help="Time to receive a request head.")
    ] = "10s",
    idle_timeout: Annotated[
        str,
        typer.Option(envvar="TURNOUT_IDLE_TIMEOUT", help="Keep-alive idle time between requests."),
    ] = "60s",
    request_timeout: Annotated[
        str,
        typer.Option(
            envvar="TURNOUT_REQUEST_TIMEOUT",
            help="Default whole-request timeout (0 = none); routes override it.",
        ),
    ] = "0",
    stream_idle_timeout: Annotated[
        str,
        typer.Option(
            envvar="TURNOUT_STREAM_IDLE_TIMEOUT",
            help="Abort a request when no byte moves either way this long.",
        ),
    ] = "5m",
    drain_timeout: Annotated[
        str,
        typer.Option(
            envvar="TURNOUT_DRAIN_TIMEOUT", help="Grace period for in-flight requests on SIGTERM."
        ),
    ] = "10s",
    max_url_bytes: Annotated[
        str, typer.Option(envvar="TURNOUT_MAX_URL_BYTES", help="Request target limit (414).")
    ] = "8k",
    max_header_bytes: Annotated[
        str,
        typer.Option(envvar="TURNOUT_MAX_HEADER_BYTES", help="Request header section limit (431)."),
    ] = "32k",
    max_headers: Annotated[
        int, typer.Option(envvar="TURNOUT_MAX_HEADERS", help="Request header count limit (431).")
    ] = 100,
    max_body_bytes: Annotated[
        str,
        typer.Option(
            envvar="TURNOUT_MAX_BODY_BYTES", help="Request body limit (413); 0 = unlimited."
        ),
    ] = "0",
    worker_timeout: Annotated[
        str,
        typer.Option(
            envvar="TURNOUT_WORKER_TIMEOUT",
            help="Replace a worker that does not answer pings this long.",
        ),
    ] = "10s",
    watch: Annotated[
        bool, typer.Option(envvar="TURNOUT_WATCH", help="Reload when manifest files change.")
    ] = True,
    log_level: Annotated[str, typer.Option(envvar="TURNOUT_LOG_LEVEL")] = "info",
    data_dir: Annotated[
        str,
        typer.Option(
            envvar="TURNOUT_DATA_DIR",
            help="SQLite store and bootstrap admin token [default: ~/.local/share/turnout].",
            show_default=False,
        ),
    ] = "",
    redis: Annotated[
        str,
        typer.Option(
            envvar="TURNOUT_REDIS",
            help="redis://host:port/db for Global rate limits shared by replicas.",
            show_default=False,
        ),
    ] = "",
    store: Annotated[
        str,
        typer.Option(
            envvar="TURNOUT_STORE",
            help="postgresql://user@host/db to share one store between replicas "
            "[default: SQLite in the data dir].",
            show_default=False,
        ),
    ] = "",
    secrets_key_file: Annotated[
        str,
        typer.Option(
            envvar="TURNOUT_SECRETS_KEY_FILE",
            help="Keys that encrypt Secrets in the store, one base64 32-byte key a line, "
            "the first seals [default: TURNOUT_SECRETS_KEY, else secrets.key in the data dir].",
            show_default=False,
        ),
    ] = "",
    admin_tls_cert: Annotated[
        str,
        typer.Option(envvar="TURNOUT_ADMIN_TLS_CERT", help="PEM certificate: admin API on https."),
    ] = "",
    admin_tls_key: Annotated[
        str, typer.Option(envvar="TURNOUT_ADMIN_TLS_KEY", help="PEM key of --admin-tls-cert.")
    ] = "",
    admin_tls_secret: Annotated[
        str,
        typer.Option(
            envvar="TURNOUT_ADMIN_TLS_SECRET",
            help="NAMESPACE/NAME of a kubernetes.io/tls Secret for the admin API's https.",
        ),
    ] = "",
    admin_allow_insecure: Annotated[
        bool,
        typer.Option(
            envvar="TURNOUT_ADMIN_ALLOW_INSECURE",
            help="Let the admin API bind beyond loopback without TLS (tokens in clear).",
        ),
    ] = False,
    trace_endpoint: Annotated[
        str,
        typer.Option(
            envvar="TURNOUT_TRACE_ENDPOINT",
            help="OTLP/HTTP traces URL (e.g. http://collector:4318/v1/traces); turns tracing "
            "on. Else OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT "
            "+ /v1/traces. 'off' disables.",
            show_default=False,
        ),
    ] = "",
    trace_sample_ratio: Annotated[
        float,
        typer.Option(
            envvar="TURNOUT_TRACE_SAMPLE_RATIO",
            help="Share of requests that start a trace (0-1); an incoming sampled flag wins.",
        ),
    ] = 1.0,
    trace_keep_errors: Annotated[
        bool,
        typer.Option(
            envvar="TURNOUT_TRACE_KEEP_ERRORS",
            help="Also record 5xx answers and failed attempts that were not sampled.",
        ),
    ] = True,
    kubernetes: Annotated[
        bool,
        typer.Option(
            envvar="TURNOUT_KUBERNETES",
            help="Controller mode: serve the cluster's Gateway API objects (with any -f files) "
            "and write their status back.",
        ),
    ] = False,
    kubeconfig: Annotated[
        str,
        typer.Option(
            envvar="TURNOUT_KUBECONFIG",
            help="Kubeconfig for --kubernetes (default: $KUBECONFIG, in-cluster, ~/.kube/config).",
        ),
    ] = "",
    controller_name: Annotated[
        str,
        typer.Option(
            envvar="TURNOUT_CONTROLLER_NAME",
            help="The GatewayClass controllerName this controller handles.",
        ),
    ] = "turnout.dev/gateway-controller",
    kubernetes_address: Annotated[
        str,
        typer.Option(
            envvar="TURNOUT_KUBERNETES_ADDRESS",
            help="Address written to Gateway status when spec.addresses is empty "
            "(default: $POD_IP).",
        ),
    ] = "",
    lease_duration: Annotated[
        str,
        typer.Option(
            envvar="TURNOUT_LEASE_DURATION",
            help="--kubernetes: how long a silent leader keeps the Lease before a standby "
            "takes over.",
        ),
    ] = "15s",
) -> None:
    """Run the gateway. Without -f, serve the embedded sample configuration and services."""
    from turnout.cli.serve import ServeFlags, run_serve

    flags = ServeFlags(
        files=file or [],
        workers=workers,
        admin_address=admin_address,
        access_log=access_log,
        access_log_fields=access_log_fields,
        access_log_sample=access_log_sample,
        header_timeout=duration(header_timeout),
        idle_timeout=duration(idle_timeout),
        request_timeout=duration(request_timeout),
        stream_idle_timeout=duration(stream_idle_timeout),
        drain_timeout=duration(drain_timeout),
        max_url_bytes=size(max_url_bytes),
        max_header_bytes=size(max_header_bytes),
        max_headers=max_headers,
        max_body_bytes=size(max_body_bytes),
        worker_timeout=duration(worker_timeout),
        watch=watch,
        log_level=log_level,
        data_dir=data_dir,
        store=store,
        redis=redis,
        secrets_key_file=secrets_key_file,
        admin_tls_cert=admin_tls_cert,
        admin_tls_key=admin_tls_key,
        admin_tls_secret=admin_tls_secret,
        admin_allow_insecure=admin_allow_insecure,
        trace_endpoint=trace_endpoint,
        trace_sample_ratio=trace_sample_ratio,
        trace_keep_errors=trace_keep_errors,
        kubernetes=kubernetes,
        kubeconfig=kubeconfig,
        controller_name=controller_name,
        kubernetes_address=kubernetes_address,
        lease_duration=duration(lease_duration),
    )
    raise typer.Exit(run_serve(flags))


@app.command()
def check(file: FileOpt = None) -> None:
    """Validate manifests offline; print located problems; exit 1 when there are errors."""
    from rich.console import Console

    from turnout.config.files import load_files

    if not file:
        raise typer.BadParameter("give at least one -f FILE|DIR", param_hint="-f")
    config, problems = load_files(file)
    err = Console(stderr=True, highlight=False)
    for p in problems:
        style = "red" if p.severity == "error" else "yellow"
        err.print(f"[{style}]{p}[/{style}]", soft_wrap=True)
    errors = sum(p.severity == "error" for p in problems)
    if errors:
        err.print(f"[red]{errors} error(s)[/red]")
        raise typer.Exit(1)
    kinds: dict[str, int] = {}
    for res in config.resources:
        kinds[res.kind] = kinds.get(res.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no objects"
    Console(highlight=False).print(f"OK: {summary}")


@app.command()
def crds(
    output: Annotated[str, typer.Option("--output", "-o", help="yaml or json.")] = "yaml",
) -> None:
    """Print CustomResourceDefinitions for Turnout's kinds (pipe into `kubectl apply -f -`)."""
    import json

    import yaml

    from turnout.config.crds import turnout_crds

    docs = turnout_crds()
    if output == "json":
        typer.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}, indent=2))
    elif output == "yaml":
        typer.echo(yaml.safe_dump_all(docs, sort_keys=False), nl=False)
    else:
        raise typer.BadParameter("yaml or json", param_hint="-o")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


# apply, diff, get, describe, delete, history, rollback, token, audit, status, whoami
register_client_commands(app)


def main() -> None:
    app()
