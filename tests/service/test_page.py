"""The page at GET / in a real browser (Debian's chromium through chromedriver and Selenium): upload
a scene, ask two categories, wait for the look; every category shows K decoded product images and
its attention map, and the browser console logged no error."""

import os
import shutil

import pytest
from tests.helpers.serve_testing import call

pytestmark = pytest.mark.slow
K = 3
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def test_page_has_no_external_url(batched_server):
    status, headers, body = call(batched_server.url + "/")
    assert status == 200 and headers.get("Content-Type").startswith("text/html")
    page = body.decode()
    assert "http://" not in page and "https://" not in page and "//cdn" not in page


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        pytest.fail(f"{CHROMIUM} / {DRIVER} missing: apt-get install -y chromium chromium-driver (.ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_upload_shows_the_look(batched_server, serve_setup, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    scene = serve_setup[3][0]
    wanted = ["shoes", "tops"]
    browser.get(batched_server.url + "/")
    wait = WebDriverWait(browser, 90)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#cats input"))
    for box in browser.find_elements(By.CSS_SELECTOR, "#cats input"):
        if (box.get_attribute("value") in wanted) != box.is_selected():
            box.click()
    k_field = browser.find_element(By.ID, "k")
    k_field.clear()
    k_field.send_keys(str(K))
    browser.find_element(By.ID, "file").send_keys(scene)
    browser.find_element(By.ID, "go").click()
    wait.until(lambda d: d.execute_script("return document.body.dataset.done === '1'"))
    # every thumbnail finished loading (decoded or failed) before counting the decoded ones
    wait.until(lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))
    shown = browser.execute_script("""
        return [...document.querySelectorAll('section.cat')].map(s => ({
          category: s.dataset.category,
          decoded: [...s.querySelectorAll('img.product')].filter(i => i.naturalWidth > 0).length,
          attention: s.querySelectorAll('canvas').length}));""")
    assert sorted(s["category"] for s in shown) == sorted(wanted)  # shown in the model's order
    for section in shown:
        assert section["decoded"] == K and section["attention"] == 1, section
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors
