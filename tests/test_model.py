"""Grouped codes, packing, masks, the KV cache against full recomputation, and losses."""
from dataclasses import replace

import pytest
import torch

from valle2.decoding import DecodingOptions, ar_generate, frame_bounds, nar_generate, pick_codes
from valle2.model import ARModel, ModelDims, NARModel, attention_mask, group_codes, pack, segment_positions, ungroup_codes


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


def test_posterior_mean_decoding_needs_codewords_and_agrees_with_recomputation():
    """``code_choice="mean"`` decodes with the codec's codebook-0 vectors: without them it is an
    error that says so; with them the KV cache and full recomputation pick the same codes, all
    of them codes with a codeword."""
    torch.manual_seed(3)
    ar = ARModel(tiny_dims(2)).eval()
    text = [torch.randint(1, 50, (7,)), torch.randint(1, 50, (12,))]
    prompt = [torch.randint(0, 64, (10,)), torch.randint(0, 64, (20,))]
    opts = DecodingOptions(seed=1, code_choice="mean")
    with pytest.raises(ValueError, match="codebook-0 vectors"):
        ar_generate(ar, text, prompt, [30, 30], opts)
    with pytest.raises(ValueError, match="code_choice"):
        DecodingOptions(code_choice="argmax")
    vectors = torch.randn(40, 5)  # only codes 0..39 have codewords
    a = ar_generate(ar, text, prompt, [30, 30], opts, code_vectors=vectors)
    b = ar_generate(ar, text, prompt, [30, 30], replace(opts, use_kv_cache=False), code_vectors=vectors)
    for ca, cb in zip(a.codes, b.codes):
        assert ca.numel() > 0 and torch.equal(ca, cb)
        assert bool((ca < 40).all())
    assert a.n_fallbacks == 0
    # unset, code_choice is "mean" given the codewords and "sample" without them
    auto = DecodingOptions(seed=1)
    for x, y in zip(ar_generate(ar, text, prompt, [30, 30], auto, code_vectors=vectors).codes, a.codes):
        assert torch.equal(x, y)
    sampled = ar_generate(ar, text, prompt, [30, 30], replace(auto, code_choice="sample"), code_vectors=vectors)
    for x, y in zip(ar_generate(ar, text, prompt, [30, 30], auto).codes, sampled.codes):
        assert torch.equal(x, y)


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


def test_nar_target_logits_match_the_whole_sequence_and_batching():
    """The NAR's last block and head run on the target frames only: the logits are those of the
    whole sequence's last block at those columns, and a padded batch gives each sample's own."""
    torch.manual_seed(5)
    nar = NARModel(tiny_dims(1)).eval()
    text = [torch.randint(1, 50, (9,)), torch.randint(1, 50, (6,))]
    prompt = [torch.randint(0, 64, (7, 8)), torch.randint(0, 64, (12, 8))]
    target = [torch.randint(0, 64, (10, 8)), torch.randint(0, 64, (4, 8))]
    stage = torch.tensor([3, 3])
    text_pad, lens = torch.nn.utils.rnn.pad_sequence(text, batch_first=True), torch.tensor([9, 6])
    with torch.no_grad():
        both, valid = nar(text_pad, lens, prompt, target, stage)
        assert both.shape == (2, 10, 64) and valid.sum(1).tolist() == [10, 4]
        for i in range(2):
            one, _ = nar(text[i].unsqueeze(0), lens[i:i + 1], prompt[i:i + 1], target[i:i + 1], stage[i:i + 1])
            torch.testing.assert_close(both[i, : len(target[i])], one[0], atol=1e-5, rtol=1e-5)
            # the same frames taken from the full last block (no row selection)
            audio = torch.cat([prompt[i], target[i]]).unsqueeze(0)
            n_used = torch.full(audio.shape[:2], 8)
            n_used[:, len(prompt[i]):] = 3
            ids, emb, seg = pack(text[i].unsqueeze(0), lens[i:i + 1], nar.embed_audio(audio, n_used, stage[i:i + 1]),
                                 torch.tensor([audio.shape[1]]))
            h = nar.backbone.run(nar.backbone.embed(ids, emb, seg, segment_positions(seg)),
                                 attention_mask(seg, seg, 0, causal=False))
            full = h[0, len(text[i]) + len(prompt[i]):] @ nar.head[2].T
            torch.testing.assert_close(one[0], full, atol=1e-5, rtol=1e-5)


def test_explicit_attention_weights_reproduce_sdpa():
    """A ``weights`` list (attention maps, valle2.evaluation.attention) makes every block compute its
    attention explicitly: the logits stay those of SDPA, and each block's weights sum to 1."""
    torch.manual_seed(5)
    ar = ARModel(tiny_dims(2)).eval()
    text, lens = torch.randint(1, 50, (2, 7)), torch.tensor([7, 4])
    codes = [torch.randint(0, 64, (13,)), torch.randint(0, 64, (6,))]
    weights = []
    with torch.no_grad():
        plain, _, _ = ar.teacher_forced(text, lens, codes)
        explicit, _, _ = ar.teacher_forced(text, lens, codes, weights=weights)
    torch.testing.assert_close(explicit, plain, atol=1e-5, rtol=1e-5)
    assert len(weights) == 2 and torch.allclose(weights[0].sum(-1), torch.ones(1))


def test_teacher_forced_logits_are_causal_and_read_the_text():
    torch.manual_seed(0)
    ar = ARModel(tiny_dims(2)).eval()
    text, lens = torch.randint(1, 50, (1, 6)), torch.tensor([6])
    codes = torch.randint(0, 64, (20,))
    logits, tgt, seg = ar.teacher_forced(text, lens, [codes])
    assert logits.shape == (1, 11, 2, 65) and torch.equal(tgt[0], group_codes(codes, 2, 64)) and seg.shape == (1, 17)
    later = codes.clone()
    later[12:] = (later[12:] + 1) % 64  # groups 6.. change: the predictions for groups 0..6 cannot
    changed, _, _ = ar.teacher_forced(text, lens, [later])
    assert torch.allclose(changed[0, :7], logits[0, :7], atol=1e-5) and not torch.allclose(changed[0, 7:], logits[0, 7:])
    other, _, _ = ar.teacher_forced((text % 49) + 1, lens, [codes])
    assert not torch.allclose(other, logits)


def test_pick_codes_on_an_ordinal_codebook():
    # frame 0: "none" at 0.3, the rest spread evenly over codes 100..120 (0.033 each): argmax says
    # "none", the window says the middle of the spread; frame 1: "none" at 0.6 stays "none";
    # frame 2: one sharp code wins either way
    probs = torch.full((3, 300), 1e-9)
    probs[0, 0], probs[0, 100:121] = 0.3, 0.7 / 21
    probs[1, 0], probs[1, 50:61] = 0.6, 0.4 / 11
    probs[2, 0], probs[2, 200] = 0.2, 0.8
    logits = probs.log()
    assert pick_codes(logits).tolist() == [0, 0, 200]
    assert pick_codes(logits, window=10).tolist() == [110, 0, 200]
    assert pick_codes(logits, window=2)[0].item() in range(102, 119)


def test_nar_uses_the_ordinal_window_only_where_asked():
    torch.manual_seed(4)
    nar = NARModel(tiny_dims(2)).eval()
    text, prompt, code0 = [torch.randint(1, 50, (6,))], [torch.randint(0, 64, (5, 8))], [torch.randint(0, 64, (12,))]
    plain = nar_generate(nar, text, prompt, code0)[0]
    wide = nar_generate(nar, text, prompt, code0, {1: 30})[0]
    target = torch.zeros(12, 8, dtype=torch.long)
    target[:, 0] = code0[0]
    with torch.no_grad():
        logits, _ = nar(text[0].unsqueeze(0), torch.tensor([6]), prompt, [target], torch.tensor([1]))
    assert logits.shape[1] == 12
    assert torch.equal(plain[1], logits[0].argmax(-1))
    assert torch.equal(wide[1], pick_codes(logits[0], 30))
    assert torch.equal(plain[0], wide[0]) and not torch.equal(plain[1], wide[1])


def test_nar_fills_only_the_codebooks_asked_for():
    torch.manual_seed(5)
    nar = NARModel(tiny_dims(2)).eval()
    text, prompt, code0 = [torch.randint(1, 50, (6,))], [torch.randint(0, 64, (5, 8))], [torch.randint(0, 64, (12,))]
    full = nar_generate(nar, text, prompt, code0)[0]
    three = nar_generate(nar, text, prompt, code0, n_codebooks=3)[0]
    assert three.shape == (3, 12) and torch.equal(three, full[:3])  # stage j reads codebooks < j only
    with pytest.raises(ValueError, match="n_codebooks must be in 1..8"):
        nar_generate(nar, text, prompt, code0, n_codebooks=9)


def test_a_nar_of_fewer_codebooks_learns_and_predicts_only_those():
    """``nar_codebooks=3``: one output layer a stage for codebooks 1 and 2, training draws only
    those stages, and decoding fills only them."""
    import random

    from valle2.config import OptimConfig
    from valle2.train import Utterance, collate

    dims = tiny_dims(2, nar_codebooks=3)
    assert dims.nar_predicts == 3 and tiny_dims(2).nar_predicts == 8
    nar = NARModel(dims).eval()
    assert nar.head.shape == (2, 64, 64)
    utts = [Utterance(torch.randint(1, 50, (5,)), torch.randint(0, 64, (8, 20)), "s")] * 64
    assert set(collate(utts, random.Random(0), OptimConfig(), dims.nar_predicts).stage.tolist()) == {1, 2}
    text, prompt, code0 = [torch.randint(1, 50, (6,))], [torch.randint(0, 64, (5, 8))], [torch.randint(0, 64, (12,))]
    assert nar_generate(nar, text, prompt, code0)[0].shape == (3, 12)
    with pytest.raises(ValueError, match="the codebooks this NAR predicts"):
        nar_generate(nar, text, prompt, code0, n_codebooks=8)
    for bad, msg in ((1, "0 \\(all\\) or at least 2"), (9, "exceeds the codec's 8 codebooks")):
        with pytest.raises(ValueError, match=msg):
            tiny_dims(2, nar_codebooks=bad)


