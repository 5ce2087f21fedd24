"""GET /openapi.json: the document lists exactly the app's routes and methods, carries the bounds and
categories the routes check, and passes a real OpenAPI validator (openapi-spec-validator). The app is
built in process (no model: its import loads no TensorFlow), so these tests are fast; the real server
answers /openapi.json and /docs in test_docs_page.py."""

import types

import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from ctl_keras.service.app import KEYED, build_app
from ctl_keras.service.metrics import Metrics
from ctl_keras.service.openapi import document
from ctl_keras.service.options import ServeOptions

CATEGORIES = ["shoes", "tops", "<b>bags</b>"]


def _opts(**kwargs):
    return ServeOptions(index="unused", max_k=37, deadline_ms=1234, **kwargs)


def _app_operations(app) -> set[tuple[str, str]]:
    """(path, method) of every route the app answers; GET implies HEAD in Starlette, not documented."""
    out = set()
    for route in app.routes:
        assert isinstance(route, Route), route
        for method in route.methods or {"GET"}:
            if method != "HEAD":
                out.add((route.path, method.lower()))
    return out


@pytest.mark.parametrize("api_key", [None, "secret"])
@pytest.mark.parametrize("categories", [CATEGORIES, None])  # None: still loading, no enum
def test_document_validates_and_matches_the_routes(api_key, categories):
    opts = _opts(api_key=api_key)
    app = build_app(opts, types.SimpleNamespace(current=None), Metrics())
    doc = document(opts, categories, KEYED)
    validate(doc)
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert documented == _app_operations(app)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            keyed = api_key is not None and path in KEYED
            assert ("security" in op) == keyed and ("401" in op["responses"]) == keyed, (path, method)
            for status, answer in op["responses"].items():  # every error answer is {"error": ...}
                if status != "200":
                    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_bounds_and_categories_are_the_served_ones():
    doc = document(_opts(), CATEGORIES, KEYED)
    look = doc["paths"]["/v1/look"]["post"]
    params = {p["name"]: p["schema"] for p in look["parameters"]}
    assert params["k"]["maximum"] == 37 and params["timeout_ms"]["maximum"] == 1234
    assert doc["components"]["schemas"]["Category"]["enum"] == CATEGORIES
    assert set(look["requestBody"]["content"]) == {"image/jpeg", "image/png", "multipart/form-data"}
    assert {"404", "413", "415", "422", "503", "504"} <= set(look["responses"])
    assert "Retry-After" in look["responses"]["503"]["headers"]
    assert "enum" not in document(_opts(), None, KEYED)["components"]["schemas"]["Category"]
