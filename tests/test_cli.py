"""The valle2 command line end to end, and the API's errors."""
import argparse
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

import valle2
from valle2.commands import main
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
               "--prompt-seconds", "1", "--out", str(out), "--top-p", "0.5", "--no-ras", "--temperature", "0.7",
               "--include-prompt", "--seed", "1"])
    assert rc == 0
    wav, sr = sf.read(out)
    assert len(wav) / sr > 0.5


def test_a_continuation_prompt_that_leaves_no_room_for_the_text_is_refused_naming_prompt_seconds(tiny_model, clips,
                                                                                                 tmp_path, capsys):
    """The whole utterance as its own continuation prompt: nothing is left to say, so the command
    stops before the model runs, with what to do (no 0.1 s output with exit 0)."""
    path, _, _, _ = tiny_model
    c, out = clips[1], tmp_path / "none.wav"
    rc = main(["synthesize", "--model", str(path), "--prompt", str(c.path), "--text", c.text, "--mode", "continuation",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert "leaves no room for the rest of the text" in err and "give a shorter --prompt (or cut it with --prompt-seconds)" in err
    assert "prompt_wav" not in err and "--prompt-text" in err
    with pytest.raises(AudioError, match="leaves no room.*give a shorter prompt_wav"):
        valle2.load_model(path).synthesize(c.text, *sf.read(c.path, dtype="float32"), mode="continuation", corpus_file=c.path)


def test_continuation_cuts_a_long_prompt_to_3_s_and_says_so(tiny_model, clips, tmp_path, capsys, deployment):
    path, _, _, _ = tiny_model
    c = clips[1]
    wav, sr = sf.read(c.path, dtype="float32")
    long = tmp_path / "twice.flac"
    sf.write(long, np.concatenate([wav, wav]), sr)   # 4.4 s
    deployment.registry.attest_corpus("ARCTIC twice", [long], "CMU ARCTIC licence")
    out = tmp_path / "cut.wav"
    rc = main(["synthesize", "--model", str(path), "--prompt", str(long), "--text", f"{c.text} {c.text}",
               "--mode", "continuation", "--out", str(out), "--seed", "0"])
    assert rc == 0 and out.is_file()
    assert "the prompt (4.4 s) is cut to its first 3 s, the paper's prefix (--prompt-seconds" in capsys.readouterr().err


def test_prompt_seconds_cuts_the_prompt_and_takes_only_positive_seconds():
    from valle2.commands.synthesize import cut_prompt, positive_seconds

    wav = np.arange(50, dtype=np.float32)
    assert cut_prompt(wav, 10, 2.0, "cross").size == 20 and cut_prompt(wav, 10, None, "cross").size == 50
    assert cut_prompt(wav, 10, None, "continuation").size == 30 and cut_prompt(wav, 10, 9.0, "continuation").size == 50
    assert positive_seconds("2.5") == 2.5
    for bad in ("0", "-1", "inf", "nan", "three"):
        with pytest.raises(argparse.ArgumentTypeError, match="--prompt-seconds takes a number of seconds above 0"):
            positive_seconds(bad)


def test_cli_posterior_mean_code_choice(tiny_model, clips, tmp_path):
    """``--code-choice mean`` decodes codebook 0 by the codec's codewords (EnCodec's first
    quantiser here), and a wrong choice is refused by argparse."""
    path, _, _, _ = tiny_model
    c = clips[1]
    out = tmp_path / "mean.wav"
    rc = main(["synthesize", "--model", str(path), "--prompt", str(clips[0].path), "--prompt-text", clips[0].text,
               "--text", c.text, "--out", str(out), "--code-choice", "mean", "--seed", "1"])
    wav, sr = sf.read(out)
    assert rc == 0 and len(wav) / sr > 0.5 and np.isfinite(wav).all()
    with pytest.raises(SystemExit):
        main(["synthesize", "--model", str(path), "--prompt", str(c.path), "--text", c.text, "--out", str(out),
              "--code-choice", "argmax"])


def test_pace_takes_a_number_or_the_prompts(capsys):
    """``--pace``: a duration factor for codebook 0 from the NAR or table, or 0 (the prompt's
    pace); anything else, or a factor out of 0.25..4, is refused by name."""
    from valle2.commands.options import add_decoding_args, decoding_options

    p = argparse.ArgumentParser()
    add_decoding_args(p)
    assert decoding_options(p.parse_args(["--pace", "1.5"])).pace == 1.5
    assert decoding_options(p.parse_args(["--pace", "0"])).pace == 0.0
    with pytest.raises(SystemExit):
        p.parse_args(["--pace", "fast"])
    assert "--pace takes a number or none, not 'fast'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="pace must be a number in 0.25..4, or 0"):
        valle2.DecodingOptions(pace=10.0)


def test_cli_names_decoding_options_the_model_cannot_honour(tiny_model, clips, tmp_path, capsys):
    """A pace out of range, or codebooks the codec cannot complete from, is an error that names the
    option (exit 2), not a traceback; the API raises the same DecodingError, a ValueError."""
    from valle2.errors import DecodingError

    path, _, _, _ = tiny_model
    c = clips[1]
    base = ["synthesize", "--model", str(path), "--prompt", str(clips[0].path), "--prompt-text", clips[0].text,
            "--text", c.text, "--out", str(tmp_path / "x.wav")]
    assert main(base + ["--pace", "10"]) == 2
    assert "valle2 synthesize: error: --pace must be a number in 0.25..4" in capsys.readouterr().err
    assert main(base + ["--nar-codebooks", "99"]) == 2
    assert "valle2 synthesize: error: --nar-codebooks must be between" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()
    assert issubclass(DecodingError, ValueError) and issubclass(DecodingError, valle2.Valle2Error)


def test_every_path_needs_consent(tiny_model, clips, tmp_path):
    from valle2.errors import ConsentError

    path, _, _, _ = tiny_model
    model = valle2.load_model(path)
    wav, sr = sf.read(clips[0].path, dtype="float32")
    with pytest.raises(ConsentError, match="consent record"):
        model.synthesize("hello there", wav, sr, prompt_text=clips[0].text)
    with pytest.raises(ConsentError, match="not enrolled"):
        model.synthesize("hello there", wav, sr, prompt_text=clips[0].text, voice_id="v_nobody")
    # an attested file does not cover another speaker's audio passed as the prompt
    other, osr = sf.read(clips[2].path, dtype="float32")
    with pytest.raises(ConsentError, match="does not match"):
        model.synthesize("hello there", other, osr, prompt_text=clips[2].text, corpus_file=clips[0].path)
    unattested = tmp_path / "copy.wav"
    sf.write(unattested, wav, sr)
    proc = subprocess.run([sys.executable, "-m", "valle2", "synthesize", "--model", str(path), "--prompt",
                           str(unattested), "--prompt-text", clips[0].text, "--text", "hello", "--out",
                           str(tmp_path / "x.wav")], capture_output=True, text=True)
    assert proc.returncode == 2 and "no attested research corpus" in proc.stderr
    assert not (tmp_path / "x.wav").exists()


def test_outputs_are_watermarked_and_logged(tiny_model, clips, deployment):
    from valle2.safety import detect

    path, _, _, _ = tiny_model
    model = valle2.load_model(path)
    wav, sr = sf.read(clips[1].path, dtype="float32")
    before = len(deployment.audit.entries())
    outs = model.synthesize_batch([clips[1].text, clips[0].text], wav, sr, prompt_text=clips[1].text,
                                  corpus_file=clips[1].path, n_samples=2,
                                  options=valle2.DecodingOptions(seed=0), include_prompt=True)
    assert [len(o) for o in outs] == [2, 2]
    found = detect(outs[0][0], model.sample_rate, deployment.watermark_key)
    assert found.present and found.payload is not None
    events = [e["event"] for e in deployment.audit.entries()[before:]]
    assert events.count("synthesis") == 4 and events.count("authorize") == 1
    assert deployment.audit.verify()[0]


def test_speed_changes_tempo_before_the_watermark(tiny_model, clips, deployment):
    from valle2.errors import AudioError
    from valle2.safety import detect

    path, _, _, _ = tiny_model
    model = valle2.load_model(path)
    wav, sr = sf.read(clips[1].path, dtype="float32")
    kw = dict(prompt_text=clips[1].text, corpus_file=clips[1].path, options=valle2.DecodingOptions(seed=3),
              include_prompt=True)   # the prompt's resynthesis gives the watermark seconds of audio to sit in
    normal, _ = model.synthesize(clips[0].text, wav, sr, **kw)
    fast, _ = model.synthesize(clips[0].text, wav, sr, speed=2.0, **kw)   # same seed: same codes, half the time
    assert len(fast) == round(len(normal) / 2)
    found = detect(fast, model.sample_rate, deployment.watermark_key)
    assert found.present and found.payload is not None   # marked after the tempo change
    before = len(deployment.audit.entries())
    with pytest.raises(AudioError, match="speed must be between 0.25 and 4.0"):
        model.synthesize(clips[0].text, wav, sr, speed=8.0, **kw)
    assert len(deployment.audit.entries()) == before   # refused before the gate spends anything


def test_cli_reports_bad_input_without_traceback(tiny_model, tmp_path):
    path, _, _, _ = tiny_model
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000), 16000)
    proc = subprocess.run([sys.executable, "-m", "valle2", "synthesize", "--model", str(path), "--prompt", str(silent),
                           "--prompt-text", "hello", "--text", "hello", "--out", str(tmp_path / "x.wav")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "silent" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "valle2", "synthesize", "--model", str(tmp_path / "nope.pt"),
                           "--prompt", str(silent), "--text", "hi", "--out", str(tmp_path / "x.wav")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "model file not found" in proc.stderr


def test_api_errors(tiny_model, clips, tmp_path):
    path, _, _, _ = tiny_model
    model = valle2.load_model(path)
    wav, sr = sf.read(clips[0].path, dtype="float32")
    with pytest.raises(TextError):
        model.synthesize("   ", wav, sr, prompt_text=clips[0].text, corpus_file=clips[0].path)
    with pytest.raises(TextError, match="transcript"):
        model.synthesize("hello", wav, sr, mode="cross", corpus_file=clips[0].path)
    with pytest.raises(AudioError, match="NaN"):
        model.synthesize("hello", np.full(8000, np.nan), sr, prompt_text="x", corpus_file=clips[0].path)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable"):
        valle2.load_model(corrupt)
    other = valle2.load_codec("encodec", pretrained=False)
    other.n_codebooks = 4
    with pytest.raises(ModelError, match="n_codebooks differs"):
        valle2.load_model(path, codec=other)


def test_synthesis_matches_the_prompts_voice_unless_told_not_to(tiny_model, clips):
    import argparse

    import torch

    from valle2.commands.options import add_decoding_args, decoding_options

    path, _, _, _ = tiny_model
    model = valle2.load_model(path)
    wav, sr = sf.read(clips[0].path, dtype="float32")
    prompt = model.encode_prompt(wav, sr)
    calls = []

    def codes(**options):
        return model.generate_codes([clips[1].text], wav, sr, clips[0].text, corpus_file=clips[0].path,
                                    options=valle2.DecodingOptions(**options))

    def shift(codes, reference):  # the tiny model's EnCodec keeps codes as they are; a visible stand-in
        calls.append(reference)
        return (codes + 1) % model.codec.codebook_size

    model.codec.match_voice = shift
    plain = codes(seed=0, match_voice=False)
    assert not calls
    matched = codes(seed=0)
    assert len(calls) == 1 and torch.equal(calls[0], prompt)
    assert torch.equal(matched.codes[0][0], (plain.codes[0][0] + 1) % model.codec.codebook_size)
    p = argparse.ArgumentParser()
    add_decoding_args(p)
    assert decoding_options(p.parse_args([])).match_voice and not decoding_options(p.parse_args(["--no-match-voice"])).match_voice


def test_the_nar_predicts_what_the_codec_does_not_complete(tiny_model, clips, monkeypatch):
    """Synthesis runs NAR passes for the codec's ``predicted_codebooks`` only and has the codec
    complete the rest; ``nar_codebooks`` (``--nar-codebooks``) asks for more, up to what the NAR predicts."""
    import argparse

    import torch

    from valle2.commands.options import add_decoding_args, decoding_options
    from valle2.synthesis import VallE2

    path, _, _, _ = tiny_model
    model = valle2.load_model(path)
    wav, sr = sf.read(clips[0].path, dtype="float32")
    stages, completed = [], []

    def codes(options):
        return model.generate_codes([clips[1].text], wav, sr, clips[0].text, corpus_file=clips[0].path,
                                    options=options).codes[0][0]

    real_nar = model.nar.forward
    monkeypatch.setattr(model.nar, "forward", lambda *a: stages.append(int(a[-1][0])) or real_nar(*a))
    codec = type(model.codec)
    monkeypatch.setattr(codec, "predicted_codebooks", property(lambda self: 3))
    monkeypatch.setattr(codec, "required_codebooks", property(lambda self: 3))
    monkeypatch.setattr(codec, "_complete", lambda self, c: completed.append(c.shape[0]) or torch.cat([c, c[-1:].repeat(8 - len(c), 1)]))
    opts = valle2.DecodingOptions(seed=0, match_voice=False)
    short = codes(opts)
    assert stages == [1, 2] and completed == [3] and short.shape[0] == 8 and torch.equal(short[3], short[2])
    stages.clear()
    full = codes(replace(opts, nar_codebooks=8))
    assert stages == list(range(1, 8)) and completed == [3] and torch.equal(full[:3], short[:3])
    stages.clear()
    five = codes(replace(opts, nar_codebooks=5))
    assert stages == [1, 2, 3, 4] and completed == [3, 5] and torch.equal(five[:5], full[:5])
    for bad in (2, 9):
        with pytest.raises(ValueError, match=f"nar_codebooks must be between 3 .* and 8 .* got {bad}"):
            codes(replace(opts, nar_codebooks=bad))
    p = argparse.ArgumentParser()
    add_decoding_args(p)
    assert decoding_options(p.parse_args([])).nar_codebooks is None
    assert decoding_options(p.parse_args(["--nar-codebooks", "8"])).nar_codebooks == 8
    monkeypatch.setattr(codec, "required_codebooks", property(lambda self: 8))
    model.bundle.dims.nar_codebooks = 3   # a NAR trained for a codec that completes its detail
    with pytest.raises(ModelError, match="needs 8 codebooks predicted, the model's NAR predicts 3"):
        VallE2(model.bundle, model.codec, model.gate)
