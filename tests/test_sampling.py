"""Top-k/top-p filtering, Repetition Aware Sampling and the posterior-mean code choice on
hand-built distributions."""
import math

import torch

from valle2.sampling import posterior_mean_codes, ras_sample, ras_sample_group, repetition_ratio, top_k_top_p_filter


def logits_of(probs):
    return torch.tensor([probs]).log()


def test_nucleus_keeps_smallest_set_reaching_top_p():
    logits = logits_of([0.5, 0.3, 0.15, 0.05])
    kept = torch.isfinite(top_k_top_p_filter(logits, top_p=0.75))[0].tolist()
    assert kept == [True, True, False, False]
    kept = torch.isfinite(top_k_top_p_filter(logits, top_p=0.81))[0].tolist()
    assert kept == [True, True, True, False]
    # top_p = 0 keeps only the most likely token (greedy); 1 keeps everything
    assert torch.isfinite(top_k_top_p_filter(logits, top_p=0.0))[0].tolist() == [True, False, False, False]
    assert torch.isfinite(top_k_top_p_filter(logits, top_p=1.0)).all()


def test_nucleus_works_on_unsorted_rows():
    logits = logits_of([0.05, 0.5, 0.15, 0.3])
    assert torch.isfinite(top_k_top_p_filter(logits, top_p=0.75))[0].tolist() == [False, True, False, True]


def test_nucleus_matches_the_sorted_definition_on_random_rows():
    # the reference: sort, keep each token whose more likely tokens hold less than top_p
    torch.manual_seed(0)
    logits = torch.randn(64, 1025) * 2
    logits[:8, -1] = float("-inf")
    for top_p in (0.0, 0.3, 0.8, 0.95):
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        keep_sorted = probs.cumsum(-1) - probs < top_p
        keep_sorted[:, 0] = True
        expected = keep_sorted.scatter(-1, order, keep_sorted)
        assert torch.equal(torch.isfinite(top_k_top_p_filter(logits, top_p=top_p)), expected)
    half = top_k_top_p_filter(logits.bfloat16(), top_p=0.8)
    assert half.dtype == torch.bfloat16 and bool(torch.isfinite(half).any(-1).all())


def test_top_k():
    logits = logits_of([0.1, 0.4, 0.2, 0.3])
    assert torch.isfinite(top_k_top_p_filter(logits, top_k=2))[0].tolist() == [False, True, False, True]


def test_repetition_ratio_counts_last_window():
    hist = torch.tensor([[7, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 7]])
    # last 10 entries: 1..9 and 7 -> token 7 appears twice
    assert math.isclose(repetition_ratio(torch.tensor([7]), hist, 10).item(), 0.2, rel_tol=1e-6)
    assert repetition_ratio(torch.tensor([0]), hist, 10).item() == 0.0
    empty = torch.full((1, 10), -1)
    assert repetition_ratio(torch.tensor([3]), empty, 10).item() == 0.0


def test_ras_falls_back_exactly_when_window_repeats():
    # nucleus (top_p=0.5) holds token 0 alone; the full distribution puts 0.9 on token 1.
    probs = [0.55, 0.44, 0.01]
    logits = logits_of(probs).repeat(2, 1)
    no_repeat = torch.tensor([2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    one_repeat = torch.tensor([2, 2, 2, 2, 2, 2, 2, 2, 2, 0])
    history = torch.stack([no_repeat, one_repeat])
    n_fell = torch.zeros(2)
    n = 400
    g = torch.Generator().manual_seed(0)
    picks = torch.zeros(2, 3)
    for _ in range(n):
        tok, fell = ras_sample(logits, history, top_p=0.5, window=10, threshold=0.1, generator=g)
        n_fell += fell.float()
        picks[0, tok[0]] += 1
        picks[1, tok[1]] += 1
    # row 0: token 0 never repeats in the window -> never falls back, always the nucleus token
    assert n_fell[0] == 0 and picks[0, 0] == n
    # row 1: token 0 already in the window (ratio 0.1 = t_r) -> always falls back to the full distribution
    assert n_fell[1] == n
    freq = picks[1] / n
    assert abs(freq[0] - 0.55) < 0.08 and abs(freq[1] - 0.44) < 0.08


def test_ras_threshold_above_ratio_keeps_nucleus():
    logits = logits_of([0.55, 0.44, 0.01])
    history = torch.tensor([[2, 2, 2, 2, 2, 2, 2, 2, 2, 0]])
    tok, fell = ras_sample(logits, history, top_p=0.5, window=10, threshold=0.2)
    assert not fell.item() and tok.item() == 0


def test_greedy_temperature_zero():
    logits = logits_of([0.2, 0.5, 0.3])
    tok, _ = ras_sample(logits, torch.full((1, 10), -1), top_p=1.0, temperature=0.0)
    assert tok.item() == 1


def test_ras_group_checks_each_code_against_the_codes_before_it():
    # the nucleus (top_p=0.5) holds token 0 alone, and token 0 is not in the history: the group's
    # first code keeps it; from then on token 0 is in the window (ratio 0.1 = t_r), so every later
    # code of the group falls back to the full distribution, as if sampled one by one
    logits = logits_of([0.55, 0.44, 0.01]).repeat(1, 4, 1)  # [B=1, G=4, V=3]
    history = torch.full((1, 10), 2)
    g = torch.Generator().manual_seed(0)
    n, later = 300, torch.zeros(3)
    for _ in range(n):
        tok, fell = ras_sample_group(logits, history, top_p=0.5, window=10, threshold=0.1, generator=g)
        assert tok[0, 0] == 0 and fell.tolist() == [[False, True, True, True]]
        later += torch.bincount(tok[0, 1:], minlength=3)
    freq = later / later.sum()
    assert abs(freq[0] - 0.55) < 0.06 and abs(freq[1] - 0.44) < 0.06


def test_posterior_mean_code_is_the_code_of_least_expected_squared_distance():
    # codewords on a line 0, 1, 2, 10; half the mass on 0 and half on 2: the mean 1 is code 1,
    # a code the model gave no probability, and neither of the two tied argmaxes
    vectors = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    eos = 4
    logits = torch.tensor([[0.5, 1e-9, 0.5, 1e-9, 1e-12]]).log()
    assert posterior_mean_codes(logits, vectors, eos).tolist() == [1]
    # on random distributions it is the brute-force minimiser of E ||v_c - v_X||^2 over codes c
    torch.manual_seed(0)
    vectors = torch.randn(16, 3)
    logits = torch.randn(50, 17) * 3
    logits[:, 16] = float("-inf")
    p = logits[:, :16].softmax(-1)
    risk = (p.unsqueeze(1) * torch.cdist(vectors, vectors).pow(2).unsqueeze(0)).sum(-1)  # [N, c]
    assert torch.equal(posterior_mean_codes(logits, vectors, 16), risk.argmin(-1))


def test_posterior_mean_ends_with_the_probability_of_eos_and_stays_in_the_codewords():
    vectors = torch.randn(6, 2)            # 6 codewords of a vocabulary of 8 codes + EOS
    eos = 8
    logits = torch.zeros(4000, 9)
    logits[:, eos] = 1.2                   # p(EOS) = e^1.2 / (8 + e^1.2), about 0.29
    p_eos = logits.softmax(-1)[0, eos].item()
    assert 0.25 < p_eos < 0.35
    out = posterior_mean_codes(logits, vectors, eos, generator=torch.Generator().manual_seed(0))
    assert abs(out.eq(eos).float().mean().item() - p_eos) < 0.03
    assert bool((out[out != eos] < 6).all())  # codes without a codeword are never chosen
    forced = torch.full((3, 9), float("-inf"))
    forced[:, eos] = 0.0                   # the aligned AR forces EOS past the text's end
    assert posterior_mean_codes(forced, vectors, eos).tolist() == [eos] * 3
    barred = torch.randn(3, 9)
    barred[:, eos] = float("-inf")
    assert not bool(posterior_mean_codes(barred, vectors, eos).eq(eos).any())
    assert torch.equal(posterior_mean_codes(barred, vectors, eos, temperature=0.0), barred.argmax(-1))
