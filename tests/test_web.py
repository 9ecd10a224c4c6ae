"""The web page end to end in headless Chromium (Playwright driving Debian's /usr/bin/chromium,
installed by scripts/install_browser.sh): upload a consent recording (standing in for the
microphone), enrol, synthesize, play and download, then check the download with the detector.

Stand-in transcriber: the fixture recording cannot say the freshly issued phrase, so the
registry's ``transcriber`` returns the most recently issued phrase; the rest of enrolment runs.
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

import valle2
from valle2.audio import load_audio
from valle2.safety import detect
from valle2.safety.deployment import Deployment
from valle2.server import KeyStore, ServerSettings, create_app

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, tiny_model):
    """The app under uvicorn on a free loopback port, in a thread of this process, and an API key."""
    dep = Deployment.open(tmp_path_factory.mktemp("web_home"))
    key = KeyStore(dep.home / "api_keys.db").create("web test")[1]
    dep.registry.transcriber = lambda wav, sr: dep.registry.db.query(
        "SELECT text FROM phrases ORDER BY created DESC LIMIT 1")[0][0]
    app = create_app(valle2.load_model(tiny_model[0], gate=dep.gate()), dep, ServerSettings())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(url + "/health").status_code == 200
    yield url, dep, key
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


def test_enrol_synthesize_download_and_detect_in_chromium(live_server, clips, tmp_path):
    assert CHROMIUM.exists(), ("/usr/bin/chromium is missing: run scripts/install_browser.sh "
                               "(Debian's chromium; `playwright install` is not used)")
    from playwright.sync_api import expect, sync_playwright

    url, dep, key = live_server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(accept_downloads=True)
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
            page.goto(url + "/")
            expect(page.locator("#speak-status")).to_contain_text("Enter an API key")   # no call without one
            page.fill("#api-key", "v2k-000000000000-" + "x" * 43)
            page.dispatch_event("#api-key", "change")
            expect(page.locator("#speak-status")).to_contain_text("401")               # a wrong key is refused
            page.fill("#api-key", key)
            page.fill("#speaker-name", "Ada Lovelace")
            page.click("#get-phrase")
            expect(page.locator("#phrase")).to_contain_text("I, Ada Lovelace, agree")
            page.set_input_files("#consent-file", str(clips[1].path))   # stands in for the microphone
            page.click("#enroll")
            expect(page.locator("#enroll-status")).to_contain_text("voice id v_", timeout=120_000)
            voice_id = page.locator("#enroll-status").get_attribute("data-voice-id")
            expect(page.locator("#voice")).to_have_value(voice_id)

            page.fill("#text", "Gad, your letter came just in time. Will we ever forget it.")
            with page.expect_response("**/v1/audio/speech", timeout=180_000) as speech:
                page.click("#synthesize")
            assert speech.value.status == 200
            expect(page.locator("#speak-status")).to_contain_text("Done", timeout=60_000)
            assert page.locator("#output-audio").get_attribute("src").startswith("blob:")
            with page.expect_download() as download:
                page.click("#download")
            out = tmp_path / "download.wav"
            download.value.save_as(out)
            wav, sr = load_audio(out)
            assert sr == 24000 and wav.size / sr > 0.3
            assert detect(wav, sr, dep.watermark_key).present

            page.set_input_files("#detect-file", str(out))
            page.click("#detect")
            expect(page.locator("#detect-status")).to_contain_text("Watermark PRESENT", timeout=120_000)
            page.set_input_files("#detect-file", str(clips[0].path))
            page.click("#detect")
            expect(page.locator("#detect-status")).to_contain_text("No watermark", timeout=120_000)
        finally:
            browser.close()
