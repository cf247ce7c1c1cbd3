"""The worker's HTTP API, on the Faust web server (one port per worker, localhost by default).

``GET /customers/{id}`` is answered by the worker that owns the customer: any other worker
forwards the request there (``table_route``). Routing hashes the table's serialised key, and the
table's keys are the raw customer-id bytes, exactly the input topics' message keys, so the route
and the data agree (with faust's default JSON keys most lookups would go to the wrong worker).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import re
import uuid
from typing import Any, Callable

import aiohttp
import faust
import orjson
from faust.web import Request, Response, View

from models.state import CustomerState
from monitoring.metrics import CONTENT_TYPE_LATEST
from schemas.erasure import erasure_now
from streams.documents import kpi_sums_document, profile_document, readiness_document, segments_document
from streams.effective_config import effective_config
from streams.runtime import Runtime

log = logging.getLogger("segstream.web")

# Same as the contracts' Identifier: printable ASCII without spaces, 1-128 characters.
_CUSTOMER_ID = re.compile(r"^[\x21-\x7E]{1,128}$")


def _json(view: View, doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return view.bytes(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), content_type="application/json",
                      status=status, headers=headers)


def bearer_ok(request: Request, token: str | None) -> bool:
    """No token configured, or ``Authorization: Bearer <token>`` (compared in constant time)."""
    if token is None:
        return True
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


def requires_token(token: str | None) -> Callable:
    """Customer data (lookup, erase) needs the API token; checked before a lookup is forwarded to
    the worker that owns the customer (which checks it again: faust forwards the headers)."""

    def decorate(handler: Callable) -> Callable:
        @functools.wraps(handler)
        async def guarded(view: View, request: Request, *args: Any, **kwargs: Any) -> Response:
            if not bearer_ok(request, token):
                return _json(view, {"error": "a valid bearer token is required"}, 401,
                             headers={"WWW-Authenticate": 'Bearer realm="segstream"'})
            return await handler(view, request, *args, **kwargs)

        return guarded

    return decorate


#: Seconds a client is told to wait when the customer's owner cannot be reached: a restarted
#: static member is back within seconds; a dead one's partitions move within the session timeout.
RETRY_AFTER_S = 5


def owner_unreachable_is_503(handler: Callable) -> Callable:
    """A lookup forwarded to the worker that owns the customer (``table_route``) fails when that
    worker has just died or restarts: answer 503 with ``Retry-After`` instead of faust's 500 and a
    traceback. Wraps the routed handler, so a failure of the owner's own handler is not hidden."""

    @functools.wraps(handler)
    async def routed(view: View, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return await handler(view, request, *args, **kwargs)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("lookup not forwarded: the owning worker is unreachable (%s)", type(exc).__name__)
            return _json(view, {"error": "the worker that holds this customer is unreachable; retry shortly"},
                         503, headers={"Retry-After": str(RETRY_AFTER_S)})

    return routed


def register_web(app: faust.App, rt: Runtime) -> None:
    table = rt.table
    token = rt.settings.worker.api_token.get_secret_value() if rt.settings.worker.api_token else None
    rt.wiring["api_token"] = token is not None  # what the customer views below require (GET /config)

    @app.page("/customers/{customer_id}")
    class CustomerView(View):
        @requires_token(token)
        @owner_unreachable_is_503
        @app.table_route(table=table, match_info="customer_id")  # type: ignore[arg-type]  # faust types a view method as (self, request) only
        async def get(self, request: Request, customer_id: str) -> Response:
            if not _CUSTOMER_ID.match(customer_id):
                return _json(self, {"error": "invalid customer id"}, 400)
            if not rt.app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]  # not in faust's TableManagerT
                # Not "unknown customer": the table is still being restored from its changelog.
                return _json(self, {"error": "recovering: try again shortly"}, 503,
                             headers={"Retry-After": str(RETRY_AFTER_S)})
            raw = rt.store.get(customer_id.encode())  # states waiting to be written included
            state = CustomerState.from_bytes(raw) if raw is not None else None
            if state is None or not state.holds_data:  # unknown, or erased (only the marker is left)
                return _json(self, {"error": "unknown customer", "customer_id": customer_id}, 404)
            return _json(self, profile_document(rt, state))

        @requires_token(token)
        async def delete(self, request: Request, customer_id: str) -> Response:
            """Erasure: the request, with the input topics' end offsets as its cutoff, goes to the
            erasures topic, whose owner deletes the state (streams.processor)."""
            if not _CUSTOMER_ID.match(customer_id):
                return _json(self, {"error": "invalid customer id"}, 400)
            try:
                cutoff = await rt.input_end_offsets()
                req = erasure_now(customer_id, request_id=f"api-{uuid.uuid4()}", cutoff=cutoff)
                await (await rt.topics.erasures.send(key=customer_id.encode(), value=req.to_json()))
            except Exception as exc:  # nothing was accepted: say so, and when to retry
                log.warning("erase request not accepted: %s", type(exc).__name__)
                return _json(self, {"error": "Kafka did not accept the request; nothing was changed, retry"},
                             503, headers={"Retry-After": str(RETRY_AFTER_S)})
            return _json(self, {
                "status": "accepted", "request_id": req.request_id,
                "status_url": f"/customers/{customer_id}/erasures/{req.request_id}", "cutoff": cutoff,
                "guarantee": "every event of this customer produced before now is erased, whether it has been "
                             "consumed yet or not, and no event produced after now; segment exits with reason "
                             "'erased' follow. Applied when the worker that owns the customer reaches the "
                             "request, usually within seconds: status_url says when."}, 202)

    @app.page("/customers/{customer_id}/erasures/{request_id}")
    class ErasureStatusView(View):
        @requires_token(token)
        @owner_unreachable_is_503
        @app.table_route(table=table, match_info="customer_id")  # type: ignore[arg-type]  # faust types a view method as (self, request) only
        async def get(self, request: Request, customer_id: str, request_id: str) -> Response:
            if not _CUSTOMER_ID.match(customer_id) or not _CUSTOMER_ID.match(request_id):
                return _json(self, {"error": "invalid customer or request id"}, 400)
            raw = rt.store.get(customer_id.encode())  # states waiting to be written included
            applied = raw is not None and CustomerState.from_bytes(raw).erasure_applied(request_id)
            return _json(self, {"customer_id": customer_id, "request_id": request_id, "applied": applied})

    @app.page("/segments")
    class SegmentsView(View):
        async def get(self, request: Request) -> Response:
            return _json(self, segments_document(rt))

    @app.page("/segments/kpis")
    class SegmentKpisView(View):
        async def get(self, request: Request) -> Response:
            return _json(self, kpi_sums_document(rt))

    @app.page("/health")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return _json(self, {"status": "ok"})

    @app.page("/config")
    class ConfigView(View):
        async def get(self, request: Request) -> Response:
            return _json(self, effective_config(rt))  # read from the parts it configures; no secrets

    @app.page("/ready")
    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            status = readiness_document(rt)
            return _json(self, status, 200 if status["ready"] else 503)

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(rt.metrics.exposition(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
