"""The real server describes itself: /openapi.json passes the validator and names the served categories
and max_k; /docs in chromium that can reach only loopback renders every operation and runs a look
from an uploaded scene and a product image (and its 404), loading nothing from anywhere but the server."""

import json

import pytest
from openapi_spec_validator import validate
from tests.helpers.serve_testing import call

pytestmark = pytest.mark.slow


def test_openapi_json_is_valid_and_names_what_is_served(batched_server):
    status, headers, body = call(batched_server.url + "/openapi.json")
    assert status == 200 and headers.get("Content-Type") == "application/json"
    doc = json.loads(body)
    validate(doc)
    served = json.loads(call(batched_server.url + "/v1/categories")[2])
    assert doc["components"]["schemas"]["Category"]["enum"] == served["categories"]
    k = next(p for p in doc["paths"]["/v1/look"]["post"]["parameters"] if p["name"] == "k")
    assert k["schema"]["maximum"] == served["max_k"]
    status, headers, body = call(batched_server.url + "/docs")
    assert status == 200 and headers.get("Content-Type").startswith("text/html")
    assert "http://" not in body.decode() and "https://" not in body.decode()


def test_docs_page_renders_and_tries_a_look(batched_server, serve_setup, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    doc = json.loads(call(batched_server.url + "/openapi.json")[2])
    browser.get(batched_server.url + "/docs")
    wait = WebDriverWait(browser, 90)
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    shown = browser.execute_script(
        "return [...document.querySelectorAll('section.op')].map(s => [s.dataset.path, s.dataset.method])")
    assert sorted(map(tuple, shown)) == sorted((p, m) for p, item in doc["paths"].items() for m in item)

    look = browser.find_element(By.CSS_SELECTOR, "section.op[data-path='/v1/look']")
    Select(look.find_element(By.CSS_SELECTOR, "select[data-param='categories']")).select_by_value("shoes")
    look.find_element(By.CSS_SELECTOR, "input[data-param='k']").send_keys("2")
    look.find_element(By.CSS_SELECTOR, "input[data-param='attention']").click()
    look.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(serve_setup[3][0])
    look.find_element(By.CSS_SELECTOR, "button").click()
    wait.until(lambda d: look.find_element(By.CSS_SELECTOR, "div.answer").get_attribute("data-done") == "1")
    assert " -> 200 " in look.find_element(By.CSS_SELECTOR, "pre.status").text
    answer = json.loads(look.find_element(By.CSS_SELECTOR, "pre.body").text)
    assert list(answer["look"]) == ["shoes"] and len(answer["look"]["shoes"]) == 2 and "shoes" in answer["attention"]

    image = browser.find_element(By.CSS_SELECTOR, "section.op[data-path='/v1/products/{product_id}/image']")
    field = image.find_element(By.CSS_SELECTOR, "input[data-param='product_id']")
    for product_id, status in ((answer["look"]["shoes"][0]["product_id"], 200), ("no <b>such</b> id", 404)):
        field.clear()
        field.send_keys(product_id)
        browser.execute_script("arguments[0].removeAttribute('data-done')", image.find_element(By.CSS_SELECTOR,
                                                                                             "div.answer"))
        image.find_element(By.CSS_SELECTOR, "button").click()
        wait.until(lambda d: image.find_element(By.CSS_SELECTOR, "div.answer").get_attribute("data-done") == "1")
        assert f" -> {status} " in image.find_element(By.CSS_SELECTOR, "pre.status").text
        if status == 200:
            wait.until(lambda d: d.execute_script("const i = document.querySelector('img.answer');"
                                                  "return i.complete && i.naturalWidth > 0"))
        else:  # the error's JSON, its echo of the id shown as text
            assert "no <b>such</b> id" in json.loads(image.find_element(By.CSS_SELECTOR, "pre.body").text)["error"]

    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(u.startswith(batched_server.url + "/") for u in loaded), loaded
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")
              and "404" not in e["message"]]  # the 404 asked for above is logged as a failed fetch
    assert errors == [], errors
