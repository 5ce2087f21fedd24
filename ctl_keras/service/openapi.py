"""The service's OpenAPI 3 document (GET /openapi.json), built per request from the served options
and generation, so its bounds (max_k, deadline, body size) and the category enum are the ones the
routes check, not a copy that can drift. tests/service/test_openapi.py checks it lists exactly the
app's routes and passes a real OpenAPI validator."""

from __future__ import annotations

OPENAPI_VERSION = "3.0.3"
ERROR = {"$ref": "#/components/schemas/Error"}
_REASONS = {
    400: "Bad request", 401: "Missing or wrong API key (header X-API-Key or Authorization: Bearer)",
    404: "Unknown category, product or route", 405: "Method not allowed on this route",
    408: "Request head or body not complete within --head_timeout / --body_timeout (connection closed)",
    409: "The reload was refused; the previous generation keeps serving",
    413: "Body over --max_body_bytes, or image over --max_pixels (read from its header)",
    415: "Not a JPEG/PNG image, or another Content-Type",
    422: "Corrupt or truncated image, bad query parameter, missing category",
    500: "Unexpected server error (one line, no traceback)",
    503: "Busy (queue or connections full), still loading, tower unavailable, or shutting down; see Retry-After",
    504: "No answer within the deadline (--deadline_ms or the request's timeout_ms)",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}


def _errors(*statuses: int) -> dict:
    """The {"error": one line} answers of a route (500 and 405 for every route)."""
    out = {}
    for status in sorted({*statuses, 405, 500}):
        out[str(status)] = {"description": _REASONS[status], "content": {"application/json": {"schema": ERROR}}}
        if status == 503:
            out[str(status)]["headers"] = _RETRY_AFTER
    return out


def _json_ok(schema_name: str, description: str) -> dict:
    return {"200": {"description": description,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}}}}


def _int_query(name: str, default: int, high: int, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "integer", "minimum": 1, "maximum": high, "default": default}}


def _schemas(categories: list[str] | None) -> dict:
    """The answers' JSON shapes (the look's as `recommend look --json` prints it)."""
    category = {"type": "string", **({"enum": categories} if categories else {})}
    product = {"type": "object", "required": ["product_id", "d_star"], "properties": {
        "product_id": {"type": "string"},
        "d_star": {"type": "number", "description": "distance to the scene's query; smaller is closer"}}}
    products = {"type": "array", "items": {"$ref": "#/components/schemas/Product"}}
    served = {"index_generation": {"type": "integer"}, "model_version": {"type": "integer"},
              "batch_size": {"type": "integer", "description": "images in the tower call this one shared"},
              "timings_ms": {"type": "object", "properties": {"tower": {"type": "number"},
                                                              "total": {"type": "number"}}}}
    grid = {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
            "description": "g x g attention over the scene, row by row from the top-left"}
    return {
        "Error": {"type": "object", "required": ["error"], "additionalProperties": False,
                  "properties": {"error": {"type": "string", "description": "one line; client text clipped"}}},
        "Category": category,
        "Product": product,
        "Look": {"type": "object", "required": ["look", *served], "properties": {
            **served, "look": {"type": "object", "additionalProperties": products,
                               "description": "category -> its products, closest first"},
            "attention": {"type": "object", "additionalProperties": grid,
                          "description": "category -> attention map; only with attention=1"}}},
        "Query": {"type": "object", "required": ["category", "results", *served], "properties": {
            **served, "category": {"$ref": "#/components/schemas/Category"}, "results": products}},
        "Categories": {"type": "object", "required": ["categories", "index_generation", "max_k", "thumbnails"],
                       "properties": {"categories": {"type": "array",
                                                     "items": {"$ref": "#/components/schemas/Category"}},
                                      "index_generation": {"type": "integer"}, "max_k": {"type": "integer"},
                                      "thumbnails": {"type": "boolean"}}},
        "Reload": {"type": "object", "required": ["result", "index_generation"], "properties": {
            "result": {"type": "string"}, "index_generation": {"type": "integer", "nullable": True}}},
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
        "Ready": {"type": "object", "required": ["status", "index_generation", "model_version", "products"],
                  "properties": {"status": {"type": "string"}, "index_generation": {"type": "integer"},
                                 "model_version": {"type": "integer"}, "products": {"type": "integer"},
                                 "last_reload_error": {"type": "string", "nullable": True}}},
    }


def document(opts, categories: list[str] | None, keyed: frozenset[str]) -> dict:
    """The OpenAPI document. categories: the served index's (None while loading: no enum); keyed: the
    routes that require the API key (they carry a security requirement only when a key is set)."""
    image_body = {"required": True, "description": f"the scene photo, at most {opts.max_body_bytes} bytes", "content": {
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
            "image": {"type": "string", "format": "binary", "description": "JPEG or PNG"}}}}}}
    k = _int_query("k", 10, opts.max_k, "products per category")
    timeout = _int_query("timeout_ms", opts.deadline_ms, opts.deadline_ms, "this request's deadline in ms")
    names = {"type": "array", "items": {"$ref": "#/components/schemas/Category"}}
    look_params = [
        {"name": "categories", "in": "query", "required": False, "style": "form", "explode": False,
         "description": "comma-separated categories (default: every one)", "schema": names},
        k, {"name": "attention", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
            "description": "add each category's attention map (1 or true)"}, timeout]
    query_params = [{"name": "category", "in": "query", "required": True,
                     "schema": {"$ref": "#/components/schemas/Category"}}, k, timeout]
    scene_errors = _errors(404, 413, 415, 422, 503, 504)
    paths = {
        "/v1/look": {"post": {"summary": "The look: top-k products of each category for a scene photo",
                              "operationId": "look", "parameters": look_params, "requestBody": image_body,
                              "responses": {**_json_ok("Look", "the look"), **scene_errors}}},
        "/v1/query": {"post": {"summary": "One category's top-k products for a scene photo", "operationId": "query",
                               "parameters": query_params, "requestBody": image_body,
                               "responses": {**_json_ok("Query", "one category's products"), **scene_errors}}},
        "/v1/categories": {"get": {"summary": "The served index's categories, generation and max_k",
                                   "operationId": "categories",
                                   "responses": {**_json_ok("Categories", "the categories"), **_errors(503)}}},
        "/v1/products/{product_id}/image": {"get": {
            "summary": "A product's catalog image (thumbnail)", "operationId": "productImage",
            "parameters": [{"name": "product_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "the image", "content": {
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                "image/png": {"schema": {"type": "string", "format": "binary"}}}}, **_errors(404, 503)}}},
        "/admin/reload": {"post": {"summary": "Load the index's current generation now", "operationId": "reload",
                                   "responses": {**_json_ok("Reload", "loaded or unchanged"), **_errors(409)}}},
        "/healthz": {"get": {"summary": "Liveness: 200 once the process is up", "operationId": "healthz",
                             "responses": {**_json_ok("Health", "alive"), **_errors()}}},
        "/readyz": {"get": {"summary": "Readiness: 200 once index and tower are loaded", "operationId": "readyz",
                            "responses": {**_json_ok("Ready", "ready"), **_errors(503)}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics", "responses": {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors()}}},
        "/": {"get": {"summary": "The look page (HTML)", "operationId": "page", "responses": {
            "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}, **_errors()}}},
        "/docs": {"get": {"summary": "This API's interactive docs (HTML, no external asset)", "operationId": "docs",
                          "responses": {"200": {"description": "HTML",
                                                "content": {"text/html": {"schema": {"type": "string"}}}},
                                        **_errors()}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "responses": {
            "200": {"description": "OpenAPI 3 document", "content": {"application/json": {"schema": {
                "type": "object"}}}}, **_errors()}}},
    }
    for path, operations in paths.items():
        for operation in operations.values():
            operation["responses"]["408"] = {"description": _REASONS[408],
                                             "content": {"application/json": {"schema": ERROR}}}
            if path in keyed and opts.api_key:
                operation["security"] = [{"apiKey": []}, {"bearer": []}]
                operation["responses"]["401"] = {"description": _REASONS[401],
                                                 "content": {"application/json": {"schema": ERROR}}}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Complete the look", "version": "1",
                 "description": "Scene photo in, catalog products per category out. Every error is JSON "
                                '{"error": one line} with its status; no error carries a traceback.'},
        "paths": paths,
        "components": {"schemas": _schemas(categories), "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "bearer": {"type": "http", "scheme": "bearer"}}},
    }
