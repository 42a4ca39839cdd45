"""The app in a real headless Chromium: open the page, upload an example voice, click Generate, find a
playing video and the two charts. The screenshot is kept in tests/artifacts/app_chromium.png.

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them) and selenium. Without a
browser the test is skipped, unless S2V_REQUIRE_BROWSER=1 (set by CI), where it fails instead.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def _driver():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    chromedriver = shutil.which("chromedriver")
    missing = [n for n, p in (("chromium", chromium), ("chromedriver", chromedriver)) if not p]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium")
    if missing:
        if os.environ.get("S2V_REQUIRE_BROWSER") == "1":
            pytest.fail(f"S2V_REQUIRE_BROWSER=1 but {', '.join(missing)} missing")
        pytest.skip(f"no headless browser here ({', '.join(missing)} missing): apt install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1400,1800", "--mute-audio"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(chromedriver), options=opts)


def test_upload_generate_and_watch_in_chromium(app_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    example = sorted((ROOT / "assets" / "voices" / "seen").glob("*.wav"))[0]
    driver = _driver()
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        driver.get(app_server)
        # Gradio replaces an element when a new value arrives: one read between the find and the get is not a failure,
        # the condition is polled again
        wait = WebDriverWait(driver, 120, ignored_exceptions=(StaleElementReferenceException,))
        wait.until(ec.element_to_be_clickable((By.XPATH, "//button[contains(@class, 'primary') and normalize-space()='Generate']")))
        # the Speech input opens on the microphone: switch it to upload, then give the file input the example
        inputs = driver.find_elements(By.CSS_SELECTOR, "input[type=file]")
        if not inputs:
            driver.find_element(By.CSS_SELECTOR, "button[aria-label='Upload file']").click()
            inputs = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=file]"))
        inputs[0].send_keys(str(example))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "audio, .waveform-container, [data-testid='waveform-Speech']"))
        time.sleep(1)
        driver.find_element(By.XPATH, "//button[contains(@class, 'primary') and normalize-space()='Generate']").click()
        video = wait.until(lambda d: next((v for v in d.find_elements(By.TAG_NAME, "video")
                                           if v.get_attribute("src")), None))
        driver.execute_script("arguments[0].muted = true; arguments[0].play();", video)
        t0 = driver.execute_script("return arguments[0].currentTime;", video)
        wait.until(lambda d: d.execute_script(
            "const v = arguments[0]; return v.readyState >= 2 && !v.paused && v.currentTime > arguments[1];",
            video, t0))
        assert driver.execute_script("return arguments[0].videoWidth;", video) > 0
        # the emotion and identity bar charts are drawn (Vega renders them into an svg or canvas)
        charts = wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".vega-embed")) >= 2
                            and d.find_elements(By.CSS_SELECTOR, ".vega-embed"))
        assert all(c.find_elements(By.CSS_SELECTOR, "svg, canvas") for c in charts[:2])
        titles = driver.find_element(By.TAG_NAME, "body").text
        assert "Emotion in the voice" in titles or len(charts) >= 2
        # a click on an example voice generates at once: a new clip arrives without pressing Generate
        first = video.get_attribute("src")
        name = sorted((ROOT / "assets" / "voices" / "unseen").glob("*.wav"))[0].name
        item = wait.until(lambda d: next((e for e in d.find_elements(By.XPATH, f"//*[contains(text(), '{name}')]")
                                          if e.is_displayed()), None))
        driver.execute_script("arguments[0].scrollIntoView(); arguments[0].click();", item)
        wait.until(lambda d: any(v.get_attribute("src") and v.get_attribute("src") != first
                                 for v in d.find_elements(By.TAG_NAME, "video")))
    finally:
        driver.save_screenshot(str(ARTIFACTS / "app_chromium.png"))
        driver.quit()
