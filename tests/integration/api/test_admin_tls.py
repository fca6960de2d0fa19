"""The admin listener over TLS (issue 20 item 9), over real sockets: https from
certificate files and from a Secret, the CLI verifying it with a CA file, and the refusal
of a bind beyond loopback without TLS (or the WARNING when explicitly allowed)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from turnout.cli.contexts import Target
from turnout.cli.errors import CliError
from turnout.testing import TurnoutProcess
from turnout.testing.certs import CertificateAuthority
from turnout.testing.manifests import dump, gateway
from turnout.testing.polling import wait_until
from turnout.testing.process import free_port

Launch = Callable[..., TurnoutProcess]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """``launch(yaml, args)``: a started ``turnout serve`` not waited for (its admin API
    may speak https, or it may refuse to start)."""
    procs: list[TurnoutProcess] = []

    def start(config: str, args: list[str]) -> TurnoutProcess:
        conf_dir = tmp_path / f"conf{len(procs)}"
        conf_dir.mkdir()
        (conf_dir / "gateway.yaml").write_text(config)
        proc = TurnoutProcess(conf_dir, extra_args=args)
        procs.append(proc)
        return proc.start(expect_ready=False)

    yield start
    for proc in procs:
        proc.stop()


def https_status(proc: TurnoutProcess, ca: Path) -> int:
    ctx = ssl.create_default_context(cafile=str(ca))
    url = f"https://127.0.0.1:{proc.admin_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def wait_https(proc: TurnoutProcess, ca: Path) -> None:
    def up() -> bool:
        if proc.proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"turnout exited:\n{proc.stderr()}")
        return https_status(proc, ca) == 200

    wait_until(up, 20.0, "the admin API to answer over https")


def cli(proc: TurnoutProcess, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    server = f"https://127.0.0.1:{proc.admin_port}"
    cmd = [sys.executable, "-m", "turnout", *args, "--server", server, "--token", proc.token]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=30, env={**os.environ, **env}
    )


def test_admin_api_over_tls_from_files_verified_by_the_cli(
    launch: Launch, port: int, tmp_path: Path
) -> None:
    ca = CertificateAuthority()
    cert, key = ca.issue("127.0.0.1", "localhost").write(tmp_path, "admin")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    args = ["--admin-tls-cert", str(cert), "--admin-tls-key", str(key)]
    proc = launch(dump(gateway(port=port)), args)
    wait_https(proc, ca_file)
    assert "admin on https://" in proc.stderr()
    # Plain http on the TLS port gets no admin answer.
    with pytest.raises((OSError, urllib.error.URLError)):
        urllib.request.urlopen(f"{proc.admin}/readyz", timeout=2)

    ok = cli(proc, "history", env={"TURNOUT_CA_FILE": str(ca_file)})
    assert ok.returncode == 0, ok.stderr
    untrusted = cli(proc, "history", env={"TURNOUT_CA_FILE": ""})
    assert untrusted.returncode != 0
    assert "not trusted" in untrusted.stderr and "TURNOUT_CA_FILE" in untrusted.stderr

    # A renewal (here from another CA) is picked up without a restart; a broken one is
    # refused and the current pair keeps serving.
    ca2 = CertificateAuthority("Renewal CA")
    ca2.issue("127.0.0.1").write(tmp_path, "admin")
    ca2_file = tmp_path / "ca2.pem"
    ca2_file.write_bytes(ca2.cert_pem)
    wait_until(lambda: https_status(proc, ca2_file) == 200, 15.0, "the renewed certificate")
    assert https_status(proc, ca_file) == 0
    refusals = proc.stderr().count("keeping the current certificate")
    cert.write_text("not a certificate")
    wait_until(
        lambda: proc.stderr().count("keeping the current certificate") > refusals,
        15.0,
        "the broken renewal to be refused",
    )
    assert https_status(proc, ca2_file) == 200


def test_admin_tls_from_a_secret(launch: Launch, port: int, tmp_path: Path) -> None:
    ca = CertificateAuthority()
    secret = ca.issue("127.0.0.1").secret("admin-tls", "ops")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    manifests = dump(gateway(port=port), secret)
    proc = launch(manifests, ["--admin-tls-secret", "ops/admin-tls"])
    wait_https(proc, ca_file)


def test_a_bind_beyond_loopback_needs_tls_or_an_explicit_override(
    launch: Launch, port: int
) -> None:
    config = dump(gateway(port=port))
    refused = launch(config, ["--admin-address", f"0.0.0.0:{free_port()}"])
    assert refused.proc is not None
    assert refused.proc.wait(timeout=30) == 2
    err = refused.stderr()
    assert "beyond loopback, without TLS" in err and "--admin-allow-insecure" in err

    wide = free_port()
    allowed = launch(config, ["--admin-address", f"0.0.0.0:{wide}", "--admin-allow-insecure"])
    wait_until(lambda: "admin on http://" in allowed.stderr(), 20.0, "the insecure start")
    with urllib.request.urlopen(f"http://127.0.0.1:{wide}/healthz", timeout=2) as resp:
        assert resp.status == 200
    assert "WARNING" in allowed.stderr()
    assert "WITHOUT TLS (--admin-allow-insecure)" in allowed.stderr()


def test_the_client_refuses_an_unreadable_ca_file(tmp_path: Path) -> None:
    from turnout.cli.client import tls_verify

    target = Target("https://127.0.0.1:1", "--server", None, "", ca_file=tmp_path / "none.pem")
    with pytest.raises(CliError, match="cannot load the CA file"):
        tls_verify(target)
