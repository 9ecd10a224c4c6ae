"""The aligned AR (VALL-E R style): monotonic Viterbi alignment, hard-EM emissions, the pointer's
targets, aligned decoding and an aligned training run."""
import numpy as np
import pytest
import torch

from valle2.alignment import align, even_split, fit_emissions, viterbi
from valle2.code0.pointer import TextPointer
from valle2.decoding import DecodingOptions, ar_generate
from valle2.model import N_ADVANCE, ARModel, ModelDims, group_alignment


def tiny_dims(g=2):
    return ModelDims(n_text_vocab=20, codebook_size=32, group_size=g, d_model=32, n_heads=2, n_ar_layers=2,
                     n_nar_layers=1, d_ff=64, dropout=0.0, aligned=True)


def synthetic_corpus(n_utts=60, seed=0):
    """Utterances of an HMM whose 20 tokens each emit mostly their own code of 32, with known runs."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_utts):
        text = rng.integers(0, 20, rng.integers(3, 9))
        runs = rng.integers(2, 7, len(text))
        index = np.repeat(np.arange(len(text)), runs)
        own = text[index]
        codes = np.where(rng.random(len(index)) < 0.8, own, rng.integers(0, 32, len(index)))
        out.append((torch.from_numpy(text), torch.from_numpy(codes), index))
    return out


def test_viterbi_recovers_runs_and_is_monotonic():
    index = np.array([0, 0, 1, 1, 1, 2, 3, 3])
    logp = np.full((4, 8), -5.0)
    logp[index, np.arange(8)] = 0.0
    assert viterbi(logp).tolist() == index.tolist()
    noisy = viterbi(np.random.default_rng(0).normal(size=(5, 30)))
    assert noisy[0] == 0 and noisy[-1] == 4 and set(np.diff(noisy)) <= {0, 1}
    assert viterbi(np.zeros((6, 4))).tolist() == even_split(6, 4).tolist()  # fewer frames than tokens
    assert viterbi(logp[:, :5], open_end=True).tolist() == index[:5].tolist()


def test_hard_em_learns_the_emissions_from_even_splits():
    corpus = synthetic_corpus()
    table = fit_emissions(((t, c) for t, c, _ in corpus), 20, 32, iters=4, progress=False)
    assert table.shape == (20, 32) and torch.allclose(table.exp().sum(1), torch.ones(20), atol=1e-4)
    right = [float(np.mean(align(table, t, c).numpy() == idx)) for t, c, idx in corpus]
    even = [float(np.mean(even_split(len(t), len(c)) == idx)) for t, c, idx in corpus]
    assert np.mean(right) > 0.9 > np.mean(even) + 0.1
    with pytest.raises(ValueError, match="no .text, codes. pairs"):
        fit_emissions([], 20, 32)


def test_group_alignment_pointer_and_moves():
    index = torch.tensor([0, 0, 0, 1, 2, 2, 3])  # 7 frames, 4 tokens; G = 2 -> 4 groups (EOS in the last)
    pos, move = group_alignment(index, 4, 2, 4)
    assert pos.tolist() == [0, 0, 2, 3]
    assert move.tolist() == [0, 2, 1, 1]  # frames 0, 2, 4, 6 then the end (4) at frame 8
    pos, move = group_alignment(torch.tensor([0, 1, 1, 1]), 2, 2, 3)  # 4 frames: the last group is all EOS
    assert pos.tolist() == [0, 1, 2] and move.tolist() == [1, 1, -100]
    _, far = group_alignment(torch.arange(40), 40, 8, 6)
    assert int(far.max()) == N_ADVANCE - 1


def test_aligned_loss_trains_the_move_head():
    torch.manual_seed(0)
    ar = ARModel(tiny_dims())
    corpus = synthetic_corpus(8)
    ar.log_emission.copy_(fit_emissions(((t, c) for t, c, _ in corpus), 20, 32, progress=False))
    text = torch.nn.utils.rnn.pad_sequence([t for t, _, _ in corpus], batch_first=True)
    lens = torch.tensor([len(t) for t, _, _ in corpus])
    loss, stats = ar.loss(text, lens, [c for _, c, _ in corpus])
    assert torch.isfinite(loss) and {"ar_move", "ar_move_acc"} <= set(stats)
    loss.backward()
    assert ar.move_head.weight.grad.abs().sum() > 0 and ar.phone_end.grad is not None
    assert ar.backbone.text_emb.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("n_prompt_text", [None, 3])
def test_aligned_decoding_cache_matches_recomputation_and_ends_with_the_text(n_prompt_text):
    torch.manual_seed(1)
    ar = ARModel(tiny_dims()).eval()
    ar.log_emission.copy_(torch.randn(20, 32).log_softmax(-1))
    text = [torch.randint(0, 20, (7,)), torch.randint(0, 20, (11,))]
    prompt = [torch.randint(0, 32, (9,)), torch.randint(0, 32, (14,))]
    lens = None if n_prompt_text is None else [n_prompt_text] * 2
    a = ar_generate(ar, text, prompt, [200, 200], DecodingOptions(seed=3), keep_logits=True, guide=TextPointer(ar, lens))
    b = ar_generate(ar, text, prompt, [200, 200], DecodingOptions(seed=3, use_kv_cache=False), keep_logits=True,
                    guide=TextPointer(ar, lens))
    for la, lb in zip(a.step_logits, b.step_logits):
        torch.testing.assert_close(la, lb, atol=1e-4, rtol=1e-4)
    assert all(torch.equal(x, y) for x, y in zip(a.codes, b.codes))
    assert a.hit_limit == [False, False]  # the pointer passes the last token long before 200 frames


def test_decoding_forces_eos_past_the_text_and_bars_it_before():
    torch.manual_seed(2)
    ar = ARModel(tiny_dims(g=1)).eval()
    with torch.no_grad():
        ar.move_head.bias.fill_(-1e4)
        ar.move_head.bias[1] = 0.0  # always move one token: 5 tokens -> 5 frames, then EOS
        ar.head.bias[32] = 1e4  # the model wants EOS at once
    with pytest.raises(ValueError, match="an aligned AR decodes with a text pointer"):
        ar_generate(ar, [torch.arange(5)], [torch.zeros(0, dtype=torch.long)], [50], DecodingOptions(seed=0))
    res = ar_generate(ar, [torch.arange(5)], [torch.zeros(0, dtype=torch.long)], [50], DecodingOptions(seed=0),
                      guide=TextPointer(ar))
    assert res.codes[0].shape[0] == 4 and res.hit_limit == [False]  # EOS barred until the pointer is on the last token


def test_aligned_run_fits_the_table_and_exports_it(tmp_path, prepared):
    import valle2
    from test_train import write_config
    from valle2.config import load_config
    from valle2.train import run

    cfg = load_config(write_config(tmp_path, prepared, tmp_path / "run"), ["model.aligned=true"])
    model = valle2.load_model(run(cfg), codec=valle2.load_codec("encodec", pretrained=False))
    ar = model.bundle.ar
    assert model.bundle.dims.aligned and ar.log_emission.shape == (model.bundle.dims.n_text_vocab, 1024)
    assert torch.allclose(ar.log_emission.exp().sum(1), torch.ones(ar.log_emission.shape[0]), atol=1e-2)
    assert ar.log_emission.std() > 0  # fitted, not the zeros it was built with
