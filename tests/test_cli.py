"""The valle2 command line end to end, and the API's errors."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import valle2
from valle2.cli import main
from valle2.errors import AudioError, ModelError, TextError


def test_cli_synthesize_end_to_end(tiny_model, clips, tmp_path):
    path, bundle, _, _ = tiny_model
    out = tmp_path / "out.wav"
    prompt = clips[0]
    rc = main(["synthesize", "--model", str(path), "--prompt", str(prompt.path), "--prompt-text", prompt.text,
               "--text", clips[1].text, "--out", str(out), "--seed", "0"])
    assert rc == 0 and out.is_file()
    wav, sr = sf.read(out)
    assert sr == 24000 and wav.ndim == 1 and len(wav) > 0 and np.isfinite(wav).all()


def test_cli_continuation_mode_and_options(tiny_model, clips, tmp_path):
    path, _, _, _ = tiny_model
    out = tmp_path / "cont.flac"
    c = clips[1]
    rc = main(["synthesize", "--model", str(path), "--prompt", str(c.path), "--text", c.text, "--mode", "continuation",
               "--out", str(out), "--top-p", "0.5", "--no-ras", "--temperature", "0.7", "--include-prompt", "--seed", "1"])
    assert rc == 0
    wav, sr = sf.read(out)
    assert len(wav) / sr > 0.5


def test_cli_reports_bad_input_without_traceback(tiny_model, tmp_path):
    path, _, _, _ = tiny_model
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000), 16000)
    proc = subprocess.run([sys.executable, "-m", "valle2.cli", "synthesize", "--model", str(path), "--prompt", str(silent),
                           "--prompt-text", "hello", "--text", "hello", "--out", str(tmp_path / "x.wav")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "silent" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "valle2.cli", "synthesize", "--model", str(tmp_path / "nope.pt"),
                           "--prompt", str(silent), "--text", "hi", "--out", str(tmp_path / "x.wav")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "model file not found" in proc.stderr


def test_api_errors(tiny_model, clips, tmp_path):
    path, _, _, _ = tiny_model
    model = valle2.load_model(path)
    wav, sr = sf.read(clips[0].path, dtype="float32")
    with pytest.raises(TextError):
        model.synthesize("   ", wav, sr, prompt_text=clips[0].text)
    with pytest.raises(TextError, match="transcript"):
        model.synthesize("hello", wav, sr, mode="cross")
    with pytest.raises(AudioError, match="NaN"):
        model.synthesize("hello", np.full(8000, np.nan), sr, prompt_text="x")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable"):
        valle2.load_model(corrupt)
    other = valle2.load_codec("encodec", pretrained=False)
    other.n_codebooks = 4
    with pytest.raises(ModelError, match="n_codebooks differs"):
        valle2.load_model(path, codec=other)
