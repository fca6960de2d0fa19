"""``turnout_certificate_expiry_timestamp_seconds`` reads each HTTPS listener's certificates."""

from __future__ import annotations

import time

from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.supervisor.reporting import certificate_expiry
from turnout.testing.certs import CertificateAuthority
from turnout.testing.manifests import dump, gateway


def test_each_https_certificate_reports_its_expiry() -> None:
    leaf = CertificateAuthority().issue("shop.example.com", days=7)
    listeners = [
        {"name": "http", "port": 8080, "protocol": "HTTP"},
        {
            "name": "https",
            "port": 8443,
            "protocol": "HTTPS",
            "hostname": "shop.example.com",
            "tls": {"certificateRefs": [{"name": "shop-tls"}]},
        },
    ]
    resources, problems = parse_text(
        dump(gateway("gw", listeners=listeners), leaf.secret("shop-tls")), "m.yaml"
    )
    config, more = validate(resources)
    assert not [p for p in problems + more if p.severity == "error"], problems + more
    ((gw, listener, source, not_after),) = certificate_expiry(config)
    assert (gw, listener, source) == ("default/gw", "https", "Secret default/shop-tls")
    assert 6 * 86400 < not_after - time.time() <= 7 * 86400 + 60
