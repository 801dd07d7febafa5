"""The ECDA dashboard at `/` and the shared SVG plotting layer: rendered content, escaping, the
token never in the page, and the buttons driven in a real headless Chromium."""

import json
import re
import shutil
import threading
import time

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from test_ecda_service import AUTH, TOKEN

from compass.ecda import Registry
from compass.ecda.control import Controls
from compass.ecda.jobs import JobQueue
from compass.ecda.service import create_app
from compass.ecda.store import QueryStore
from compass.report import render_html
from compass.report.svg import bar_chart, line_chart, nice_ticks, scatter
from compass.testing import free_port


def test_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0, 0.083) == [0.0, 0.02, 0.04, 0.06, 0.08, 0.1]
    assert nice_ticks(3, 47)[0] <= 3 and nice_ticks(3, 47)[-1] >= 47
    assert nice_ticks(1, 1) == [1.0, 1.2, 1.4, 1.6, 1.8, 2.0]


def test_charts_have_axes_values_legends_and_hover_details():
    svg = bar_chart(["0", "1", "2"], {"usage": [0.5, 0.3, 0.2], "selected": [0.1, 0.6, 0.3]},
                    y_label="share", x_label="cluster")
    assert re.findall(r"class='tick'>([^<]+)<", svg)[:4] == ["0", "0.2", "0.4", "0.6"]
    assert "class='axis-label'>share<" in svg and "class='axis-label'>cluster<" in svg
    assert re.findall(r"data-value='([^']+)'", svg) == ["0.5", "0.1", "0.3", "0.6", "0.2", "0.3"]
    assert "<title>1 · selected: 0.6</title>" in svg and "class='value'>0.6<" in svg
    assert re.findall(r"class='legend'>([^<]+)<", svg) == ["usage", "selected"]
    line = line_chart([0, 1, 2], {"js": [0.01, 0.02, 0.2], "threshold": [0.05] * 3}, y_label="JS",
                      x_label="window", dashed=["threshold"], markers=[2])
    assert line.count("class='point'") == 3 and line.count("class='marker'") == 1
    assert "stroke-dasharray" in line and "class='legend'>alarm<" in line


def test_map_labels_stay_inside_the_plot():
    """Cluster labels at the edge of the cloud used to be drawn outside the SVG."""
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(200, 2)).tolist()
    centres = [[min(p[0] for p in cloud), max(p[1] for p in cloud)], [max(p[0] for p in cloud), 0.0],
               [0.0, min(p[1] for p in cloud)]]
    svg = scatter({"usage": cloud}, labels=centres, size=400)
    for x, y in re.findall(r"<text x='([\d.]+)' y='([\d.]+)'[^>]*class='label'", svg):
        assert 0 < float(x) < 400 - 8 and 10 <= float(y) <= 400
    assert len(re.findall(r"class='label'", svg)) == 3


def test_the_selection_report_uses_the_shared_layer(tmp_path):
    report = {"config": {"target_lang": "swh", "strategy": "compass", "budget": 3, "seed": 0},
              "sizes": {"usage": 4, "train": 2, "selected": 3}, "notes": [],
              "clusters": [{"cluster": i, "u_share": 0.5, "train_share": 0.5, "filled": 1, "gap": None}
                           for i in range(2)],
              "metrics": {}, "languages": {"fra": 3},
              "map": {"usage": [[0, 0], [1, 1]], "centroids": [[0, 0], [1, 1]]}}
    page = render_html(report)
    assert "class='axis-label'>share of the set<" in page and "class='tick'" in page
    assert "class='axis-label'>PC 1<" in page and page.count("class='label'") == 2


@pytest.fixture
def service(tmp_path):
    """A registry (kor-1 active, kor-2 a candidate with gate numbers), drift reports with an
    alarm, a job awaiting approval and one that failed with hostile text in its error."""
    reg = Registry(tmp_path / "registry.sqlite")
    for adapter_id in ("kor-1", "kor-2"):
        (tmp_path / adapter_id).mkdir()
        reg.register(adapter_id, "kor", tmp_path / adapter_id,
                     parent="kor-1" if adapter_id == "kor-2" else None,
                     metrics={"adaptation_gain": 0.031, "preservation_loss": -0.004})
    reg.promote("kor-1")
    db = tmp_path / "queries.sqlite"
    store = QueryStore(db)
    store.add([(f"q{i}", "question", "kor", None) for i in range(5)])
    store.record([{"window": w, "lang": "kor", "n": 50, "js": 0.01 + 0.05 * (w >= 3), "novelty": 0.02,
                   "threshold": {"js": 0.04, "novelty": 0.1}, "drift": w >= 3, "reason": "js" * (w >= 3)}
                  for w in range(5)], 5)
    queue = JobQueue(db)
    queue.create("swh", "auto", {"from_seq": 1, "min_queries": 2}, state="queued")
    queue.finish(queue.claim("w", 10), "failed",
                 error=f"ValueError: <script>alert(1)</script> in {tmp_path}/x")
    job = queue.create("kor", "approve", {"from_seq": 1, "min_queries": 2}, state="queued")
    running = queue.claim("w", 10)
    queue.set_adapter(running, "kor-2")
    queue.finish(running, "awaiting_approval",
                 result={"numbers": {"adaptation_gain": 0.031, "preservation_loss": -0.004}})
    app = create_app(db, reg, token=TOKEN, controls=Controls(modes={"kor": "approve"}))
    return app, reg, job


def test_the_page_shows_drift_versions_and_jobs_without_the_token(service):
    app, reg, job = service
    with TestClient(app) as c:
        c.get("/v1/jobs", headers=AUTH)  # the token travels in requests, never into a page
        page = c.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert TOKEN not in html and not re.search(r"(src|href)=['\"]?(https?:)?//", html)  # nothing fetched
    assert html.count("<svg") == 2 and html.count("class='marker'") == 4  # JS and novelty, 2 alarms each
    assert "class='active-version'>kor-1<" in html and "+3.10%" in html and "-0.40%" in html
    assert f"data-url='/v1/jobs/{job}/approve?reason=dashboard'" in html
    assert "ValueError: &lt;script&gt;alert(1)" in html and "<script>alert(1)" not in html
    assert "/tmp/" not in html  # the error's path is relative to the data directory


def chromium() -> tuple[str, str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("no Chromium binary and chromedriver found "
                    "(Debian: apt-get install chromium chromium-driver)")
    return binary, driver


@pytest.fixture
def browser():
    binary, driver = chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    drv = webdriver.Chrome(service=Service(driver), options=options)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


@pytest.fixture
def live(service):
    """The service on a real loopback port (uvicorn in a thread)."""
    app, reg, job = service
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", reg, job
    server.should_exit = True
    thread.join(10)


def click(browser, selector: str) -> str:
    """Click a button, accept its confirmation, wait for the answer in the status line."""
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, selector).click()
    try:
        browser.switch_to.alert.accept()
    except NoAlertPresentException:
        pass
    deadline = time.monotonic() + 10
    while (status := browser.find_element(By.ID, "status").text) in ("", "working…"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return status


def test_operator_approves_and_rolls_back_in_a_real_browser(live, browser):
    from selenium.webdriver.common.by import By

    url, reg, job = live
    browser.get(url + "/")
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart")) == 2
    assert len(browser.find_elements(By.CSS_SELECTOR, "circle.point")) == 10
    assert click(browser, f"tr.job[data-id='{job}'] button") == "type the API token first"
    token = browser.find_element(By.ID, "token")
    token.send_keys("wrong-token")
    assert click(browser, f"tr.job[data-id='{job}'] button") == "refused (403): invalid token"
    assert reg.active("kor").id == "kor-1"
    token.clear()
    token.send_keys(TOKEN)
    assert click(browser, f"tr.job[data-id='{job}'] button") == "done: approve"
    assert reg.active("kor").id == "kor-2"
    time.sleep(1)  # the page reloads itself; the token stays in the tab
    assert browser.find_element(By.ID, "token").get_attribute("value") == TOKEN
    assert TOKEN not in browser.page_source
    row = browser.find_element(By.CSS_SELECTOR, f"tr.job[data-id='{job}']")
    assert row.get_attribute("data-state") == "promoted"
    assert browser.find_element(By.CSS_SELECTOR, ".active-version").text == "kor-2"
    assert click(browser, "tr.adapter[data-id='kor-2'] button") == "done: roll back"
    assert reg.active("kor").id == "kor-1"
    assert [d.action for d in reg.decisions()] == ["promote", "promote", "rollback"]
    assert json.loads(browser.execute_script("return JSON.stringify(Object.keys(sessionStorage))")) == [
        "compass-token"]
