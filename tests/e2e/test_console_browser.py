"""The console in a real browser: Debian's headless Chromium driven through chromedriver.

Signs in, turns RTE messaging off, enables screen recording for a user, finds a contact
by agent and date, plays its call recording and opens its screen recording. Screenshots
of the four pages go to ``QM_SCREENSHOTS_DIR`` (``docs/`` when refreshing docs/console.md's).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor.adapters.dynamodb.runtime_config import RuntimeConfigReader, RuntimeConfigStore
from processor.adapters.dynamodb.users_table import DynamoUserDirectory
from processor.console.samples import INSTANCE_ARN
from tests.console_support import DAY, PASSWORD, ConsoleEnv

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="qm-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1440,900",  # a laptop screen
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver: Any, condition: Any, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _shot(driver: Any, directory: Path, name: str) -> Path:
    """The whole page at laptop width (DevTools' full-page capture)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": 1440, "height": max(900, size["height"]), "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path = directory / name
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 10_000
    return path


def test_console_in_a_browser(console_env: ConsoleEnv, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    shots = Path(os.environ.get("QM_SCREENSHOTS_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    url = console_env.url
    store = RuntimeConfigStore(console_env.aws.dynamodb, console_env.settings.config_table)
    reader = RuntimeConfigReader(store, ttl_seconds=0)

    # Anonymous: every page sends the browser to the sign-in page.
    browser.get(f"{url}/contacts")
    assert "/login" in browser.current_url
    browser.find_element(By.ID, "username").send_keys("boss")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    _wait(browser, lambda d: d.current_url.endswith("/contacts"))

    # ACD Configuration: untick "Enable RTE Messaging for Screen Recording" and save.
    browser.get(f"{url}/config")
    box = browser.find_element(By.ID, "rte_enabled")
    assert box.is_selected() and reader.get().rte_enabled is True
    label = browser.find_element(By.CSS_SELECTOR, "label[for='rte_enabled']")
    assert label.text == "Enable RTE Messaging for Screen Recording"
    label.click()  # the label toggles its box: accessible labelling
    arn = browser.find_element(By.ID, "instance_arn")
    arn.send_keys(INSTANCE_ARN)
    browser.find_element(By.CSS_SELECTOR, "form[action='/config'] button[type='submit']").click()
    _wait(browser, lambda d: "Saved." in d.page_source)
    assert not browser.find_element(By.ID, "rte_enabled").is_selected()
    assert reader.get().rte_enabled is False  # what the running service reads, without a restart
    assert reader.get().region == "us-east-1"  # taken from the ARN
    _shot(browser, shots, "console-acd-configuration.png")

    # Users: select Ana and enable screen recording.
    browser.get(f"{url}/users")
    browser.find_element(By.CSS_SELECTOR, "input[aria-label='Select ana.silva']").click()
    browser.find_element(By.CSS_SELECTOR, "button[value='enable']").click()
    _wait(browser, lambda d: "Screen recording enabled for 1 user(s)." in d.page_source)
    row = browser.find_element(By.XPATH, "//tr[td[2][text()='ana.silva']]")
    assert row.find_element(By.CSS_SELECTOR, "td[data-screen]").text == "On"
    users = DynamoUserDirectory(console_env.aws.dynamodb, console_env.settings.users_table, cache_seconds=0)
    assert users.get("ana.silva").screen_recording is True
    # Her OS login: the PC recorder she logs on to serves her queue.
    browser.find_element(By.ID, "os-login-user").send_keys("ana.silva")
    browser.find_element(By.ID, "os-login").send_keys("CORP\\ASilva")
    browser.find_element(By.CSS_SELECTOR, "#os-login-form button[type='submit']").click()
    _wait(browser, lambda d: "OS login saved for ana.silva." in d.page_source)
    row = browser.find_element(By.XPATH, "//tr[td[2][text()='ana.silva']]")
    assert row.find_element(By.CSS_SELECTOR, "td[data-os-login]").text == "corp\\asilva"
    assert users.get("ana.silva").os_login == "corp\\asilva"  # type: ignore[union-attr]
    _shot(browser, shots, "console-users.png")

    # RTE is off: Ana, configured now, logs on to Connect, and her desktop is told nothing.
    from processor.app.ctr_path import utc_now
    from processor.app.screen_control import AgentEventIngest
    from processor.app.wiring import build_quarantine, build_screen_control
    from processor.core.batch import StreamRecord
    from processor.platform.exceptions import SourcePosition
    from tests.contract.test_screen_control import queue_messages

    logged_on = orjson.dumps(
        {
            "AgentARN": f"{INSTANCE_ARN}/agent/ana",
            "EventType": "STATE_CHANGE",
            "EventTimestamp": "2026-06-01T08:00:00.000Z",
            "InstanceARN": INSTANCE_ARN,
            "CurrentAgentSnapshot": {
                "AgentStatus": {"Name": "Available"},
                "Configuration": {"Username": "ana.silva"},
            },
        }
    )
    control = build_screen_control(console_env.settings, console_env.aws)
    AgentEventIngest(control, build_quarantine(console_env.settings, console_env.aws), utc_now).process(
        [StreamRecord(logged_on, SourcePosition("kinesis", "agent-events", "shardId-0", "1"))]
    )
    assert control.ignored == {"rte_disabled": 1} and control.published == {}
    assert queue_messages(console_env.aws, "ana.silva") == []

    # Contacts: find Ben's contact of that day.
    browser.get(f"{url}/contacts")
    for field, value in (("agent", "ben.okafor"),):
        browser.find_element(By.ID, field).send_keys(value)
    for field in ("from", "to"):
        browser.execute_script("arguments[0].value = arguments[1]", browser.find_element(By.ID, field), DAY)
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    _wait(browser, lambda d: "agent=ben.okafor" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#contacts tbody tr[data-contact]")
    assert [r.get_attribute("data-contact") for r in rows] == ["c-both"]
    assert "+14255550120" not in browser.page_source  # masked until revealed
    browser.get(f"{url}/contacts?from=2024-06-27&to={DAY}")
    browser.find_element(
        By.CSS_SELECTOR, "button[aria-label='Reveal phone numbers of contact c-agent-only']"
    ).click()
    _wait(browser, lambda d: "+14255550121" in d.page_source)
    assert "+14255550120" not in browser.page_source  # only the revealed row
    _shot(browser, shots, "console-contacts.png")
    browser.get(f"{url}/contacts?agent=ben.okafor&from={DAY}&to={DAY}")
    browser.find_element(By.CSS_SELECTOR, "a[aria-label='Open contact c-both']").click()
    _wait(browser, lambda d: d.current_url.endswith("/contacts/c-both"))
    assert browser.find_element(By.ID, "recorded-parties").text.startswith("both")

    # The call recording plays.
    audio = browser.find_element(By.ID, "audio")
    state = browser.execute_async_script(
        "const [a, done] = arguments; a.play().then(() => done('playing'), e => done(String(e)));", audio
    )
    assert state == "playing"
    _wait(
        browser,
        lambda d: d.execute_script("return !arguments[0].paused && arguments[0].currentTime > 0.3", audio),
    )
    assert browser.execute_script("return arguments[0].duration", audio) == pytest.approx(24, abs=0.5)

    # The screen recording opens (metadata and a frame loaded) and plays.
    video = browser.find_element(By.ID, "screen")
    _wait(browser, lambda d: d.execute_script("return arguments[0].readyState >= 2", video))
    assert browser.execute_script("return arguments[0].duration", video) == pytest.approx(4, abs=0.5)
    assert browser.execute_script("return arguments[0].videoWidth", video) == 320
    browser.execute_async_script(
        "const [v, done] = arguments; v.play().then(() => done(1), () => done(0));", video
    )
    _wait(browser, lambda d: d.execute_script("return arguments[0].currentTime > 0.3", video))
    # Seek: the player asks for a byte range and keeps playing from there.
    browser.execute_script("arguments[0].pause(); arguments[0].currentTime = 3.0", video)
    _wait(browser, lambda d: d.execute_script("return arguments[0].readyState >= 2", video))
    assert browser.execute_script("return arguments[0].error", video) is None
    browser.execute_script("arguments[0].pause(); arguments[0].currentTime = 0", audio)
    _shot(browser, shots, "console-contact-detail.png")
