"""Debian's chromium driven by selenium, with the network off: the season page must work from file://.

Used by the browser tier (tests/batch/test_page_browser.py) and bench/report_page.py."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = ROOT / "test-artifacts" / "browser"  # screenshots, kept after the run

OFFLINE = {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
# an alert() that records instead of blocking: a script injected through insurer data would leave a trace
RECORD_ALERTS = "window.__alerts = []; window.alert = function (m) { window.__alerts.push(String(m)); };"


def open_chromium(browser: str, driver: str, width: int = 1400, height: int = 1100):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={width},{height}",
                "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.execute_cdp_cmd("Network.enable", {})
    chrome.execute_cdp_cmd("Network.emulateNetworkConditions", OFFLINE)
    chrome.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_ALERTS})
    return chrome


def load_page(chrome, path: Path, timeout: float = 120) -> float:
    """Open the page from its file:// URL; wait until it has drawn; return its ms to ready (page's clock)."""
    from selenium.webdriver.support.ui import WebDriverWait

    chrome.get(path.resolve().as_uri())
    WebDriverWait(chrome, timeout).until(lambda c: c.execute_script("return document.body && document.body.dataset.ready === '1'"))
    return chrome.execute_script("return window.seasonPage.readyMs")


def requested_urls(chrome) -> list[str]:
    """Every URL the page asked the network stack for (from the performance log)."""
    urls = []
    for entry in chrome.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def console_errors(chrome) -> list[str]:
    return [e["message"] for e in chrome.get_log("browser") if e["level"] == "SEVERE"]


def screenshot(chrome, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    chrome.save_screenshot(str(path))
    return path
