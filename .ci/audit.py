#!/usr/bin/env python3
"""Dependency vulnerability scan of the project's venv with pip-audit (CI step).

pip-audit runs from a venv of its own (``.venv-audit``) so it audits exactly what
``.venv`` holds and adds nothing to it. It asks PyPI's JSON API (which carries the PyPA
advisories) and falls back to OSV. The step fails CI only when a known vulnerability is
found; when no advisory source can be reached, or none of them knows the installed
versions (a private mirror), it says "skipped: ..." and passes, because a scan that could
not look is not a finding. Exit codes: 0 clean or skipped, 1 vulnerabilities found.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / ".venv"
TOOL_VENV = ROOT / ".venv-audit"
SOURCES = {"pypi": "https://pypi.org/pypi/pip/json", "osv": "https://api.osv.dev/v1/query"}


def reachable(url: str) -> bool:
    data = b"{}" if "osv" in url else None
    try:
        with urllib.request.urlopen(url, data=data, timeout=8) as resp:
            return bool(resp.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500  # the service answered (e.g. 400 for an empty query)
    except OSError:
        return False


def tool() -> Path | None:
    exe = TOOL_VENV / "bin" / "pip-audit"
    if exe.exists():
        return exe
    try:
        subprocess.run([sys.executable, "-m", "venv", str(TOOL_VENV)], check=True)
        subprocess.run(
            [str(TOOL_VENV / "bin" / "pip"), "install", "-q", "pip-audit"],
            check=True,
            timeout=300,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    return exe if exe.exists() else None


def site_packages() -> Path:
    found = sorted(TARGET.glob("lib/python3*/site-packages"))
    if not found:
        sys.exit(f"pip-audit: no venv at {TARGET} to audit")
    return found[0]


def main() -> int:
    services = [name for name, url in SOURCES.items() if reachable(url)]
    if not services:
        print("pip-audit: skipped: no advisory source reachable (pypi.org, api.osv.dev)")
        return 0
    exe = tool()
    if exe is None:
        print("pip-audit: skipped: cannot install pip-audit")
        return 0
    deps: dict[str, dict[str, object]] = {}
    for service in services:
        cmd = [str(exe), "--path", str(site_packages()), "--skip-editable"]
        cmd += ["--progress-spinner", "off", "-s", service, "-f", "json"]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        try:
            report = json.loads(run.stdout)
        except ValueError:
            print(f"pip-audit ({service}) failed: {run.stderr.strip()[:300]}")
            continue
        for dep in report.get("dependencies", []):
            seen = deps.get(dep["name"])
            # keep the answer of a service that knew the version over one that did not
            if seen is None or ("skip_reason" in seen and "skip_reason" not in dep):
                deps[dep["name"]] = dep
    audited = [d for d in deps.values() if "skip_reason" not in d]
    vulnerable = [d for d in audited if d.get("vulns")]
    for dep in vulnerable:
        for vuln in dep["vulns"]:  # type: ignore[attr-defined]
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
            print(f"pip-audit: {dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixes})")
    if not audited:
        print(
            f"pip-audit: skipped: no advisory source ({', '.join(services)}) knows any of the "
            f"{len(deps)} installed versions (a private mirror?)"
        )
        return 0
    print(
        f"pip-audit: {len(audited)} of {len(deps)} packages audited via {', '.join(services)}, "
        f"{len(vulnerable)} vulnerable, {len(deps) - len(audited)} unknown to the sources"
    )
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
