"""A tiny AR+NAR overfit on four real utterances: the loss falls and greedy decoding
reproduces the training codes."""
import torch

from valle2.decoding import DecodingOptions, ar_generate, nar_generate


def test_loss_falls(tiny_model):
    _, _, _, history = tiny_model
    first = sum(h["ar_loss"] for h in history[:5]) / 5
    last = sum(h["ar_loss"] for h in history[-5:]) / 5
    assert last < 0.1 * first, (first, last)
    assert history[-1]["nar_loss"] < 0.1 * history[0]["nar_loss"]
    assert history[-1]["ar_top10"] > 0.99


def test_greedy_decoding_reproduces_training_codes(tiny_model):
    _, bundle, data, _ = tiny_model
    for u in data:
        p = 20  # a multiple of G: the prompt is the first 20 frames
        res = ar_generate(bundle.ar, [u.text_ids], [u.codes[0, :p]], [400], DecodingOptions(temperature=0.0, ras=False))
        assert not res.hit_limit[0]
        target = u.codes[0, p:]
        assert res.codes[0].shape == target.shape
        assert (res.codes[0] == target).float().mean() > 0.98
        full = nar_generate(bundle.nar, [u.text_ids], [u.codes[:, :p].T], [target])[0]
        assert (full == u.codes[:, p:]).float().mean() > 0.98


def test_checkpoint_round_trip(tiny_model):
    from valle2.checkpoint import load_model_bundle

    path, bundle, data, _ = tiny_model
    loaded = load_model_bundle(path)
    assert loaded.dims == bundle.dims
    assert loaded.tokenizer.encode("Will we ever forget it.") == bundle.tokenizer.encode("Will we ever forget it.")
    for a, b in zip(loaded.ar.state_dict().values(), bundle.ar.state_dict().values()):
        assert torch.equal(a, b)
