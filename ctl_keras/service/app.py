"""The ASGI app (Starlette): routes, bounds, error answers, metrics.

Every error is JSON {"error": one line} with its status: 401 (API key), 404 (unknown category,
product, route), 405 (method), 413 (body or pixels too large), 415 (not a JPEG/PNG, or another Content-Type),
422 (corrupt image, bad k), 503 + Retry-After (queue full, or not loaded yet), 504 (deadline). No
error answer carries a traceback; an unexpected one is logged and answered 500 in one line. The
server never fetches a URL a client gives: it reads only the request body. GET /openapi.json describes
these routes (openapi.py) and GET /docs lets a reader try them (docs_page.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ctl_keras.retrieval import recommender
from ctl_keras.retrieval.scene_tower import BadImage
from ctl_keras.retrieval.search import ranked
from ctl_keras.service.batcher import Batcher, QueueFull
from ctl_keras.service.docs_page import DOCS
from ctl_keras.service.images import HTTPError, check_image, clip_echoes, image_type
from ctl_keras.service.log_limits import RateLimited
from ctl_keras.service.openapi import document
from ctl_keras.service.page import PAGE
from ctl_keras.service.tower import TowerUnavailable
from ctl_keras.savedmodel import DEFAULT_MAX_IMAGE_PIXELS

log = logging.getLogger("ctl_keras.serve")
# The routes that require the API key when one is set: the endpoints' check and /openapi.json's security.
KEYED = frozenset({"/v1/look", "/v1/query", "/admin/reload", "/metrics"})


def _json(status: int, body: dict, headers=None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPError(422, f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise HTTPError(422, f"{name}={value} is out of range {low}..{high}")
    return value


def rank_batch(gen, asks, outputs) -> list[tuple[dict, dict | None]]:
    """(look, attention maps) per request of a batch, one search per (category, k) for the whole batch.

    asks: (category names, k, with_attention) per request; outputs: the tower's (query [C, d],
    attention [C, g, g]) per request, C = every category of the index."""
    column = {n: j for j, n in enumerate(gen.index.categories)}
    wanted: dict[tuple[str, int], list[int]] = {}
    for i, (names, k, _) in enumerate(asks):
        for n in names:
            wanted.setdefault((n, k), []).append(i)
    found: dict[tuple[str, int, int], list[dict]] = {}
    for (n, k), requests in wanted.items():
        queries = np.stack([outputs[i][0][column[n]] for i in requests])
        for i, products in zip(requests, ranked(gen.backend, queries, n, k)):
            found[n, k, i] = products
    results = []
    for i, (names, k, with_attention) in enumerate(asks):
        look = {n: found[n, k, i] for n in names}
        maps = {n: np.round(outputs[i][1][column[n]], 5).tolist() for n in names} if with_attention else None
        results.append((look, maps))
    return results


def build_app(opts, live, metrics) -> Starlette:
    batcher = Batcher(live, metrics, rank_batch, max_batch=opts.max_batch, max_wait=opts.max_wait_ms / 1000,
                      max_queue=opts.max_queue)
    api_key = opts.api_key.encode() if opts.api_key else None
    tower_down = RateLimited(log)

    def endpoint(route: str):
        protected = route in KEYED

        def wrap(handler):
            async def run(request: Request):
                started = time.perf_counter()
                try:
                    if protected and api_key is not None:
                        given = request.headers.get("x-api-key", "")
                        auth = request.headers.get("authorization", "")
                        if auth.lower().startswith("bearer "):
                            given = auth[7:]
                        if not hmac.compare_digest(given.strip().encode(), api_key):
                            raise HTTPError(401, "missing or wrong API key (header X-API-Key or Authorization: Bearer)")
                    response = await handler(request)
                except HTTPError as err:
                    response = _json(err.status, {"error": clip_echoes(err.reason)}, err.headers)
                except ClientDisconnect:
                    # The client hung up: not our error, no traceback. When the server cut the request
                    # short (body timeout, shutdown), closed_by_server is the status it answered.
                    status = getattr(request.state, "closed_by_server", None)
                    if status is None:
                        metrics.client_disconnects.labels(route=route).inc()
                    response = Response(status_code=status or 499)
                except asyncio.CancelledError:  # still running when the drain's deadline passed
                    response = _json(503, {"error": "server shutting down; retry"}, {"Retry-After": "1"})
                except Exception as err:  # a bug: logged with its traceback, answered in one line
                    log.exception("%s failed", route)
                    response = _json(500, {"error": f"internal error ({type(err).__name__})"})
                metrics.requests.labels(route=route, status=str(response.status_code)).inc()
                metrics.latency.labels(route=route).observe(time.perf_counter() - started)
                return response
            return run
        return wrap

    def generation():
        current = live.current
        if current is None:
            raise HTTPError(503, "models and index are still loading", {"Retry-After": "2"})
        return current

    async def read_image(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > opts.max_body_bytes):
            raise HTTPError(413, f"body of {length} bytes exceeds --max_body_bytes={opts.max_body_bytes}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > opts.max_body_bytes:
                raise HTTPError(413, f"body exceeds --max_body_bytes={opts.max_body_bytes}")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind.startswith("image/"):
            data = bytes(body)
        elif kind == "multipart/form-data":
            request._body = bytes(body)  # parsed from what was read under the limit above
            try:
                form = await request.form(max_files=1, max_fields=8)
            except Exception:
                raise HTTPError(422, "malformed multipart body") from None
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise HTTPError(422, "multipart body has no file field named 'image'")
            data = await upload.read()
        else:
            raise HTTPError(415, f"Content-Type {kind or 'missing'}: send image/jpeg, image/png or "
                                 "multipart/form-data with a file field 'image'")
        check_image(data, opts.max_pixels or live.current.meta.get("max_image_pixels") or DEFAULT_MAX_IMAGE_PIXELS)
        return data

    async def answer(request: Request, names: list[str], k: int, with_attention: bool):
        image = await read_image(request)
        timeout = _int_param(request, "timeout_ms", opts.deadline_ms, 1, opts.deadline_ms) / 1000
        started = time.perf_counter()
        try:
            submitted = batcher.submit(image, (names, k, with_attention))
            gen, (look, maps), tower_seconds, batch = await asyncio.wait_for(submitted, timeout)
        except QueueFull as err:
            raise HTTPError(503, f"server busy: {err}", {"Retry-After": "1"}) from None
        except asyncio.TimeoutError:
            raise HTTPError(504, f"no answer within the deadline of {timeout * 1000:.0f} ms") from None
        except BadImage as err:
            raise HTTPError(422, f"the scene tower cannot use this image: {err}") from None
        except TowerUnavailable as err:
            tower_down("tower", f"answering 503: {err}")
            raise HTTPError(503, str(err), {"Retry-After": "5"}) from None
        body = {"index_generation": gen.number, "model_version": gen.version, "batch_size": batch,
                "timings_ms": {"tower": round(tower_seconds * 1000, 2),
                               "total": round((time.perf_counter() - started) * 1000, 2)}}
        return look, maps, body

    def parse_categories(gen, raw):
        try:
            return recommender.parse_categories(gen.index, raw)
        except ValueError as err:
            raise HTTPError(404, str(err)) from None

    @endpoint("/v1/look")
    async def look(request: Request):
        gen = generation()
        names = parse_categories(gen, request.query_params.get("categories"))
        k = _int_param(request, "k", 10, 1, opts.max_k)
        with_attention = request.query_params.get("attention", "0") in ("1", "true")
        result, maps, body = await answer(request, names, k, with_attention)
        return _json(200, dict(body, look=result, **({"attention": maps} if maps is not None else {})))

    @endpoint("/v1/query")
    async def query(request: Request):
        gen = generation()
        category = request.query_params.get("category")
        if not category:
            raise HTTPError(422, "category=NAME is required")
        names = parse_categories(gen, [category])
        k = _int_param(request, "k", 10, 1, opts.max_k)
        result, _, body = await answer(request, names, k, False)
        return _json(200, dict(body, category=category, results=result[category]))

    @endpoint("/v1/categories")
    async def categories(request: Request):
        gen = generation()
        return _json(200, {"categories": list(gen.index.categories), "index_generation": gen.number,
                           "max_k": opts.max_k, "thumbnails": bool(gen.images)})

    @endpoint("/v1/products")
    async def product_image(request: Request):
        data = generation().images.get(request.path_params["product_id"])
        if data is None:
            raise HTTPError(404, f"no image of product {request.path_params['product_id']!r} in this catalog")
        return Response(data, media_type=image_type(data), headers={"Cache-Control": "max-age=300"})

    @endpoint("/admin/reload")
    async def reload(request: Request):
        outcome = await asyncio.get_running_loop().run_in_executor(None, live.reload, True)
        status = 200 if not outcome.startswith("refused") else 409
        return _json(status, {"result": outcome, "index_generation": live.current.number if live.current else None})

    @endpoint("/healthz")
    async def healthz(request: Request):
        return _json(200, {"status": "ok"})

    @endpoint("/readyz")
    async def readyz(request: Request):
        gen = generation()
        return _json(200, {"status": "ready", "index_generation": gen.number, "model_version": gen.version,
                           "products": len(gen.index), "last_reload_error": live.last_error})

    @endpoint("/metrics")  # traffic and error rates are not for anyone who can reach the port
    async def metrics_route(request: Request):
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def page(request: Request):
        return HTMLResponse(PAGE)

    @endpoint("/openapi.json")
    async def openapi(request: Request):
        current = live.current
        return _json(200, document(opts, list(current.index.categories) if current else None, KEYED))

    @endpoint("/docs")
    async def docs(request: Request):
        return HTMLResponse(DOCS)

    async def http_error(request: Request, exc: HTTPException):
        return _json(exc.status_code, {"error": clip_echoes(f"{exc.detail}: {request.method} '{request.url.path}'")})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    routes = [Route("/", page), Route("/v1/look", look, methods=["POST"]), Route("/v1/query", query, methods=["POST"]),
              Route("/v1/categories", categories), Route("/v1/products/{product_id}/image", product_image),
              Route("/admin/reload", reload, methods=["POST"]), Route("/healthz", healthz),
              Route("/readyz", readyz), Route("/metrics", metrics_route),
              Route("/openapi.json", openapi), Route("/docs", docs)]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error},
                    lifespan=lifespan)
    app.state.batcher = batcher
    return app
