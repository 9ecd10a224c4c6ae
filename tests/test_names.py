"""Names for shipped files (:mod:`valle2.names`): ``load_model("demo")``, ``--model demo`` and the
demo voice by name, through the consent gate as any attested corpus file."""
import numpy as np
import pytest

import valle2
from valle2.audio import load_audio
from valle2.commands import main
from valle2.errors import AudioError, ConsentError, ModelError
from valle2.names import DEMO, model_file, shipped_voice
from valle2.safety import detect


@pytest.fixture(scope="module")
def demo_model(deployment):
    return valle2.load_model("demo", gate=deployment.gate())


def test_a_name_or_a_path_and_an_unknown_name_lists_the_known_ones(tmp_path):
    assert valle2.available_models() == ["demo"] and valle2.available_voices() == ["demo"]
    assert model_file("demo") == DEMO / "model.pt" and model_file(str(DEMO / "model.pt")) == DEMO / "model.pt"
    with pytest.raises(ModelError, match=r"model file not found: 'base' .*shipped model's name: demo"):
        valle2.load_model("base")
    with pytest.raises(ConsentError, match=r"no shipped voice 'base' \(shipped voices: demo\)"):
        shipped_voice("base")


def test_demo_voice_by_name_passes_the_gate_as_its_attested_clip(demo_model, deployment):
    before = len(deployment.audit.entries())
    wav, sr = demo_model.synthesize("Good morning.", voice_id="demo")
    assert 0.3 < len(wav) / sr < 3.0 and detect(wav, sr, deployment.watermark_key).present
    events = deployment.audit.entries()[before:]
    (auth,) = [e for e in events if e["event"] == "authorize"]
    assert auth["kind"] == "research" and auth["match"] == "excerpt" and auth["voice_id"] is None
    assert [e["event"] for e in events].count("synthesis") == 1


def test_demo_voice_refuses_another_speakers_prompt_and_a_second_consent_source(demo_model):
    voice = shipped_voice("demo")
    other, sr = load_audio(DEMO / "clips" / "arctic_slt_a0015.flac")   # slt; the demo voice is bdl
    with pytest.raises(ConsentError, match="does not match"):
        demo_model.synthesize("Good morning.", other, sr, prompt_text="Will we ever forget it.", voice_id="demo")
    with pytest.raises(ConsentError, match="leave corpus_file out"):
        demo_model.synthesize("Good morning.", voice_id="demo", corpus_file=voice.clip)
    with pytest.raises(AudioError, match="no prompt"):
        demo_model.synthesize("Good morning.")


def test_cli_takes_names_and_says_what_a_missing_prompt_needs(deployment, tmp_path, capsys):
    assert main(["synthesize", "--text", "Hi.", "--out", str(tmp_path / "x.wav")]) == 2
    assert "--prompt is needed" in capsys.readouterr().err
    assert main(["synthesize", "--model", "base", "--voice", "demo", "--text", "Hi.", "--out", str(tmp_path / "x.wav")]) == 2
    assert "shipped model's name: demo" in capsys.readouterr().err
    assert main(["info", "--json"]) == 0 and str(DEMO / "model.pt") in capsys.readouterr().out


def test_a_text_of_sentences_is_spoken_sentence_by_sentence_in_one_recording(demo_model, deployment):
    from valle2.synthesis import SENTENCE_PAUSE_SECONDS

    before = len(deployment.audit.entries())
    one, sr = demo_model.synthesize("Good morning.", voice_id="demo")
    two, _ = demo_model.synthesize("Good morning. The birch canoe slid on the smooth planks.", voice_id="demo")
    assert len(two) > len(one) + SENTENCE_PAUSE_SECONDS * sr
    hop = int(0.05 * sr)
    rms = np.sqrt(np.convolve(two.astype(np.float64) ** 2, np.ones(hop) / hop, mode="valid"))
    assert rms[len(one) // 2: -len(one) // 2].min() < 1e-3 * np.abs(two).max()   # the pause between them is silence
    assert detect(two, sr, deployment.watermark_key).present                      # one recording, marked as one
    events = deployment.audit.entries()[before:]
    assert [e["event"] for e in events].count("synthesis") == 2
