"""``valle2 demo``: the packaged demo voice (an attested research-corpus clip) spoken through the
consent gate, watermarked, and logged, as the README's main command does."""
from valle2.audio import load_audio
from valle2.commands import main
from valle2.safety import detect


def test_demo_command_speaks_the_demo_voice_watermarked_and_logged(tiny_model, deployment, tmp_path, capsys):
    out = tmp_path / "demo.wav"
    before = len(deployment.audit.entries())
    rc = main(["demo", "--model", str(tiny_model[0]), "--mode", "continuation", "--out", str(out), "--seed", "0"])
    assert rc == 0 and "arctic_bdl_a0008" in capsys.readouterr().out
    wav, sr = load_audio(out)
    assert len(wav) / sr > 1.0
    assert detect(wav, sr, deployment.watermark_key).present
    assert [e["event"] for e in deployment.audit.entries()[before:]].count("synthesis") == 1
    assert deployment.audit.verify() == (True, None)


def test_demo_without_a_model_names_the_recipes(tmp_path, capsys, monkeypatch):
    import valle2.names

    monkeypatch.setattr(valle2.names, "DEMO", tmp_path)   # a package without a shipped model
    rc = main(["demo", "--out", str(tmp_path / "x.wav")])
    err = capsys.readouterr().err
    assert rc != 0 and "recipe tiny" in err and "recipe demo" in err and not (tmp_path / "x.wav").exists()


def test_int8_model_predicts_as_fp32_and_speaks_watermarked(tiny_model, deployment, clips, tmp_path):
    """``load_model`` runs the AR and NAR with int8 linears on the CPU unless ``int8=False`` (CLI
    ``--no-int8``): the tiny model's teacher-forced codebook-0 predictions stay those of fp32, and
    synthesis works either way."""
    import pytest
    import torch

    from valle2.errors import ModelError
    from valle2.synthesis import load_model

    path, _, data, _ = tiny_model
    fp, q8 = (load_model(path, gate=deployment.gate(), int8=x) for x in (False, None))
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in q8.ar.modules())
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in q8.nar.modules())
    assert not any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in [*fp.ar.modules(), *fp.nar.modules()])
    u = data[0]
    with torch.inference_mode():
        a, tgt, _ = fp.ar.teacher_forced(u.text_ids.unsqueeze(0), torch.tensor([len(u.text_ids)]), [u.codes[0]])
        b, _, _ = q8.ar.teacher_forced(u.text_ids.unsqueeze(0), torch.tensor([len(u.text_ids)]), [u.codes[0]])
    keep = tgt != -100
    assert (a.argmax(-1)[keep] == b.argmax(-1)[keep]).float().mean() > 0.95
    for flag in ("--int8", "--no-int8"):
        out = tmp_path / f"{flag}.wav"
        rc = main(["synthesize", "--model", str(path), "--prompt", str(clips[0].path), "--mode", "continuation",
                   "--prompt-seconds", "0.8", "--text", clips[0].text, "--out", str(out), "--seed", "0", flag,
                   "--include-prompt"])
        wav, sr = load_audio(out)
        assert rc == 0 and len(wav) / sr > 1.0 and detect(wav, sr, deployment.watermark_key).present
    with pytest.raises(ModelError, match="CPU only"):
        load_model(path, gate=deployment.gate(), int8=True, device="cuda")


def test_shipped_demo_model_speaks_the_demo_voice_in_cross_mode(deployment, tmp_path, capsys):
    """The README's main command: the zero-shot demo model shipped in the package (at most 25 MB,
    the aligned AR trained by `valle2 recipe demo`) reads new text in the demo voice."""
    from valle2.checkpoint import load_model_bundle
    from valle2.commands.demo import DEMO_TEXT
    from valle2.recipe import ASSETS

    shipped = ASSETS / "model.pt"
    assert shipped.stat().st_size <= 25 * 2**20
    bundle = load_model_bundle(shipped)
    assert bundle.dims.aligned and bundle.codec["name"] == "offline" and bundle.meta["heldout"]["sentences"]
    out = tmp_path / "demo.wav"
    rc = main(["demo", "--out", str(out), "--seed", "0"])
    assert rc == 0 and "cross mode" in capsys.readouterr().out
    wav, sr = load_audio(out)
    n_words = len(DEMO_TEXT.split())
    assert 0.15 * n_words < len(wav) / sr < 1.0 * n_words  # a reading pace, not a cut-off or a run to the limit
    assert detect(wav, sr, deployment.watermark_key).present
