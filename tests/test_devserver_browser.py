"""The dev server's viewer page in headless Chromium: a captured event shows up in the table."""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest

webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

import productos  # noqa: E402

try:
    from tests.browser import chromium, needs_chromium
except ModuleNotFoundError:  # plain `pytest` with rootdir-relative imports
    from browser import chromium, needs_chromium  # type: ignore[no-redef]
from productos.devserver import DevServer  # noqa: E402

SCREENSHOT = os.environ.get("PRODUCTOS_DEVSERVER_SCREENSHOT", "/tmp/productos-devserver-page.png")

pytestmark = [
    pytest.mark.slow,
    needs_chromium,
]

DEFINITIONS = {
    "flags": [
        {"id": 1, "key": "new-checkout", "version": 2, "active": True,
         "filters": {"groups": [
             {"properties": [{"key": "plan", "value": ["pro"], "operator": "exact",
                              "type": "person"}], "rollout_percentage": 100},
             {"properties": [], "rollout_percentage": 25}]}},
        {"id": 2, "key": "pricing-test", "version": 1, "active": True,
         "filters": {"groups": [{"properties": [], "rollout_percentage": 100}],
                     "multivariate": {"variants": [
                         {"key": "control", "rollout_percentage": 50},
                         {"key": "cheaper", "rollout_percentage": 50}]}}},
        {"id": 3, "key": "old-banner", "version": 1, "active": False,
         "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]}},
    ],
    "group_type_mapping": {},
    "cohorts": {},
}


@pytest.fixture
def server() -> Iterator[DevServer]:
    srv = DevServer(host="127.0.0.1", port=0, definitions=DEFINITIONS).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium(1280, 900) as driver:
        yield driver


def event_names(driver: Any) -> list:
    return [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "#events td.ev-name")]


def test_captured_event_appears_on_the_page(server: DevServer, browser: Any) -> None:
    browser.get(server.url + "/")
    assert browser.title == "productos dev server"
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "events-empty").is_displayed())
    # Flags are listed with their rollout.
    WebDriverWait(browser, 10).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#flags .flag")) == 3)
    flags_text = browser.find_element(By.ID, "flags").text
    assert "new-checkout" in flags_text and "25% of users" in flags_text
    assert "cheaper 50%" in flags_text

    client = productos.Client("phc_browser", host=server.url, flush_interval=0.05)
    try:
        client.set(distinct_id="browser-user", properties={"plan": "pro"})
        client.capture("checkout completed", distinct_id="browser-user",
                       properties={"amount": 42, "currency": "EUR"})
        for i in range(3):
            client.capture("page viewed", distinct_id=f"visitor-{i}", properties={"path": "/"})
        assert client.flush(10)
    finally:
        client.shutdown(5)

    # Auto-refresh picks the events up without reloading the page.
    WebDriverWait(browser, 15).until(lambda d: "checkout completed" in event_names(d))
    row = browser.find_element(By.XPATH, "//td[text()='checkout completed']/..")
    assert "browser-user" in row.text and "amount=42" in row.text
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "stat-events").text == "5")
    counts = browser.find_element(By.ID, "counts").text
    assert "page viewed" in counts and "3" in counts

    # Clicking a row shows the whole event.
    row.click()
    WebDriverWait(browser, 10).until(
        lambda d: "currency" in d.find_element(By.CSS_SELECTOR, "tr.detail").text)

    # Evaluating flags for the person uses the stored $set properties.
    box = browser.find_element(By.ID, "flags-for")
    box.send_keys("browser-user\n")
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.CSS_SELECTOR, '.flag[data-key="new-checkout"] .value').text
        == "true")
    browser.save_screenshot(SCREENSHOT)
