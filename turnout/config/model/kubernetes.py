"""The Kubernetes core/v1 kinds Turnout reads: ``Namespace`` (labels for
``allowedRoutes`` selectors) and ``Secret`` (TLS material and credentials)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictStr

from turnout.config.model.base import ObjectMeta, Spec


class NamespaceObject(Spec):
    api_version: Literal["v1"]
    kind: Literal["Namespace"]
    metadata: ObjectMeta
    spec: dict[str, Any] | None = None
    status: dict[str, Any] | None = None


class SecretObject(Spec):
    """A Kubernetes Secret; Turnout reads ``kubernetes.io/tls`` ones (``tls.crt`` and
    ``tls.key``, base64 in ``data`` or plain in ``stringData``) for TLS listeners."""

    api_version: Literal["v1"]
    kind: Literal["Secret"]
    metadata: ObjectMeta
    type: StrictStr = "Opaque"
    data: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    string_data: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    immutable: bool | None = None
