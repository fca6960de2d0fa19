"""``turnout serve``: the only CLI module that imports the supervisor."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import uvloop

from turnout.config.sources import ConfigSource, FileSource, TextSource
from turnout.core.logsetup import configure_logging
from turnout.core.paths import default_data_dir
from turnout.observe.accesslog import DEFAULT_FIELDS, FIELDS
from turnout.observe.tracing import TracingSettings
from turnout.proxy.protocols.http1 import Limits
from turnout.proxy.runtime import ProxySettings
from turnout.supervisor.main import AdminTLSOptions, ServeOptions, StartupError, Supervisor

log = logging.getLogger("turnout")


@dataclass(slots=True)
class ServeFlags:
    files: list[str]
    workers: int
    admin_address: str
    access_log: str
    access_log_fields: str
    header_timeout: float
    idle_timeout: float
    request_timeout: float
    stream_idle_timeout: float
    drain_timeout: float
    max_url_bytes: int
    max_header_bytes: int
    max_headers: int
    max_body_bytes: int
    worker_timeout: float
    watch: bool
    log_level: str
    data_dir: str = ""
    store: str = ""
    redis: str = ""
    secrets_key_file: str = ""
    admin_tls_cert: str = ""
    admin_tls_key: str = ""
    admin_tls_secret: str = ""
    admin_allow_insecure: bool = False
    access_log_sample: float = 1.0
    trace_endpoint: str = ""
    trace_sample_ratio: float = 1.0
    trace_keep_errors: bool = True
    kubernetes: bool = False
    kubeconfig: str = ""
    controller_name: str = "turnout.dev/gateway-controller"
    kubernetes_address: str = ""
    lease_duration: float = 15.0

    def tracing(self) -> TracingSettings:
        """``--trace-*`` over the OpenTelemetry environment variables."""
        if not 0.0 <= self.trace_sample_ratio <= 1.0:
            raise ValueError(
                f"--trace-sample-ratio must be between 0 and 1, not {self.trace_sample_ratio}"
            )
        endpoint = trace_endpoint(self.trace_endpoint, os.environ)
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"--trace-endpoint must be an http(s):// URL, not {endpoint!r}")
        return TracingSettings(
            endpoint=endpoint,
            ratio=self.trace_sample_ratio,
            keep_errors=self.trace_keep_errors,
            service_name=os.environ.get("OTEL_SERVICE_NAME") or "turnout",
        )

    def options(self) -> ServeOptions:
        settings = ProxySettings(
            header_timeout=self.header_timeout,
            idle_timeout=self.idle_timeout,
            stream_idle_timeout=self.stream_idle_timeout,
            request_timeout=self.request_timeout,
            drain_timeout=self.drain_timeout,
            access_log_sample=self.access_log_sample,
            limits=Limits(
                max_url=self.max_url_bytes,
                max_header_bytes=self.max_header_bytes,
                max_headers=self.max_headers,
                max_body=self.max_body_bytes,
            ),
            tracing=self.tracing(),
        )
        fields = tuple(f.strip() for f in self.access_log_fields.split(",") if f.strip())
        unknown = [f for f in fields if f not in FIELDS]
        if unknown:
            known = ", ".join(FIELDS)
            raise ValueError(f"unknown access log field(s) {', '.join(unknown)}; known: {known}")
        return ServeOptions(
            workers=self.workers or os.cpu_count() or 1,
            admin_address=self.admin_address,
            settings=settings,
            access_log=self.access_log,
            access_log_fields=fields or default_fields(settings.tracing),
            worker_timeout=self.worker_timeout,
            watch=self.watch,
            data_dir=Path(self.data_dir).expanduser() if self.data_dir else default_data_dir(),
            store=self.store,
            redis=self.redis,
            secrets_key_file=self.secrets_key_file,
            admin_tls=AdminTLSOptions(
                self.admin_tls_cert,
                self.admin_tls_key,
                self.admin_tls_secret,
                self.admin_allow_insecure,
            ),
        )


def trace_endpoint(flag: str, env: Mapping[str, str]) -> str:
    """The OTLP/HTTP traces URL: the flag, else the OpenTelemetry variables (the
    signal-specific one is used as is, the generic one gets ``/v1/traces``); "" = off."""
    if flag:
        return "" if flag == "off" else flag
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return base.rstrip("/") + "/v1/traces" if base else ""


def default_fields(tracing: TracingSettings) -> tuple[str, ...]:
    """The access log's default fields, with the trace ids when tracing is on."""
    if tracing.endpoint:
        return (*DEFAULT_FIELDS, "trace_id", "span_id")
    return DEFAULT_FIELDS


async def _serve(flags: ServeFlags, options: ServeOptions) -> int:
    files = flags.files
    if flags.kubernetes:
        # imported here: plain `turnout serve` and the workers never load the Kubernetes code
        from turnout.supervisor.kube import KubernetesOptions, serve_kubernetes

        kube = KubernetesOptions(
            files,
            flags.kubeconfig,
            flags.controller_name,
            flags.kubernetes_address,
            lease_duration=flags.lease_duration,
        )
        return await serve_kubernetes(kube, options)
    from turnout.supervisor import discovery

    samples: list[asyncio.Server] = []
    source: ConfigSource
    tasks: list[asyncio.Task[object]] = []
    if files:
        source = FileSource(files)
    else:
        from turnout.samples import start_samples

        samples, text = await start_samples()
        source = TextSource(text, "<embedded defaults>")
        options.watch = False

    def greet() -> None:
        tasks.append(discovery.start(srv, supervisor))
        if not samples:
            return
        from turnout.samples import sample_curls

        lines = "\n".join(f"  {line}" for line in sample_curls(admin=options.admin_address))
        print(
            "\nTurnout is serving its embedded sample configuration with three sample "
            f"services.\nTry:\n{lines}\n\nManage it from another shell: `turnout get routes`, "
            "`turnout apply -f FILE`, `turnout history`.\nStop with Ctrl-C. Serve your own "
            "manifests with `turnout serve -f FILE|DIR`.\n",
            file=sys.stderr,
            flush=True,
        )

    supervisor = Supervisor(source, options)
    srv = await discovery.prepare(supervisor)  # Backend spec.discovery: DNS SRV endpoints
    try:
        return await supervisor.run(on_started=greet)
    except StartupError as exc:
        log.error("%s", exc)
        return 2
    finally:
        for task in tasks:
            task.cancel()
        for server in samples:
            server.close()


def run_serve(flags: ServeFlags) -> int:
    configure_logging(flags.log_level)
    os.environ["TURNOUT_LOG_LEVEL"] = flags.log_level
    try:
        options = flags.options()
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    return uvloop.run(_serve(flags, options))
