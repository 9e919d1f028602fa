"""The workbench panels in headless Chromium show the JSON API's numbers: funnel, breakdown,
person view, trend chart, exposures; exceptions, URLs and sessions in the viewer; paging and
clearing the store."""

from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List

import pytest
import requests

webdriver = pytest.importorskip("selenium.webdriver")

from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# The page re-renders its tables as answers arrive: an element read mid-render is stale, and
# the wait should simply look again.
RERENDERED = (StaleElementReferenceException,)

import productos  # noqa: E402

try:
    from tests.browser import chromium, needs_chromium
except ModuleNotFoundError:  # plain `pytest` with rootdir-relative imports
    from browser import chromium, needs_chromium  # type: ignore[no-redef]
from productos.devserver import DevServer  # noqa: E402

try:
    from tests.test_workbench import at, send_designed_events
except ModuleNotFoundError:  # plain `pytest` with rootdir-relative imports
    from test_workbench import at, send_designed_events  # type: ignore[no-redef]

SCREENSHOT = os.environ.get("PRODUCTOS_WORKBENCH_SCREENSHOT", "/tmp/productos-workbench.png")

pytestmark = [
    pytest.mark.slow,
    needs_chromium,
]


@pytest.fixture
def server() -> Iterator[DevServer]:
    srv = DevServer(host="127.0.0.1", port=0).start()
    client = productos.Client("phc_browser", host=srv.url, flush_interval=0.05)
    try:
        send_designed_events(client)
        for i in range(60):  # enough for a second page of 50
            client.capture("scroll", distinct_id="p5", timestamp=at(7), properties={"i": i})
        client.capture("$pageview", distinct_id="p4", timestamp=at(6), properties={
            "$current_url": "https://shop.example/cart", "$session_id": "sess-42"})
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError as exc:
            client.capture_exception(exc, distinct_id="p4")
        assert client.flush(15)
    finally:
        client.shutdown(10)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium(1400, 1800) as driver:
        yield driver


def api(server: DevServer, path: str, **params: Any) -> Dict[str, Any]:
    response = requests.get(server.url + path, params=params, timeout=30)
    assert response.status_code == 200, response.text
    answer: Dict[str, Any] = response.json()
    return answer


def attrs(driver: Any, css: str, name: str) -> List[str]:
    return [e.get_attribute(name) for e in driver.find_elements(By.CSS_SELECTOR, css)]


def fill(driver: Any, element_id: str, text: str) -> None:
    box = driver.find_element(By.ID, element_id)
    box.clear()
    box.send_keys(text)


def test_panels_show_the_api_numbers(server: DevServer, browser: Any) -> None:
    wait = WebDriverWait(browser, 15, ignored_exceptions=RERENDERED)
    browser.get(server.url + "/")

    # Funnel panel == /api/funnel.
    expected = api(server, "/api/funnel", steps="visit,signup,purchase", window=3600)
    assert [s["count"] for s in expected["steps"]] == [7, 4, 2]
    fill(browser, "funnel-steps", "visit,signup,purchase")
    fill(browser, "funnel-window", "3600")
    browser.find_element(By.ID, "funnel-run").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#funnel-result .funnel-step"))
               == 3)
    assert attrs(browser, "#funnel-result > .funnel-step", "data-count") == ["7", "4", "2"]
    text = browser.find_element(By.ID, "funnel-result").text
    assert "4 · 57.1%" in text and "2 · 28.6%" in text
    assert "median 7.5m after step 1" in text and "median 15.0m after step 2" in text

    # With a breakdown: one group per value, the API's counts.
    fill(browser, "funnel-breakdown", "source")
    browser.find_element(By.ID, "funnel-run").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".breakdown-group"))
    groups = api(server, "/api/funnel", steps="visit,signup,purchase", window=3600,
                 breakdown="source")["breakdown"]["values"]
    assert len(groups) >= 2  # the loop below compares something
    for group in groups:
        css = f'.breakdown-group[data-value="{group["value"]}"] .funnel-step'
        assert attrs(browser, css, "data-count") == [str(s["count"]) for s in group["steps"]]

    # Person view == /api/persons/<id>.
    person = api(server, "/api/persons/anon-1")
    fill(browser, "person-id", "anon-1")
    browser.find_element(By.ID, "person-run").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#person-view .person-ids"))
    view = browser.find_element(By.ID, "person-view")
    assert "distinct ids: anon-1, user-1" in view.text
    assert browser.find_element(By.CSS_SELECTOR, "#person-view .person-events"
                                ).get_attribute("data-count") == str(person["event_count"])
    assert len(view.find_elements(By.CSS_SELECTOR, ".timeline li")) == len(person["events"])
    assert "one@example.com" in view.text

    # Trend chart == /api/trends (one SVG bar per bucket).
    trend = api(server, "/api/trends", event="visit", interval="hour")
    fill(browser, "trend-event", "visit")
    browser.find_element(By.CSS_SELECTOR, "#trend-interval option[value=hour]").click()
    browser.find_element(By.ID, "trend-run").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#trend-chart svg rect"))
    assert attrs(browser, "#trend-chart rect", "data-count") == [
        str(row["count"]) for row in trend["series"]]
    assert browser.find_element(By.CSS_SELECTOR, "#trend-chart .trend-total"
                                ).get_attribute("data-total") == str(trend["total"])

    # Exposures per variant.
    wait.until(lambda d: "pricing" in d.find_element(By.ID, "exposures").text)
    assert browser.find_element(By.ID, "exposures").text == (
        "pricing: test 3 (2 persons) / control 1 (1 persons)")
    browser.save_screenshot(SCREENSHOT)


def test_viewer_shows_exceptions_urls_sessions_pages_and_clears(server: DevServer,
                                                                browser: Any) -> None:
    wait = WebDriverWait(browser, 15, ignored_exceptions=RERENDERED)
    browser.get(server.url + "/")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#events td.exc"))
    browser.find_element(By.ID, "auto").click()  # no re-rendering under the test's feet
    exc_cell = browser.find_element(By.CSS_SELECTOR, "#events td.exc")
    assert "ZeroDivisionError: division by zero" in exc_cell.text
    exc_cell.click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.detail .stack"))
    stack = browser.find_element(By.CSS_SELECTOR, "tr.detail .stack").text
    assert stack.startswith("ZeroDivisionError: division by zero")
    assert 'File "' in stack and "test_workbench_browser.py" in stack
    row = browser.find_element(By.XPATH, "//tr[td[@class='ev-name' and text()='$pageview']]")
    assert "https://shop.example/cart" in row.text and "session sess-42" in row.text

    # Paging: the newest 50, then the next 50 older ones.
    newest = attrs(browser, "#events tr.event", "data-uuid")
    assert len(newest) == 50
    browser.find_element(By.ID, "page-older").click()
    wait.until(lambda d: attrs(d, "#events tr.event", "data-uuid")[:1] != newest[:1])
    older = attrs(browser, "#events tr.event", "data-uuid")
    assert older and not set(older) & set(newest)
    assert "visit" in [c.text for c in browser.find_elements(By.CSS_SELECTOR, "td.ev-name")]
    browser.find_element(By.ID, "page-newest").click()
    wait.until(lambda d: attrs(d, "#events tr.event", "data-uuid")[:1] == newest[:1])

    # Clearing the store (after the confirm dialog) empties it.
    browser.find_element(By.ID, "store-clear").click()
    wait.until(lambda d: d.switch_to.alert)
    browser.switch_to.alert.accept()
    wait.until(lambda d: d.find_element(By.ID, "stat-events").text == "0")
    assert server.store.count() == 0
    assert d_empty(browser)


def d_empty(browser: Any) -> bool:
    return bool(WebDriverWait(browser, 10, ignored_exceptions=RERENDERED).until(
        lambda d: d.find_element(By.ID, "events-empty").is_displayed()))
