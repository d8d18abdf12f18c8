"""The web demo in a real headless browser: Debian's Chromium driven by Playwright.

``make test`` installs both (Playwright from the dev extras, Chromium with apt-get when run as
root).  Elsewhere the test skips and says what is missing.  Playwright drives the system
Chromium (``executable_path``); it never downloads a browser of its own.
"""
import os
import shutil
from pathlib import Path

import pytest

from conftest import build_tiny
from webdemo_helpers import CHOICES, QUESTION, flash_video, serving

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CHROMIUM = os.environ.get("SEVILA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT_COPY = Path(__file__).resolve().parent.parent / "output" / "webdemo"
TIMEOUT_MS = 90_000  # generous: 2 shared CPU cores; nothing asserts on time


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (`make test` does it when run as root), "
                    "or point SEVILA_CHROMIUM at one")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def url():
    from lavis_sevila.webdemo import Demo

    demo = Demo(build_tiny(seed=0), "tiny", max_upload_bytes=2_000_000)
    try:
        with serving(demo) as address:
            yield address
    finally:
        demo.workdir.cleanup()


def _save(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    try:  # a copy where people look; the test does not depend on it
        SCREENSHOT_COPY.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOT_COPY / name)
    except OSError:
        pass
    return path


def test_a_synthetic_video_is_answered_and_a_bad_upload_gets_a_message(browser, url, tmp_path):
    video = flash_video(tmp_path / "flash.mp4")
    (tmp_path / "notes.txt").write_text("these are notes, not a video\n" * 10)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(url + "/")
        assert page.title() == "SeViLA on your video"
        assert page.locator("h1").inner_text().startswith("SeViLA")

        page.set_input_files("#video", str(video))
        page.fill("#question", QUESTION)
        for j, choice in enumerate(CHOICES):
            page.fill(f"#choice{j}", choice)
        for j in range(len(CHOICES), 5):
            page.fill(f"#choice{j}", "")
        page.fill("#frames", "16")
        page.click("#submit")
        page.wait_for_selector("#answer")
        answer = page.locator("#answer").inner_text()
        assert any(answer.startswith(f"{letter}) {choice}") for letter, choice in zip("ABC", CHOICES)), answer
        assert page.locator("#probabilities tr").count() == 3
        assert page.locator("#keyframe-times").inner_text().count(" s (frame #") == 4
        image = page.locator("#contact-sheet")
        image.wait_for()
        page.wait_for_function("document.getElementById('contact-sheet').complete")
        width = page.evaluate("document.getElementById('contact-sheet').naturalWidth")
        assert width >= 1000  # the PNG decoded in the browser
        shot = _save(page, tmp_path, "webdemo_answer.png")
        assert shot.stat().st_size > 10_000

        page.set_input_files("#video", str(tmp_path / "notes.txt"))
        page.click("#submit")
        page.wait_for_selector("#error")
        message = page.locator("#error").inner_text()
        assert "'notes.txt' could not be read as a video" in message and "Upload a video file" in message
        assert "Traceback" not in page.content()
        assert page.locator("#answer").count() == 0
        _save(page, tmp_path, "webdemo_bad_upload.png")

        page.click("#example")  # the synthetic example works without a file
        page.wait_for_selector("#answer")
        assert "the synthetic example" in page.locator("#result").inner_text()
    finally:
        page.close()
