"""The README's "HTTP API" section, run as written with curl and the real ``openai`` package
against a live ``valle2 serve`` started with no ``--model`` (the shipped demo model and demo
voice) and a key from ``valle2 keys create``; and the stream's arrival sentence by sentence."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from openai import NotFoundError, OpenAI

from test_readme import README, readme_blocks
from test_server import decode, free_port, launch

SECTION = ("### HTTP API\n", "#### API keys\n")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """``valle2 serve`` on a free port with a new home; (its URL, a key of ``valle2 keys create``)."""
    home = tmp_path_factory.mktemp("serve_home")
    env = {**os.environ, "VALLE2_HOME": str(home), "OMP_NUM_THREADS": "1"}
    port = free_port()
    proc, url = launch([sys.executable, "-m", "valle2", "serve", "--port", str(port)], port, home / "server.log", env)
    try:
        made = subprocess.run([sys.executable, "-m", "valle2", "keys", "create", "--name", "my app"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        yield url, made.stdout.strip().splitlines()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_readme_http_api_examples_run_as_written(live, tmp_path):
    url, key = live
    text = README.read_text()
    section = text[text.index(SECTION[0]):text.index(SECTION[1])]
    examples = [b for b in readme_blocks(section) if "http://127.0.0.1:8000" in b.code]
    assert [b.lang for b in examples] == ["bash", "python"]
    env = {**os.environ, "VALLE2_API_KEY": key}
    for block in examples:
        code = block.code.replace("http://127.0.0.1:8000", url)
        argv = [sys.executable, "-c", code] if block.lang == "python" else ["bash", "-e", "-o", "pipefail", "-c", code]
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{block.lang} example failed:\n{code}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        wav, sr = decode((tmp_path / "hello.mp3").read_bytes(), "mp3")
        assert wav.size / sr > 0.3 and np.abs(wav).max() > 0.01, block.lang
    pcm, sr = decode((tmp_path / "stream.pcm").read_bytes(), "pcm")
    assert sr == 24000 and pcm.size / sr > 1.0 and np.abs(pcm).max() > 0.01


def test_the_stream_arrives_sentence_by_sentence(live):
    url, key = live
    client = OpenAI(base_url=url + "/v1", api_key=key)
    arrivals = []
    with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="demo", response_format="pcm",
            input="The first sentence. Then a second one. And a third.") as response:
        assert response.headers["x-sentences"] == "3" and response.headers["content-type"] == "audio/pcm"
        for chunk in response.iter_bytes():
            arrivals.append((time.monotonic(), len(chunk)))
    # a burst: the reads of one sentence's bytes; bursts are a synthesis apart (>= 0.1 s of CPU for the
    # long sentences; the short last one can take less, and its burst then runs into the one before)
    bursts = 1 + sum(1 for (t0, _), (t1, _) in zip(arrivals, arrivals[1:]) if t1 - t0 > 0.1)
    assert bursts >= 2, f"the audio arrived in one piece, not sentence by sentence: {arrivals}"
    assert sum(n for _, n in arrivals) % 2 == 0
    with pytest.raises(NotFoundError) as err:
        client.audio.speech.create(model="gpt-9", voice="demo", input="Hi.")
    assert err.value.code == "model_not_found" and "tts-1" in err.value.message
