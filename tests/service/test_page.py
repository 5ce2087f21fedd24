"""The page at GET / in a real browser (Debian's chromium through chromedriver and Selenium): upload
a scene, ask two categories, wait for the look; the scene shows on its own once picked, every category
shows K decoded product images and its attention map captioned with its name, the legend shows, and
the browser console logged no error."""

import pytest
from tests.helpers.serve_testing import call

pytestmark = pytest.mark.slow
K = 3


def test_page_has_no_external_url(batched_server):
    status, headers, body = call(batched_server.url + "/")
    assert status == 200 and headers.get("Content-Type").startswith("text/html")
    page = body.decode()
    assert "http://" not in page and "https://" not in page and "//cdn" not in page


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
    wait.until(lambda d: d.execute_script("const i = document.getElementById('scene');"
                                          "return i.complete && i.naturalWidth > 0 && i.offsetWidth > 0"))
    assert not browser.find_element(By.ID, "legend").is_displayed()  # no map yet
    browser.find_element(By.ID, "go").click()
    wait.until(lambda d: d.execute_script("return document.body.dataset.done === '1'"))
    # every thumbnail finished loading (decoded or failed) before counting the decoded ones
    wait.until(lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))
    shown = browser.execute_script("""
        return [...document.querySelectorAll('section.cat')].map(s => ({
          category: s.dataset.category,
          decoded: [...s.querySelectorAll('img.product')].filter(i => i.naturalWidth > 0).length,
          attention: s.querySelectorAll('canvas').length,
          caption: s.querySelector('figure.attention figcaption').textContent}));""")
    assert sorted(s["category"] for s in shown) == sorted(wanted)  # shown in the model's order
    for section in shown:
        assert section["decoded"] == K and section["attention"] == 1, section
        assert section["caption"] == "attention for " + section["category"], section
    legend = browser.find_element(By.ID, "legend")
    assert legend.is_displayed() and "low" in legend.text and "high" in legend.text
    assert "rgba(255, 0, 0, 0.6)" in browser.execute_script(
        "return getComputedStyle(document.querySelector('#legend .bar')).backgroundImage")
    assert browser.find_element(By.ID, "scene").is_displayed()
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors
