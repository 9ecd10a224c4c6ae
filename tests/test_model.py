"""Grouped codes, packing, masks, the KV cache against full recomputation, and losses."""
import pytest
import torch

from valle2.decoding import DecodingOptions, ar_generate, frame_bounds, nar_generate
from valle2.model import ARModel, ModelDims, NARModel, attention_mask, group_codes, ungroup_codes


def tiny_dims(g=1, **kw):
    return ModelDims(n_text_vocab=50, codebook_size=64, group_size=g, d_model=64, n_heads=4, n_ar_layers=2,
                     n_nar_layers=2, d_ff=128, dropout=0.0, **kw)


@pytest.mark.parametrize("g", [1, 2, 4, 8])
@pytest.mark.parametrize("t", [1, 5, 8, 17])
def test_group_ungroup_round_trip(g, t):
    codes = torch.randint(0, 64, (t,))
    groups = group_codes(codes, g, eos_id=64)
    assert groups.shape[1] == g and groups.numel() % g == 0
    assert (groups.reshape(-1)[t:] == 64).all() and groups.numel() > t  # at least one EOS
    assert torch.equal(ungroup_codes(groups, 64), codes)


def test_group_concat_layout():
    groups = group_codes(torch.arange(6), 2, eos_id=99)
    assert groups.tolist() == [[0, 1], [2, 3], [4, 5], [99, 99]]


def test_dims_validate():
    with pytest.raises(ValueError, match="group_size"):
        tiny_dims(g=3)


def test_prefix_lm_mask():
    seg = torch.tensor([[1, 1, 0, 2, 2]])  # two text, one pad, two audio
    m = attention_mask(seg, seg, 0, causal=True)[0, 0]
    assert m[0, 1]  # text sees later text
    assert not m[0, 3]  # text does not see audio
    assert m[4, 3] and not m[3, 4]  # audio is causal
    assert not m[3, 2] and m[2, 2]  # nobody sees padding, except itself
    nm = attention_mask(seg, seg, 0, causal=False)[0, 0]
    assert nm[3, 4] and nm[0, 4] and not nm[0, 2]


@pytest.mark.parametrize("g", [1, 2, 4])
def test_kv_cache_equals_full_recomputation(g):
    torch.manual_seed(0)
    ar = ARModel(tiny_dims(g)).eval()
    text = [torch.randint(1, 50, (7,)), torch.randint(1, 50, (12,)), torch.randint(1, 50, (3,))]
    prompt = [torch.randint(0, 64, (9,)), torch.randint(0, 64, (20,)), torch.randint(0, 64, (4,))]
    a = ar_generate(ar, text, prompt, [40, 33, 40], DecodingOptions(seed=5), keep_logits=True)
    b = ar_generate(ar, text, prompt, [40, 33, 40], DecodingOptions(seed=5, use_kv_cache=False), keep_logits=True)
    assert len(a.step_logits) == len(b.step_logits) > 3
    for la, lb in zip(a.step_logits, b.step_logits):
        torch.testing.assert_close(la, lb, atol=1e-4, rtol=1e-4)
    for ca, cb in zip(a.codes, b.codes):
        assert torch.equal(ca, cb)


def test_batched_decoding_matches_single():
    torch.manual_seed(1)
    ar = ARModel(tiny_dims(2)).eval()
    text = [torch.randint(1, 50, (7,)), torch.randint(1, 50, (12,))]
    prompt = [torch.randint(0, 64, (10,)), torch.randint(0, 64, (20,))]
    opts = DecodingOptions(temperature=0.0, ras=False)
    both = ar_generate(ar, text, prompt, [30, 30], opts, keep_logits=True)
    for i in range(2):
        one = ar_generate(ar, [text[i]], [prompt[i]], [30], opts, keep_logits=True)
        assert torch.equal(one.codes[0], both.codes[i])
        torch.testing.assert_close(one.step_logits[0][0], both.step_logits[0][i], atol=1e-4, rtol=1e-4)


def test_length_limit_stops_decoding():
    torch.manual_seed(2)
    ar = ARModel(tiny_dims(2)).eval()
    with torch.no_grad():  # make EOS impossible: the model would run forever without a limit
        ar.head.bias.view(2, 65)[:, 64] = -1e4
    res = ar_generate(ar, [torch.randint(1, 50, (5,))], [torch.randint(0, 64, (6,))], [11], DecodingOptions(seed=0))
    assert res.hit_limit == [True] and res.codes[0].shape[0] == 11


def test_eos_stops_decoding():
    ar = ARModel(tiny_dims(1)).eval()
    with torch.no_grad():
        ar.head.bias[64] = 1e4
    res = ar_generate(ar, [torch.randint(1, 50, (5,))], [torch.randint(0, 64, (6,))], [50], DecodingOptions(seed=0))
    assert res.hit_limit == [False] and res.codes[0].numel() == 0 and res.n_steps == 1


def test_min_frames_bar_eos_until_the_floor():
    ar = ARModel(tiny_dims(2)).eval()
    with torch.no_grad():  # EOS wins every step unless it is barred
        ar.head.bias.view(2, 65)[:, 64] = 1e4
    text, prompt = [torch.randint(1, 50, (5,))] * 2, [torch.randint(0, 64, (6,))] * 2
    res = ar_generate(ar, text, prompt, [50, 50], DecodingOptions(seed=0), min_frames=[0, 7])
    assert [c.shape[0] for c in res.codes] == [0, 8]  # the floor of 7 frames ends with the group that reaches it
    assert res.hit_limit == [False, False]
    assert frame_bounds(10, 3.0, 62.5, DecodingOptions(min_length_ratio=0.5, length_slack=2.5)) == (15, 137)
    assert frame_bounds(10, 3.0, 62.5, DecodingOptions(min_length_ratio=0.5, max_seconds=0.16)) == (10, 10)
    assert frame_bounds(10, 3.0, 62.5, DecodingOptions(min_length_ratio=0.5), given_frames=20) == (0, 117)


def test_losses_and_nar_shapes():
    torch.manual_seed(3)
    dims = tiny_dims(4)
    ar, nar = ARModel(dims), NARModel(dims)
    text = torch.randint(1, 50, (2, 9))
    lens = torch.tensor([9, 6])
    codes = [torch.randint(0, 64, (8, 30)), torch.randint(0, 64, (8, 21))]
    loss, stats = ar.loss(text, lens, [c[0] for c in codes])
    assert loss.item() > 0 and 0 <= stats["ar_top10"] <= 1
    loss.backward()
    assert ar.group_proj.weight.grad.abs().sum() > 0
    loss, stats = nar.loss(text, lens, [c[:, :5].T for c in codes], [c[:, 5:].T for c in codes], torch.tensor([1, 7]))
    assert loss.item() > 0
    nar.eval()
    out = nar_generate(nar, [text[0], text[1, :6]], [c[:, :5].T for c in codes], [c[0, 5:] for c in codes])
    assert [o.shape for o in out] == [(8, 25), (8, 16)]
    assert torch.equal(out[0][0], codes[0][0, 5:])
    assert all(int(o.max()) < 64 for o in out)
