"""The shipped demo model's output codes for fixed seeds and options, held by their hashes: a
refactor of decoding must give the same codes (issue 31).  fp32 (``int8=False``), so that the
hashes do not depend on the int8 kernels of one CPU."""
import hashlib
import json

import pytest
import torch

import valle2
from valle2.audio import load_audio
from valle2.recipe import ASSETS

CROSS_TEXT = "Come here, please."

# name -> (options, mode, samples, sha256 of the codes' shapes and values, first 16 hex digits)
CASES = {
    "default": (dict(seed=0), "cross", 1, "93478681f2a5e3fa"),
    "default_continuation": (dict(seed=0), "continuation", 1, "fb5242af9b293e61"),
    "table_prompt_pace_all_codebooks": (dict(pace=0, nar_codebooks=8, match_voice=False), "cross", 1,
                                        "21e72e11e0085af3"),
    "stage0_network": (dict(code0="nar"), "cross", 1, "5e85ba1c0c667558"),
    "ar": (dict(seed=0, code0="ar"), "cross", 1, "87b80da720d7a782"),
    "ar_continuation": (dict(seed=0, code0="ar"), "continuation", 1, "48b85c6fbd1d348d"),
    "ar_paper_sampling": (dict(seed=0, code0="ar", code_choice="sample"), "cross", 2, "06ff759bd5c89126"),
}


def codes_hash(codes: list[torch.Tensor]) -> str:
    d = hashlib.sha256()
    for c in codes:
        d.update(str(tuple(c.shape)).encode())
        d.update(c.to(torch.int64).contiguous().numpy().tobytes())
    return d.hexdigest()[:16]


@pytest.fixture(scope="module")
def demo(deployment):
    """The shipped model and its demo voice, an attested research-corpus clip (tests/conftest.py)."""
    voice = json.loads((ASSETS / "voice.json").read_text())
    model = valle2.load_model(ASSETS / "model.pt", gate=deployment.gate(), int8=False)
    return model, voice, ASSETS / voice["file"]


@pytest.mark.parametrize("name", CASES)
def test_shipped_demo_model_gives_the_same_codes(demo, name):
    model, voice, clip = demo
    options, mode, n_samples, expected = CASES[name]
    text = CROSS_TEXT if mode == "cross" else f"{voice['text']} {CROSS_TEXT}"
    wav, sr = load_audio(clip)
    gen = model.generate_codes([text], wav, sr, voice["text"], corpus_file=clip, mode=mode,
                               options=valle2.DecodingOptions(**options), n_samples=n_samples)
    assert codes_hash(gen.codes[0]) == expected
    assert gen.source == options.get("code0", "table") and model.code0_source == "table"  # what its file records


def test_the_shipped_model_saved_as_version_2_gives_the_same_codes(demo, tmp_path):
    """The shipped file is format version 1 (the NAR held codebook 0's network, durations and
    table); saved again it is version 2 (those beside the NAR, under ``code0``), as small, and
    decodes to the same codes."""
    from valle2.checkpoint import save_model

    model, voice, clip = demo
    path = save_model(tmp_path / "v2.pt", model.bundle, half=True)
    payload = torch.load(path, weights_only=True)
    assert payload["version"] == 2 and payload["code0"]["source"] == "table"
    assert not any(k.startswith("context.") or k == "token_frames" for k in payload["nar"])
    assert path.stat().st_size <= (ASSETS / "model.pt").stat().st_size + 2**16
    again = valle2.load_model(path, gate=model.gate, int8=False)
    assert again.code0_source == "table"
    wav, sr = load_audio(clip)
    for name in ("default", "ar"):
        options, mode, n_samples, expected = CASES[name]
        gen = again.generate_codes([CROSS_TEXT], wav, sr, voice["text"], corpus_file=clip, mode=mode,
                                   options=valle2.DecodingOptions(**options), n_samples=n_samples)
        assert codes_hash(gen.codes[0]) == expected


def test_options_the_shipped_models_source_does_not_use_are_refused_by_flag(demo):
    model, voice, clip = demo
    wav, sr = load_audio(clip)
    for options, message in ((dict(top_p=0.9), "--top-p does not apply: this model's codebook 0 comes from the context "
                                                "table; it is for --code0 ar only: leave it out, or add --code0 ar"),
                             (dict(code0="ar", pace=2.0), "--pace does not apply: codebook 0 comes from the AR"),
                             (dict(code0="table", code_choice="mean"), "--code-choice does not apply")):
        with pytest.raises(valle2.DecodingError, match=message):
            model.generate_codes([CROSS_TEXT], wav, sr, voice["text"], corpus_file=clip,
                                 options=valle2.DecodingOptions(**options))
