"""``valle2 demo``: the packaged demo voice (an attested research-corpus clip) spoken through the
consent gate, watermarked, and logged, as the README's main command does."""
from valle2.audio import load_audio
from valle2.cli import main
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
    import valle2.recipe

    monkeypatch.setattr(valle2.recipe, "ASSETS", tmp_path)   # a package without a shipped model
    rc = main(["demo", "--out", str(tmp_path / "x.wav")])
    err = capsys.readouterr().err
    assert rc != 0 and "recipe tiny" in err and "recipe demo" in err and not (tmp_path / "x.wav").exists()
