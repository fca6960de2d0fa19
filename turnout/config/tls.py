"""The certificates of a TLS listener, read and checked without touching ``ssl``.

A listener's ``tls.certificateRefs`` name ``kubernetes.io/tls`` Secrets (``tls.crt`` and
``tls.key``, base64 in ``data`` or plain in ``stringData``) in the same manifests; or its
``tls.options`` name PEM files (``turnout.dev/certificate-file``,
``turnout.dev/key-file``), which the supervisor watches so that renewing a certificate on
disk reloads it. Either way this module returns PEM bytes that parse (``cryptography``),
whose key matches the certificate, with the certificate's DNS names for SNI; or a
message saying exactly what is wrong. The data plane turns them into ``ssl`` contexts.

``listener_policy`` reads the listener's TLS 1.2 cipher string and minimum version from
``tls.options``. Whether OpenSSL accepts the cipher string is judged where contexts are
built (``proxy.compile``: the supervisor's trial build, located like this module's
errors, before any worker sees the revision).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from turnout.config.model.backend import BackendTLSSpec
from turnout.config.model.gateway import (
    DEFAULT_TLS12_CIPHERS,
    TLS_CERT_FILE_OPTION,
    TLS_CIPHERS_OPTION,
    TLS_KEY_FILE_OPTION,
    TLS_MIN_VERSION_OPTION,
    TLS_MIN_VERSIONS,
    GatewayTLSConfig,
    SecretObjectReference,
)
from turnout.config.model.kubernetes import SecretObject

SecretKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True, slots=True)
class Certificate:
    cert_pem: bytes  # the chain, leaf first
    key_pem: bytes
    names: tuple[str, ...]  # DNS names (lowercase), for choosing a certificate by SNI
    not_after: datetime
    source: str  # "Secret ns/name" or the certificate file's path


class TLSMaterialError(ValueError):
    """Certificates that cannot be used; the message says why and where."""

    def __init__(self, message: str, field: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.field = field  # path below the listener's ``tls``


def _secret_value(secret: SecretObject, name: str) -> bytes | None:
    if name in secret.string_data:
        return secret.string_data[name].encode()
    raw = secret.data.get(name)
    if raw is None:
        return None
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise TLSMaterialError(
            f"Secret {secret.metadata.namespace}/{secret.metadata.name}: data.{name} is not "
            "valid base64"
        ) from None


def check_pair(cert_pem: bytes, key_pem: bytes, source: str) -> Certificate:
    """Parse a PEM chain and key; raise ``TLSMaterialError`` unless they belong together."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise TLSMaterialError(f"{source}: the certificate is not PEM: {exc}") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise TLSMaterialError(
            f"{source}: the private key is not an unencrypted PEM key: {exc}"
        ) from None
    leaf = chain[0]
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    leaf_public = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != leaf_public:
        raise TLSMaterialError(f"{source}: the private key does not match the certificate")
    names: list[str] = []
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [n.lower() for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        cns = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        names = [str(cn.value).lower() for cn in cns]
    return Certificate(cert_pem, key_pem, tuple(names), leaf.not_valid_after_utc, source)


def listener_certificates(
    tls: GatewayTLSConfig, namespace: str, secrets: dict[SecretKey, SecretObject]
) -> list[Certificate]:
    """Every certificate of one listener, in declaration order (the first is the
    default). Raises ``TLSMaterialError`` naming the first problem."""
    out: list[Certificate] = []
    for i, ref in enumerate(tls.certificate_refs):
        field: tuple[str | int, ...] = ("certificateRefs", i)
        secret = _ref_secret(ref, namespace, secrets, field)
        ns = secret.metadata.namespace
        if secret.type != "kubernetes.io/tls":
            raise TLSMaterialError(
                f"Secret {ns}/{ref.name} has type {secret.type!r}; TLS listeners need "
                "'kubernetes.io/tls'",
                field,
            )
        cert = _secret_value(secret, "tls.crt")
        key = _secret_value(secret, "tls.key")
        if cert is None or key is None:
            raise TLSMaterialError(f"Secret {ns}/{ref.name} needs tls.crt and tls.key", field)
        try:
            out.append(check_pair(cert, key, f"Secret {ns}/{ref.name}"))
        except TLSMaterialError as exc:
            raise TLSMaterialError(str(exc), field) from None
    files = certificate_files(tls)
    if files is not None:
        cert_path, key_path = files
        try:
            cert = Path(cert_path).read_bytes()
            key = Path(key_path).read_bytes()
        except OSError as exc:
            raise TLSMaterialError(
                f"cannot read {exc.filename}: {exc.strerror}", ("options",)
            ) from None
        try:
            out.append(check_pair(cert, key, cert_path))
        except TLSMaterialError as exc:
            raise TLSMaterialError(str(exc), ("options",)) from None
    return out


def certificate_files(tls: GatewayTLSConfig) -> tuple[str, str] | None:
    """(certificate file, key file) named in ``tls.options``, if any."""
    cert = tls.options.get(TLS_CERT_FILE_OPTION)
    key = tls.options.get(TLS_KEY_FILE_OPTION)
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise TLSMaterialError(
            f"tls.options needs both {TLS_CERT_FILE_OPTION!r} and {TLS_KEY_FILE_OPTION!r}",
            ("options",),
        )
    return cert, key


@dataclass(frozen=True, slots=True)
class TLSPolicy:
    """What a listener's handshakes may negotiate."""

    ciphers: str = DEFAULT_TLS12_CIPHERS  # OpenSSL cipher string for TLS 1.2
    tls13_only: bool = False


def listener_policy(tls: GatewayTLSConfig) -> TLSPolicy:
    """The listener's cipher string and minimum version from ``tls.options``; raises
    ``TLSMaterialError`` (located at the option) for a value Turnout refuses."""
    ciphers = tls.options.get(TLS_CIPHERS_OPTION, DEFAULT_TLS12_CIPHERS)
    if not ciphers.strip():
        raise TLSMaterialError("the cipher string is empty", ("options", TLS_CIPHERS_OPTION))
    version = tls.options.get(TLS_MIN_VERSION_OPTION, "1.2")
    if version not in TLS_MIN_VERSIONS:
        raise TLSMaterialError(
            f"unsupported minimum TLS version {version!r} (supported: "
            f"{', '.join(TLS_MIN_VERSIONS)})",
            ("options", TLS_MIN_VERSION_OPTION),
        )
    return TLSPolicy(ciphers, version == "1.3")


def expired(cert: Certificate, now: datetime | None = None) -> bool:
    return cert.not_after < (now or datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class UpstreamTLS:
    """What a Backend's ``tls`` resolves to: trust anchors, client certificate, SNI."""

    ca_pem: bytes | None  # None: the system trust store
    client: Certificate | None
    sni: str | None
    verify: bool

    @property
    def fingerprint(self) -> str:
        """Stable identity of these settings (pools and contexts are shared by it)."""
        digest = hashlib.sha256()
        for part in (
            self.ca_pem or b"-",
            self.client.cert_pem if self.client else b"-",
            self.client.key_pem if self.client else b"-",
            (self.sni or "-").encode(),
            b"v" if self.verify else b"n",
        ):
            digest.update(hashlib.sha256(part).digest())
        return digest.hexdigest()[:16]


def backend_tls(
    spec: BackendTLSSpec, namespace: str, secrets: dict[SecretKey, SecretObject]
) -> UpstreamTLS:
    """Resolve a Backend's ``tls``; raises ``TLSMaterialError`` naming the field."""
    cas = [
        _secret_ca(ref, namespace, secrets, ("caCertificateRefs", i))
        for i, ref in enumerate(spec.ca_certificate_refs)
    ]
    if spec.ca_file is not None:
        try:
            pem = Path(spec.ca_file).read_bytes()
        except OSError as exc:
            raise TLSMaterialError(
                f"cannot read {spec.ca_file}: {exc.strerror}", ("caFile",)
            ) from None
        _check_ca(pem, spec.ca_file, ("caFile",))
        cas.append(pem.strip() + b"\n")
    client: Certificate | None = None
    if spec.client_certificate_ref is not None:
        ref = spec.client_certificate_ref
        secret = _ref_secret(ref, namespace, secrets, ("clientCertificateRef",))
        cert, key = _secret_value(secret, "tls.crt"), _secret_value(secret, "tls.key")
        if cert is None or key is None:
            raise TLSMaterialError(
                f"Secret {namespace}/{ref.name} needs tls.crt and tls.key",
                ("clientCertificateRef",),
            )
        client = check_pair(cert, key, f"Secret {namespace}/{ref.name}")
    elif spec.client_certificate_file is not None or spec.client_key_file is not None:
        if spec.client_certificate_file is None or spec.client_key_file is None:
            raise TLSMaterialError(
                "clientCertificateFile and clientKeyFile go together", ("clientCertificateFile",)
            )
        try:
            cert = Path(spec.client_certificate_file).read_bytes()
            key = Path(spec.client_key_file).read_bytes()
        except OSError as exc:
            raise TLSMaterialError(
                f"cannot read {exc.filename}: {exc.strerror}", ("clientCertificateFile",)
            ) from None
        client = check_pair(cert, key, spec.client_certificate_file)
    return UpstreamTLS(
        b"\n".join(cas) if cas else None, client, spec.sni, not spec.insecure_skip_verify
    )


def _ref_secret(
    ref: SecretObjectReference,
    namespace: str,
    secrets: dict[SecretKey, SecretObject],
    field: tuple[str | int, ...],
) -> SecretObject:
    if ref.group not in ("", "core") or ref.kind != "Secret":
        raise TLSMaterialError(
            f"references of kind {ref.group}/{ref.kind} are not supported (use a Secret)", field
        )
    ns = ref.namespace or namespace
    if ns != namespace:
        raise TLSMaterialError(
            f"Secret {ns}/{ref.name} is in another namespace (needs a ReferenceGrant, not "
            "supported yet)",
            field,
        )
    secret = secrets.get((ns, ref.name))
    if secret is None:
        raise TLSMaterialError(f"Secret {ns}/{ref.name} not found", field)
    return secret


def client_ca(
    tls: GatewayTLSConfig, namespace: str, secrets: dict[SecretKey, SecretObject]
) -> bytes | None:
    """The PEM CAs a listener's ``frontendValidation`` trusts for client certificates."""
    validation = tls.frontend_validation
    if validation is None:
        return None
    return b"".join(
        _secret_ca(ref, namespace, secrets, ("frontendValidation", "caCertificateRefs", i))
        for i, ref in enumerate(validation.ca_certificate_refs)
    )


def _secret_ca(
    ref: SecretObjectReference,
    namespace: str,
    secrets: dict[SecretKey, SecretObject],
    field: tuple[str | int, ...],
) -> bytes:
    """The PEM CA certificates a Secret holds under ``ca.crt``, checked."""
    if ref.kind == "ConfigMap":
        raise TLSMaterialError(
            "ConfigMaps are not supported; put the CA in a Secret under ca.crt", field
        )
    secret = _ref_secret(ref, namespace, secrets, field)
    pem = _secret_value(secret, "ca.crt")
    if pem is None:
        raise TLSMaterialError(f"Secret {namespace}/{ref.name} has no ca.crt", field)
    _check_ca(pem, f"Secret {namespace}/{ref.name}: ca.crt", field)
    return pem.strip() + b"\n"


def _check_ca(pem: bytes, what: str, field: tuple[str | int, ...]) -> None:
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise TLSMaterialError(f"{what} is not PEM", field) from None
