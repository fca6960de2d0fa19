"""``POST /api/v1/alerts/alertmanager``: the Alertmanager webhook receiver (version 4).

Bearer token with role editor (configure it in Alertmanager's ``http_config.authorization``).
2xx only once every kept alert is durably stored (with the runs it starts); 503 (store
unreachable) makes Alertmanager retry; a malformed payload is 422 naming the field, which
Alertmanager does not retry (a retry would fail the same way). Duplicates (HA pairs, retry
storms) are counted, not acted on twice; stale alerts are refused per alert in the body.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from turnout.control.api.deps import Control, Editor, remote_of
from turnout.control.api.errors import FAILURES, ApiError
from turnout.control.remediation.alertmanager import WebhookPayload, records
from turnout.control.remediation.intake import receive
from turnout.core.clock import utcnow

router = APIRouter(tags=["remediation"], responses=FAILURES)
log = logging.getLogger("turnout.control.remediation")
MAX_BODY = 4 * 1024 * 1024
ENGINE = "remediation"


@router.post("/alerts/alertmanager")
async def alertmanager_webhook(
    request: Request, control: Control, principal: Editor
) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, f"the payload exceeds {MAX_BODY} bytes")
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None
    try:
        payload = WebhookPayload.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(422, f"{where}: {first['msg']}") from None
    clock = control.store.clock
    kept, refused = records(payload, utcnow(clock))
    result = await receive(control.store, control.stored, kept, clock.time())
    for key in result.runbooks:
        control.reconcile.poke(ENGINE, key)
    if result.received or refused:
        log.info(
            "alerts from %s (%s): %d new, %d duplicate, %d stale, %d runs",
            remote_of(request),
            principal.name,
            result.received,
            result.duplicates,
            len(refused),
            len(result.runs),
        )
    return {
        "received": result.received,
        "duplicates": result.duplicates,
        "refused": [{"fingerprint": r.fingerprint, "reason": r.reason} for r in refused],
        "runs": [r.id for r in result.runs],
        "unmatched": result.unmatched,
    }
