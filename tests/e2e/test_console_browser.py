"""The operator console and the citizen's page in a real browser (Debian's chromium, driven
headless by Selenium through chromium-driver), against the four-node federation as processes.

Screenshots of both pages are taken on every run, into the test's own folder; with
CONCORDAT_UPDATE_SCREENSHOTS=1 they replace docs/screenshots/ (docs/console.md shows them),
so an ordinary run leaves the checkout as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from gateway.config import ADMINISTRATIONS
from gateway.dev.demo import demo_subjects
from gateway.dev.state import REPO_ROOT, citizen_issuer
from gateway.testing import get_request
from tests.e2e.conftest import Federation, build_federation, free_port

pytestmark = pytest.mark.slow

SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Holyrood never agreed to this agreement of Whitehall's: its ingress policy denies (README).
DENIED_RULE = "common.agreement_unknown"


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    running = build_federation(tmp_path_factory.mktemp("console"))
    for node, config in running.configs.items():
        issuer = citizen_issuer(running.state_dir, node)
        config["metrics"] = {"listen": f"127.0.0.1:{free_port()}"}
        config["citizens"] = {
            "issuer": issuer.issuer,
            "audience": f"concordat-citizens:{node}",
            "jwks_file": str(issuer.jwks_path),
        }
        running.config_path(node).write_text(json.dumps(config))
    try:
        running.start_many(ADMINISTRATIONS)
        yield running
    finally:
        running.stop_all()


@pytest.fixture(scope="module")
def console_url(federation: Federation) -> Iterator[str]:
    address = f"127.0.0.1:{free_port()}"
    configs = [arg for n in ADMINISTRATIONS for arg in ("--config", str(federation.config_path(n)))]
    log = (federation.state_dir / "console.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "console", *configs, "--listen", address],
        stdout=log,
        stderr=log,
        cwd=REPO_ROOT,
    )
    url = f"http://{address}/"
    try:
        _wait_for(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError(f"the console exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):  # noqa: S310 - our own loopback URL
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise TimeoutError(f"the console at {url} did not answer")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("chromium and chromium-driver are needed: scripts/setup_services.sh browser")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1000")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    # A form's answer is a new page: finding what it shows waits for it to load, up to this.
    driver.implicitly_wait(10)
    try:
        yield driver
    finally:
        driver.quit()


def cells(browser: WebDriver, table_id: str) -> list[list[str]]:
    rows = browser.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def screenshot(browser: WebDriver, folder: Path, name: str) -> None:
    """The whole page, however long: the window is made as tall as the page first."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(int(height) + 40, 6000))
    assert browser.save_screenshot(str(folder / name))
    if os.environ.get("CONCORDAT_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / name, SCREENSHOTS / name)
    browser.set_window_size(1400, 1000)


def first_subject(federation: Federation, node: str, record_type: str, kind: str) -> str:
    subjects = demo_subjects(f"sqlite:///{federation.states[node].demo_db}", node)[record_type]
    return str(next(value for k, value in subjects if k == kind))


async def test_the_console_shows_the_nodes_real_figures_and_a_denial_once_made(
    federation: Federation, console_url: str, browser: WebDriver
) -> None:
    registration = first_subject(federation, "holyrood", "BIRTH_REGISTRATION", "registration_id")
    client = federation.client("whitehall", "dwp")
    await client.get_record(
        get_request(
            "BIRTH_REGISTRATION",
            registration_id=registration,
            purpose="CIVIL_REGISTRATION",
            agreement_id="cr-dwp-nrs-births-2026",
            fields=["registration_id", "family_name"],
        )
    )
    browser.get(console_url)
    nodes = {row[0]: row for row in cells(browser, "nodes")}
    assert set(nodes) == set(ADMINISTRATIONS)
    assert all(row[1] == "SERVING" for row in nodes.values())
    # Each node's bundle revision, as its own metrics report it.
    assert all(len(row[2]) == 12 for row in nodes.values())
    assert {row[0] for row in cells(browser, "directory")} == set(ADMINISTRATIONS)
    traffic = cells(browser, "traffic-holyrood")
    assert ["cr-dwp-nrs-births-2026", "provider", "released", "1"] in traffic
    assert any(row[1] == "cr-dwp-nrs-births-2026" for row in cells(browser, "meter-whitehall"))
    assert any(r[0] == "cr-dwp-nrs-births-2026" for r in cells(browser, "register-whitehall"))
    assert not any(DENIED_RULE in row for row in cells(browser, "denials-holyrood"))

    with pytest.raises(Exception, match="PERMISSION_DENIED"):
        await client.get_record(
            get_request(
                "MARRIAGE_REGISTRATION",
                registration_id=first_subject(
                    federation, "holyrood", "MARRIAGE_REGISTRATION", "registration_id"
                ),
                purpose="CIVIL_REGISTRATION",
                agreement_id="cr-dwp-nrs-marriages-2026",
                fields=["registration_id", "kind", "date_of_ceremony"],
            )
        )
    await client.close()
    browser.refresh()
    assert ["ingress", "holyrood", DENIED_RULE, "1"] in cells(browser, "denials-holyrood")
    screenshot(browser, federation.state_dir, "console.png")


async def test_the_citizen_page_lists_the_exchanges_about_the_person_signed_in(
    federation: Federation, console_url: str, browser: WebDriver
) -> None:
    nino = first_subject(federation, "whitehall", "BENEFIT_AWARD", "nino")
    client = federation.client("cardiff", "cardiff-council")
    request = get_request(
        "BENEFIT_AWARD",
        nino=nino,
        purpose="PUBLIC_SERVICE_DELIVERY",
        agreement_id="psd-cardiff-council-dwp-fuel-poverty-2026",
        fields=["nino", "benefit", "status", "start_date"],
    )
    request.provider_node = "whitehall"
    response = await client.get_record(request)
    await client.close()
    token = citizen_issuer(federation.state_dir, "whitehall").mint_citizen(
        audience="concordat-citizens:whitehall", person="citizen-web", identifiers={"nino": nino}
    )

    browser.get(console_url + "citizen")
    Select(browser.find_element(By.ID, "node")).select_by_value("whitehall")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "ask").click()
    rows = cells(browser, "exchanges")
    assert len(rows) == 1
    when, asked, provided, purpose, agreement, power, record, released = rows[0]
    assert when.endswith(" UTC") and asked == "Cardiff Council (cardiff)"
    assert provided == "Department for Work and Pensions (whitehall)"
    assert purpose == "PUBLIC_SERVICE_DELIVERY" and record == "BENEFIT_AWARD"
    assert "psd-cardiff-council-dwp-fuel-poverty-2026" in agreement and power
    assert released.split(", ") == list(response.released_fields)
    screenshot(browser, federation.state_dir, "citizen.png")

    # The token was used: asking again with it is refused, and the page says so.
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "ask").click()
    assert browser.find_element(By.ID, "error").text.startswith("UNAUTHENTICATED")


def test_the_pages_fetch_nothing_from_elsewhere(console_url: str) -> None:
    for path in ("", "citizen"):
        with urllib.request.urlopen(console_url + path, timeout=10) as page:  # noqa: S310
            html = page.read().decode()
            policy = page.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy
        assert "http://" not in html and "https://" not in html and "<script" not in html
