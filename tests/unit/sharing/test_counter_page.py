"""The counter page at `/`, as a clerk uses it at a 1366×768 screen: in Debian's headless Chromium
(chromium + chromium-driver, driven by Selenium) against a real `onceonly serve`.

Screenshots are written to ``$ONCEONLY_SCREENSHOTS`` (default ``var/screenshots`` in the
repository): the page answered, the refusal for another township, and the slip as printed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from counter_home import serving, station

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SHOTS = Path(os.environ.get("ONCEONLY_SCREENSHOTS", Path(__file__).parents[3] / "var" / "screenshots"))


def _browser_or_reason() -> None:
    if CHROMIUM and CHROMEDRIVER:
        return
    reason = (
        "Debian chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)  # .ci/run installs them: in CI a missing browser is a failure
    pytest.skip(reason)


@pytest.fixture
def server(people: dict[str, str]) -> Iterator[str]:
    with serving() as url:
        yield url


@pytest.fixture
def browser() -> Iterator[object]:
    _browser_or_reason()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1366,768",
        "--lang=zh-CN",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_a_clerk_serves_a_citizen_from_the_page(server: str, browser: object, people: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    driver: WebDriver = browser  # type: ignore[assignment]
    wait = WebDriverWait(driver, 20)
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.get(server + "/")
    assert "用证核验" in driver.title
    # A wrong credential: said in Chinese, nothing else shown.
    driver.find_element(By.ID, "token").send_keys("oos_stnope_wrong")
    driver.find_element(By.ID, "login-button").click()
    error = wait.until(shown.visibility_of_element_located((By.ID, "login-error")))
    assert "凭证" in error.text
    driver.find_element(By.ID, "token").send_keys(station())
    driver.find_element(By.ID, "login-button").click()
    wait.until(shown.visibility_of_element_located((By.ID, "ask")))
    options = [o.text for o in Select(driver.find_element(By.ID, "matter")).options]
    assert "城乡居民养老保险参保登记" in options and '新生儿出生"一件事"' in options

    driver.find_element(By.ID, "subject").send_keys(people["mine"])
    Select(driver.find_element(By.ID, "matter")).select_by_value("pension-enrolment")
    driver.find_element(By.ID, "purpose").send_keys("城乡居民养老保险参保")
    driver.find_element(By.ID, "case").send_keys("WQ-2026-0815")
    driver.find_element(By.ID, "ask-button").click()
    answer = wait.until(shown.visibility_of_element_located((By.ID, "answer")))
    rows = {
        r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[1].text
        for r in answer.find_elements(By.CSS_SELECTOR, "#materials tr")
    }
    assert rows == {"居民户口簿": "可免交", "居民身份证": "需提交材料"}
    # The certificate's state and validity, as the log gives them, under its identifier.
    facts = answer.find_element(By.CSS_SELECTOR, "#materials tr .facts").text
    assert facts.startswith("状态：有效　有效期：") and " 至 " in facts
    masked = people["mine"][:6] + "********" + people["mine"][-4:]
    assert driver.find_element(By.ID, "subject").get_attribute("value") == masked  # masked once answered
    assert people["mine"] not in driver.page_source
    assert "受理编号：WQ-2026-0815" in driver.find_element(By.ID, "slip").text
    assert driver.find_element(By.CSS_SELECTOR, "#slip-qr svg").is_displayed()
    # Fits the counter's 1366×768 screen: no sideways scrolling.
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 1366
    driver.save_screenshot(str(SHOTS / "counter.png"))

    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})  # type: ignore[attr-defined]
    assert not driver.find_element(By.ID, "ask").is_displayed()  # the slip alone is printed
    assert driver.find_element(By.ID, "slip").is_displayed()
    driver.save_screenshot(str(SHOTS / "counter-slip-print.png"))
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})  # type: ignore[attr-defined]

    # Another township's resident: 需本人授权, and nothing of them on the page.
    field = driver.find_element(By.ID, "subject")
    field.clear()
    field.send_keys(people["other"])
    driver.find_element(By.ID, "ask-button").click()
    refused = wait.until(shown.visibility_of_element_located((By.ID, "ask-error")))
    assert refused.text.startswith("需本人授权")
    assert not driver.find_element(By.ID, "answer").is_displayed()
    driver.save_screenshot(str(SHOTS / "counter-consent-needed.png"))

    # The citizen grants consent with their own credential and reads the code out: answered.
    from typer.testing import CliRunner

    from cli.main import app as cli

    theirs = (
        CliRunner()
        .invoke(cli, ["citizens", "enrol", "--subject", people["other"]])
        .stdout.strip()
        .splitlines()[-1]
    )
    code = httpx.post(
        f"{server}/api/citizen/consents",
        headers={"Authorization": f"Bearer {theirs}"},
        json={"township": "120114001000", "matter": "pension-enrolment", "purpose": "城乡居民养老保险参保"},
        timeout=30,
    ).json()["code"]
    driver.find_element(By.ID, "consent").send_keys(code)
    driver.find_element(By.ID, "ask-button").click()
    wait.until(shown.visibility_of_element_located((By.ID, "answer")))
    assert "可免交" in driver.find_element(By.ID, "materials").text
    assert driver.find_element(By.ID, "consent").get_attribute("value") == ""
