"""Status write-back: what Turnout made of each GatewayClass, Gateway and route.

Computed from the last ``KubernetesSource.load`` (which objects were left out, and each
object's validation problems), as the Gateway API specifies:

- GatewayClass: ``Accepted``.
- Gateway: ``Accepted`` and ``Programmed`` (``False``, reason ``Pending``, while the
  supervisor refuses the latest revision, e.g. a listener port in use), ``addresses``
  (``spec.addresses``, else ``--kubernetes-address``/``$POD_IP``), and per listener
  ``supportedKinds``, ``attachedRoutes`` and ``Accepted``/``Programmed``/``ResolvedRefs``.
- Routes: one ``status.parents`` entry per parentRef to a Gateway of ours, with
  ``controllerName`` and ``Accepted``/``ResolvedRefs``; entries written by other
  controllers are kept.
- Turnout's own kinds (CRDs): ``Accepted``, ``False`` with the located errors of the checks
  the CRD schema cannot express (Turnout's own validation; CEL is not available on 1.20).

Every condition carries the object's ``observedGeneration``. A condition keeps its
``lastTransitionTime`` while its status does not change, and nothing is written when the
status would not change, so our own writes (which come back as watch events) settle
instead of looping. Writes are merge patches of the ``status`` subresource.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import httpx

from turnout.config.kinds import route_kinds_by_protocol
from turnout.config.problems import Problem
from turnout.control.gateway_status import problem_conditions
from turnout.control.kube.client import KubeAPIError, KubeClient, ResourceType
from turnout.control.kube.translate import Translation

log = logging.getLogger("turnout.kube")

SUPPORTED_KINDS = route_kinds_by_protocol()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message[:32768],
        "observedGeneration": generation,
    }


def _ref_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')} {meta.get('namespace') or 'default'}/{meta.get('name')}"


def _generation(obj: dict[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def _messages(problems: list[Problem]) -> str:
    return "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in problems)


def _strip_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_times(v) for k, v in value.items() if k != "lastTransitionTime"}
    if isinstance(value, list):
        return [_strip_times(v) for v in value]
    return value


def _stamp(conditions: list[dict[str, Any]], old: list[dict[str, Any]] | None) -> None:
    """Give each condition a lastTransitionTime: the old one while its status holds."""
    before = {c.get("type"): c for c in old or [] if isinstance(c, dict)}
    now = _now()
    for cond in conditions:
        prev = before.get(cond["type"])
        same = prev is not None and prev.get("status") == cond["status"]
        cond["lastTransitionTime"] = prev.get("lastTransitionTime", now) if same and prev else now


class StatusWriter:
    def __init__(
        self, client: KubeClient, types: dict[str, ResourceType], controller: str, address: str
    ) -> None:
        self.client = client
        self.types = types
        self.controller = controller
        self.address = address
        self.writes = 0
        # why the supervisor refused the latest revision (a listener that cannot bind…);
        # "" while it serves it. Gateways are not Programmed meanwhile.
        self.serving_error = ""
        # (uid, kind) -> the status last written: with the official CRDs the server adds
        # defaults to what we write, so "equal to the stored status" alone could loop
        self.written: dict[tuple[str, str], Any] = {}

    def desired(
        self, t: Translation, problems: dict[str, list[Problem]], rejected: set[str]
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(object as the cluster has it, the status it should have) for every object of ours."""
        out: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for gc in t.classes:
            gen = _generation(gc)
            conds = [_condition("Accepted", True, "Accepted", "handled by Turnout", gen)]
            out.append((gc, {"conditions": conds}))
        attached = self._attached(t, rejected)
        for gw in t.gateways:
            out.append((gw, self._gateway(gw, problems, rejected, attached)))
        for route in t.routes:
            out.append((route, self._route(route, t, problems, rejected)))
        for obj in t.own:  # Turnout's kinds: what the API server's schema could not check
            ref, gen = _ref_of(obj), _generation(obj)
            errors = [p for p in problems.get(ref, []) if p.severity == "error"]
            ok = ref not in rejected
            message = _messages(errors) if not ok else "accepted"
            warnings = [p for p in problems.get(ref, []) if p.severity != "error"]
            if ok and warnings:
                message = "accepted; " + _messages(warnings)
            reason = "Accepted" if ok else "Invalid"
            out.append((obj, {"conditions": [_condition("Accepted", ok, reason, message, gen)]}))
        return out

    @staticmethod
    def _attached(t: Translation, rejected: set[str]) -> dict[tuple[str, str, str], int]:
        """(gateway ns, gateway name, sectionName or "") -> routes of each kind attached."""
        counts: dict[tuple[str, str, str], int] = {}
        for (kind, ns, name), refs in t.parents.items():
            if f"{kind} {ns}/{name}" in rejected:
                continue
            for ref in refs:
                key = (
                    str(ref.get("namespace") or ns),
                    str(ref["name"]),
                    ref.get("sectionName", ""),
                )
                counts[key] = counts.get(key, 0) + 1
        return counts

    def _gateway(
        self,
        gw: dict[str, Any],
        problems: dict[str, list[Problem]],
        rejected: set[str],
        attached: dict[tuple[str, str, str], int],
    ) -> dict[str, Any]:
        gen = _generation(gw)
        ref = _ref_of(gw)
        mine = problems.get(ref, [])
        ok = ref not in rejected
        meta, spec = gw.get("metadata") or {}, gw.get("spec") or {}
        ns, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
        message = _messages([p for p in mine if p.severity == "error"]) or "accepted"
        programmed = ok and not self.serving_error
        if programmed:
            served = ("Programmed", "serving")
        elif ok:
            served = ("Pending", f"not serving the latest revision: {self.serving_error}")
        else:
            served = ("Invalid", message)
        status: dict[str, Any] = {
            "conditions": [
                _condition("Accepted", ok, "Accepted" if ok else "Invalid", message, gen),
                _condition("Programmed", programmed, served[0], served[1], gen),
            ],
            "listeners": [],
        }
        addresses = [
            {"type": a.get("type", "IPAddress"), "value": a["value"]}
            for a in spec.get("addresses") or []
            if a.get("value")
        ]
        if not addresses and self.address:
            addresses = [{"type": "IPAddress", "value": self.address}]
        if addresses:
            status["addresses"] = addresses
        for i, listener in enumerate(spec.get("listeners") or []):
            lname = str(listener.get("name", ""))
            kinds = SUPPORTED_KINDS.get(str(listener.get("protocol")), ())
            bad_refs = [p for p in mine if p.path.startswith(f"spec.listeners[{i}]")]
            count = attached.get((ns, name, lname), 0) + attached.get((ns, name, ""), 0)
            status["listeners"].append(
                {
                    "name": lname,
                    "supportedKinds": [
                        {"group": "gateway.networking.k8s.io", "kind": k} for k in kinds
                    ],
                    "attachedRoutes": count,
                    "conditions": [
                        _condition("Accepted", ok, "Accepted" if ok else "Invalid", message, gen),
                        _condition("Programmed", programmed, served[0], served[1], gen),
                        _condition(
                            "ResolvedRefs",
                            not bad_refs,
                            "ResolvedRefs" if not bad_refs else "InvalidCertificateRef",
                            _messages(bad_refs) or "all references resolved",
                            gen,
                        ),
                    ],
                }
            )
        return status

    def _route(
        self,
        route: dict[str, Any],
        t: Translation,
        problems: dict[str, list[Problem]],
        rejected: set[str],
    ) -> dict[str, Any]:
        gen = _generation(route)
        ref = _ref_of(route)
        meta = route.get("metadata") or {}
        key = (
            str(route.get("kind")),
            str(meta.get("namespace") or "default"),
            str(meta.get("name")),
        )
        mine = problems.get(ref, [])
        if ref in rejected:
            message = _messages([p for p in mine if p.severity == "error"])
            conds = [
                _condition("Accepted", False, "UnsupportedValue", message, gen),
                _condition("ResolvedRefs", False, "UnsupportedValue", message, gen),
            ]
        else:
            conds = []
            for c in problem_conditions(mine):
                reason = c.type if c.ok else c.reason
                if not c.ok and "ReferenceGrant" in c.message:
                    reason = "RefNotPermitted"
                conds.append(_condition(c.type, c.ok, reason, c.message, gen))
        others = [
            p
            for p in ((route.get("status") or {}).get("parents") or [])
            if p.get("controllerName") != self.controller
        ]
        parents = [
            {
                "parentRef": dict(pref),
                "controllerName": self.controller,
                "conditions": [dict(c) for c in conds],
            }
            for pref in t.parents.get(key, [])
        ]
        return {"parents": others + parents}

    async def write(
        self, t: Translation, problems: dict[str, list[Problem]], rejected: set[str]
    ) -> bool:
        """Patch every status that changed; False when some write failed (retry later)."""
        ok = True
        desired = self.desired(t, problems, rejected)
        live = {
            (
                str((o.get("metadata") or {}).get("uid") or (o.get("metadata") or {}).get("name")),
                str(o.get("kind")),
            )
            for o, _ in desired
        }
        self.written = {k: v for k, v in self.written.items() if k in live}
        for obj, status in desired:
            old = obj.get("status") or {}
            meta = obj.get("metadata") or {}
            key = (str(meta.get("uid") or meta.get("name")), str(obj.get("kind")))
            wanted = _strip_times(status)
            if wanted == _strip_times({k: old.get(k) for k in status if k in old}):
                continue
            if self.written.get(key) == wanted:
                continue
            _stamp(status.get("conditions", []), old.get("conditions"))
            for i, listener in enumerate(status.get("listeners", [])):
                before = old.get("listeners") or []
                _stamp(
                    listener["conditions"], before[i].get("conditions") if i < len(before) else None
                )
            old_parents = {
                repr(sorted(p.get("parentRef", {}).items())): p for p in old.get("parents") or []
            }
            for parent in status.get("parents", []):
                if parent.get("controllerName") == self.controller:
                    prev = old_parents.get(repr(sorted(parent["parentRef"].items())), {})
                    _stamp(parent["conditions"], prev.get("conditions"))
            rt = self.types[str(obj.get("kind"))]
            try:
                await self.client.patch_status(
                    rt, str(meta.get("namespace") or ""), str(meta["name"]), status
                )
                self.writes += 1
                self.written[key] = wanted
            except KubeAPIError as exc:
                if exc.status != 404:  # deleted meanwhile: nothing to report on
                    log.warning("status of %s not written: %s", _ref_of(obj), exc)
                    ok = False
            except httpx.HTTPError as exc:
                log.debug("status of %s not written: %s", _ref_of(obj), exc)
                ok = False
        return ok
