"""The web page end to end in headless Chromium (Playwright driving Debian's /usr/bin/chromium,
installed by scripts/install_browser.sh): speak with the shipped demo voice, play and download,
check the download with the detector; enrol a voice from an uploaded consent recording (standing
in for the microphone); add a research voice, refused until its corpus is attested with the
command the page shows.

Stand-in transcriber: the fixture recording cannot say the freshly issued phrase, so the
registry's ``transcriber`` returns the most recently issued phrase; the rest of enrolment runs.
"""
from __future__ import annotations

import shlex
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

import valle2
from valle2.audio import encode_audio, load_audio
from valle2.commands import main as valle2_cli
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


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM.exists(), ("/usr/bin/chromium is missing: run scripts/install_browser.sh "
                               "(Debian's chromium; `playwright install` is not used)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    """The page, opened with the test's API key entered; requests beyond the server are blocked."""
    url, _, key = live_server
    page = browser.new_page(accept_downloads=True)
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
    page.goto(url + "/")
    page.fill("#api-key", key)
    page.dispatch_event("#api-key", "change")
    yield page
    page.close()


def assert_words(status) -> None:
    """A status line says its problem in words: no JSON, no bare status code."""
    text = status.text_content()
    assert text and "{" not in text and '"error"' not in text, text


def test_demo_voice_is_listed_and_speaks_with_a_playable_watermarked_result(browser, live_server, clips, tmp_path):
    from playwright.sync_api import expect

    url, dep, key = live_server
    page = browser.new_page(accept_downloads=True)
    try:
        page.goto(url + "/")
        expect(page.locator("#speak-status")).to_contain_text("Enter an API key")   # no call without one
        page.fill("#api-key", "v2k-000000000000-" + "x" * 43)
        page.dispatch_event("#api-key", "change")
        status = page.locator("#speak-status")
        expect(status).to_contain_text("API key is not valid")                      # a wrong key is refused ...
        expect(status).to_contain_text("Check the API key above")                   # ... saying what to do
        assert_words(status)
        page.fill("#api-key", key)
        page.dispatch_event("#api-key", "change")
        expect(page.locator("#voice")).to_have_value("demo")                        # listed and chosen first
        expect(page.locator("#voice optgroup[label*='demo voice'] option[value=demo]")).to_contain_text("demo voices")
        expect(page.locator("#voice-about")).to_contain_text("demo voice ships with valle2")

        page.fill("#text", "Gad, your letter came just in time.")
        with page.expect_response("**/v1/audio/speech", timeout=180_000) as speech:
            page.click("#synthesize")
        assert speech.value.status == 200
        expect(status).to_contain_text("Done", timeout=60_000)
        assert page.locator("#output-audio").get_attribute("src").startswith("blob:")
        page.wait_for_function("() => { const a = document.getElementById('output-audio');"
                               " return a.readyState >= 1 && a.duration > 0.3 && !a.error; }", timeout=30_000)
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
        page.close()


def test_enrol_from_an_uploaded_consent_recording(page, clips):
    from playwright.sync_api import expect

    page.click("#get-phrase")
    expect(page.locator("#enroll-status")).to_contain_text("Type the speaker's full name first")
    page.fill("#speaker-name", "Ada Lovelace")
    page.click("#get-phrase")
    expect(page.locator("#phrase")).to_contain_text("I, Ada Lovelace, agree")
    page.set_input_files("#consent-file", str(clips[1].path))   # stands in for the microphone
    page.click("#enroll")
    expect(page.locator("#enroll-status")).to_contain_text("voice id v_", timeout=120_000)
    voice_id = page.locator("#enroll-status").get_attribute("data-voice-id")
    expect(page.locator("#voice")).to_have_value(voice_id)
    expect(page.locator("#voice-about")).to_contain_text("recorded consent of Ada Lovelace")
    page.click("#synthesize")                                    # no text: said before any call
    expect(page.locator("#speak-status")).to_contain_text("Type the text to speak first")


def test_a_refused_research_voice_says_what_to_run_and_is_added_once_attested(page, live_server, clips, tmp_path,
                                                                              monkeypatch):
    from playwright.sync_api import expect

    _, dep, _ = live_server
    wav, sr = load_audio(clips[3].path)                    # real speech in bytes no attestation lists
    recording = tmp_path / "my_reading.wav"
    recording.write_bytes(encode_audio(wav, sr, "wav"))
    page.set_input_files("#research-file", str(recording))
    page.click("#add-research")
    expect(page.locator("#research-status")).to_contain_text("Type the transcript")
    page.fill("#research-transcript", clips[3].text)
    page.click("#add-research")
    status = page.locator("#research-status")
    expect(status).to_contain_text("refused my_reading.wav: it is in no research corpus attested", timeout=60_000)
    assert_words(status)
    expect(page.locator("#attest-help")).to_be_visible()
    command = page.locator("#attest-command").text_content()
    assert command.startswith("valle2 corpus attest ") and command.endswith(" my_reading.wav")
    assert page.locator("#voice option[value='my_reading.wav']").count() == 0

    args = shlex.split(command)[1:]                        # run it as the operator would, named and licensed
    args[args.index("--name") + 1] = "my readings of CMU ARCTIC prompts"
    args[args.index("--licence") + 1] = "CMU ARCTIC: free to use and redistribute under the CMU ARCTIC licence"
    monkeypatch.chdir(tmp_path)
    assert valle2_cli(args + ["--home", str(dep.home)]) == 0

    page.click("#add-research")
    expect(status).to_contain_text("Added research voice my_reading.wav", timeout=60_000)
    expect(page.locator("#attest-help")).to_be_hidden()
    expect(page.locator("#voice")).to_have_value("my_reading.wav")
    expect(page.locator("#voice optgroup[label='Research voices'] option[value='my_reading.wav']")).to_have_count(1)
    expect(page.locator("#voice-about")).to_contain_text("attested research corpus")
