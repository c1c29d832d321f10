"""Every service's `/docs` in headless Chromium: Swagger UI renders the service's OpenAPI 3.1
document under its Content-Security-Policy, and "Try it out" with a bearer token reaches the API.

Needs Debian's `chromium` and `chromium-driver` packages (`.ci/run` installs them); without
them the tests are skipped, naming what is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

from communication_service.app import create_app as create_communication_app
from communication_service.settings import CommunicationSettings
from geocoding_service.app import create_app as create_geocoding_app
from geocoding_service.settings import GeocodingSettings
from matching_service.app import create_app as create_matching_app
from matching_service.settings import MatchingSettings
from patient_service.app import create_app as create_patient_app
from patient_service.settings import PatientSettings
from shared.devstack import free_port
from shared.settings import ServiceSettings
from tests.conftest import ADMIN_TOKEN
from therapist_service.app import create_app as create_therapist_app
from therapist_service.settings import TherapistSettings

pytestmark = pytest.mark.integration

SERVICES: dict[str, tuple[Callable[[Any], Flask], type[ServiceSettings]]] = {
    "patient_service": (create_patient_app, PatientSettings),
    "therapist_service": (create_therapist_app, TherapistSettings),
    "matching_service": (create_matching_app, MatchingSettings),
    "communication_service": (create_communication_app, CommunicationSettings),
    "geocoding_service": (create_geocoding_app, GeocodingSettings),
}

# Headless in a container: no sandbox, GPU or QUIC, and no background connections of its own
# (without those flags Chromium's connections get refused here).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2000",
)
WAIT_S = 20
RENDERED = ".opblock"
# what Swagger UI shows instead when it cannot read the document (4.x: "Unable to render this
# definition" for OpenAPI 3.1) or could not resolve parts of it
FAILED = ".version-pragma, .errors-wrapper"

# shown in the Authorize dialog once the token is accepted
LOGOUT_BUTTON = "//div[contains(@class, 'modal-ux')]//button[normalize-space()='Logout']"

# Runs before the page's own scripts: records what the Content-Security-Policy blocked.
RECORD_CSP_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(event.violatedDirective + " blocked " + event.blockedURI);
});
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless Chromium driven through the system's chromedriver (nothing is downloaded)."""
    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        found = {"chromium": chromium, "chromedriver": chromedriver}
        missing = [name for name, path in found.items() if path is None]
        reason = f"no {' and no '.join(missing)} on PATH (apt-get install chromium chromium-driver)"
        if os.environ.get("CI_REQUIRE_BROWSER"):  # CI installed it: a skip would hide a failure
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: selenium-manager never runs, so nothing is downloaded
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_CSP_VIOLATIONS}
    )
    yield driver
    driver.quit()


def served(app: Flask) -> Iterator[str]:
    """Serve `app` over real HTTP on a free port while the generator is open; yields its URL."""
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture(params=sorted(SERVICES))
def service_url(request: pytest.FixtureRequest, make_settings: Any) -> Iterator[str]:
    """Base URL of one service, served over HTTP and connected to the test database."""
    create_app, settings_cls = SERVICES[request.param]
    yield from served(create_app(make_settings(settings_cls)))


@pytest.fixture
def patient_url(make_settings: Any) -> Iterator[str]:
    yield from served(create_patient_app(make_settings(PatientSettings)))


def open_docs(browser: WebDriver, base_url: str) -> WebDriverWait[WebDriver]:
    """Load `/docs` and wait until Swagger UI has rendered the operations."""
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(f"{base_url}/docs")
    wait = WebDriverWait(browser, WAIT_S)
    try:
        wait.until(lambda driver: driver.find_elements(By.CSS_SELECTOR, f"{RENDERED}, {FAILED}"))
    except TimeoutException:
        pytest.fail(f"Swagger UI rendered nothing in {WAIT_S}s: {page_problems(browser)}")
    failures = browser.find_elements(By.CSS_SELECTOR, FAILED)
    assert not failures, failures[0].text
    return wait


def page_problems(browser: WebDriver) -> list[str]:
    """CSP violations and console errors of the page so far."""
    violations: list[str] = browser.execute_script("return window.cspViolations || []")
    errors = [
        entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
    ]
    return violations + errors


def listed_operations(browser: WebDriver) -> set[tuple[str, str]]:
    """(method, path) of every operation block Swagger UI rendered."""
    operations = set()
    for block in browser.find_elements(By.CSS_SELECTOR, ".opblock"):
        method = block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text
        path = block.find_element(By.CSS_SELECTOR, ".opblock-summary-path")
        operations.add((method.lower(), path.get_attribute("data-path") or path.text))
    return operations


def test_docs_page_runs_only_the_services_own_scripts(patient_url: str) -> None:
    response = requests.get(f"{patient_url}/docs", timeout=5)
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'" and policy["base-uri"] == "'none'"
    # the initialiser is /docs/init.js: no script element without a src
    assert not re.search(r"<script(?![^>]*\bsrc=)", response.text)
    assert requests.get(f"{patient_url}/docs/init.js", timeout=5).ok
    asset = requests.get(f"{patient_url}/docs/static/swagger-ui-bundle.js", timeout=5)
    assert (
        asset.ok
        and asset.headers["Content-Security-Policy"] == response.headers["Content-Security-Policy"]
    )
    # the package's other files (an OAuth redirect page, ...) are not served
    assert (
        requests.get(f"{patient_url}/docs/static/oauth2-redirect.html", timeout=5).status_code
        == 404
    )


def test_docs_page_lists_every_documented_operation(browser: WebDriver, service_url: str) -> None:
    spec = requests.get(f"{service_url}/openapi.json", timeout=5).json()
    documented = {(method, path) for path, item in spec["paths"].items() for method in item}
    open_docs(browser, service_url)
    assert "OAS 3.1" in browser.find_element(By.CSS_SELECTOR, ".info .title").text
    assert documented, "the service documents no operation"
    assert listed_operations(browser) == documented
    assert page_problems(browser) == []


def test_try_it_out_with_the_bearer_token_shows_the_response(
    browser: WebDriver, patient_url: str
) -> None:
    wait = open_docs(browser, patient_url)
    browser.find_element(By.CSS_SELECTOR, ".auth-wrapper .authorize").click()
    token_input = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".modal-ux input")))
    token_input.send_keys(ADMIN_TOKEN)
    browser.find_element(By.CSS_SELECTOR, ".modal-ux .auth-btn-wrapper .authorize").click()
    wait.until(ec.visibility_of_element_located((By.XPATH, LOGOUT_BUTTON)))
    browser.find_element(By.CSS_SELECTOR, ".modal-ux .btn-done").click()
    wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))

    operation = "#operations-default-get_api_patients"  # GET /api/patients
    for control in (".opblock-summary-control", ".try-out__btn", ".execute"):
        clickable = ec.element_to_be_clickable((By.CSS_SELECTOR, f"{operation} {control}"))
        wait.until(clickable).click()

    response = f"{operation} .live-responses-table tr.response"
    status = wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, f"{response} .response-col_status"))
    )
    body = browser.find_element(By.CSS_SELECTOR, f"{response} .response-col_description pre")
    curl = browser.find_element(By.CSS_SELECTOR, f"{operation} .curl-command").text
    assert status.text.strip() == "200", body.text
    assert '"items"' in body.text and '"total"' in body.text
    assert f"Authorization: Bearer {ADMIN_TOKEN}" in curl
    assert page_problems(browser) == []
