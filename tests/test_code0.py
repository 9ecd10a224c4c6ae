"""Codebook 0 without the paper's AR (valle2.code0): the NAR's stage-0 network, durations, and
the choice of source with the options that apply to it.  The context table: test_code0_table.py."""
import random

import pytest
import torch

from valle2.code0 import Code0, choose_source
from valle2.code0.durations import token_index
from valle2.code0.network import place_in_token
from valle2.config import OptimConfig
from valle2.decoding import DecodingOptions, nar_generate
from valle2.errors import DecodingError
from valle2.model import ModelDims, NARModel
from valle2.train import Utterance, collate


def tiny_dims(g=2, **kw):
    return ModelDims(n_text_vocab=50, codebook_size=64, group_size=g, d_model=64, n_heads=4, n_ar_layers=2,
                     n_nar_layers=2, d_ff=128, dropout=0.0, **kw)


def test_place_in_token_counts_frames_within_each_run():
    assert place_in_token(torch.tensor([3, 3, 3, 4, 6, 6])).tolist() == [0, 1, 2, 0, 0, 1]
    assert place_in_token(torch.tensor([], dtype=torch.long)).tolist() == []


def test_stage_0_predicts_codebook_0_from_the_token_of_each_frame():
    """``nar_code0``: the stage-0 network (its own output layer and place embedding, beside the
    NAR) reads the token each target frame reads; training draws stage 0 at ``nar_code0_share``;
    it needs the aligned AR."""
    with pytest.raises(ValueError, match="nar_code0 needs aligned"):
        tiny_dims(nar_code0=True)
    dims = tiny_dims(nar_code0=True, aligned=True, nar_codebooks=3)
    torch.manual_seed(0)
    nar, code0 = NARModel(dims).eval(), Code0(dims)
    net = code0.network
    assert nar.head.shape == (2, 64, 64) and net.head.shape == (64, 64) and code0.token_frames.shape == (50,)
    assert code0.source == "nar"  # no table fitted
    utts = [Utterance(torch.randint(1, 50, (5,)), torch.randint(0, 64, (8, 20)), "s")] * 400
    stages = collate(utts, random.Random(0), OptimConfig(nar_code0_share=0.75), dims.nar_predicts, True).stage.tolist()
    assert set(stages) == {0, 1, 2} and 0.68 < stages.count(0) / 400 < 0.82
    text, lens, prompt = torch.randint(1, 50, (1, 6)), torch.tensor([6]), [torch.randint(0, 64, (5, 8))]
    target, index = [torch.zeros(7, 8, dtype=torch.long)], torch.tensor([2, 2, 3, 3, 3, 4, 5])
    with pytest.raises(ValueError, match="NAR stages run 1..2"):
        nar(text, lens, prompt, target, torch.tensor([0]))
    with pytest.raises(ValueError, match="needs its frame inputs"):
        nar(text, lens, prompt, target, torch.tensor([0]), None, net.head)
    logits, _ = nar(text, lens, prompt, target, torch.tensor([0]), [net.frame_inputs(nar, text[0], index)], net.head)
    other, _ = nar(text, lens, prompt, target, torch.tensor([0]),
                   [net.frame_inputs(nar, text[0], torch.tensor([2, 2, 2, 3, 3, 4, 5]))], net.head)
    assert logits.shape == (1, 7, 64) and not torch.allclose(logits, other)  # it reads the index
    # the loss trains it; stats report its accuracy
    stage = torch.tensor([0])
    loss, stats = nar.train().loss(text, lens, prompt, [torch.randint(0, 64, (7, 8))], stage,
                                   net.loss_inputs(nar, text, lens, stage, [index]), net.head)
    loss.backward()
    assert net.head.grad.abs().sum() > 0 and net.place_emb.weight.grad.abs().sum() > 0 and "code0_acc" in stats


def test_stage_0_predict_then_the_nar_fills_the_rest_as_from_a_given_codebook_0():
    dims = tiny_dims(nar_code0=True, aligned=True)
    torch.manual_seed(1)
    nar, net = NARModel(dims).eval(), Code0(dims).network
    text, prompt = [torch.randint(1, 50, (6,))], [torch.randint(0, 64, (5, 8))]
    index = [torch.tensor([1, 1, 2, 3, 3, 3, 4, 5, 5])]
    code0 = net.predict(nar, text, prompt, index)[0]
    with torch.no_grad():
        logits, _ = nar(text[0].unsqueeze(0), torch.tensor([6]), prompt, [torch.zeros(9, 8, dtype=torch.long)],
                        torch.tensor([0]), [net.frame_inputs(nar, text[0], index[0])], net.head)
    assert torch.equal(code0, logits[0].argmax(-1))
    assert nar_generate(nar, text, prompt, [code0], n_codebooks=4)[0].shape == (4, 9)
    vectors = torch.randn(64, 3)
    by_mean = net.predict(nar, text, prompt, index, vectors)[0]
    assert torch.equal(by_mean, torch.cdist(logits[0].softmax(-1) @ vectors, vectors).argmin(-1))


def test_token_index_follows_the_durations_at_the_prompts_pace():
    frames = torch.full((50,), 2.0)
    frames[7] = 6.0
    text = torch.tensor([1, 1, 5, 7, 5])                    # 2 prompt tokens (4 mean frames), then 3
    table = torch.zeros(50, 64)
    # the prompt took 8 frames, twice the durations' 4: every target token lasts twice its mean
    assert token_index(frames, table, text, torch.zeros(8, dtype=torch.long), 2, 100).tolist() == \
        [2] * 4 + [3] * 12 + [4] * 4
    # a given pace holds whatever the prompt's: at 0.5 each token lasts half its mean
    assert token_index(frames, table, text, torch.zeros(8, dtype=torch.long), 2, 100, pace=0.5).tolist() == \
        [2] + [3] * 3 + [4]
    assert token_index(frames, table, text, torch.zeros(8, dtype=torch.long), 2, 10).tolist() == [2] * 4 + [3] * 6
    # a pace past the clip range is clipped to it (here 0.5), and every token keeps one frame at least
    fast = token_index(frames, table, text, torch.zeros(1, dtype=torch.long), 2, 100)
    assert fast.tolist() == [2, 3, 3, 3, 4]
    # continuation: the emission table finds where the prompt ends (id 1 emits code 0, id 9 code 1, ids 5 and 7 code 2)
    table = torch.full((50, 64), -9.0)
    table[1, 0] = table[9, 1] = table[5, 2] = table[7, 2] = 0.0
    cont = token_index(frames, table, torch.tensor([1, 9, 5, 7, 5]), torch.tensor([0, 0, 1, 1]), None, 100)
    assert cont.tolist() == [2] * 2 + [3] * 6 + [4] * 2
    # a caller that has the prompt's alignment already passes it instead: here one that ends on token 2,
    # so the target starts at token 3, at the pace of 4 frames over 3 tokens of 2
    given = token_index(frames, table, torch.tensor([1, 9, 5, 7, 5]), torch.tensor([0, 0, 1, 1]), None, 100,
                        prompt_index=torch.tensor([0, 1, 2, 2]))
    assert given.tolist() == [3] * 4 + [4]


def test_options_are_refused_by_flag_where_the_source_does_not_use_them():
    """Set options that do not apply to the source in use are refused, naming the flag; options
    left unset (None) never are, and ``code0`` picks another source the model has."""
    dims = tiny_dims(nar_code0=True, aligned=True)
    code0 = Code0(dims)
    assert choose_source(DecodingOptions(seed=3, max_seconds=9.0), "nar", code0) == "nar"
    for name, value in (("top_p", 0.9), ("temperature", 0.7), ("ras", False), ("use_kv_cache", False),
                        ("min_length_ratio", 0.2)):
        with pytest.raises(DecodingError, match=f"--{name.replace('_', '-')} does not apply: this model's codebook 0 "
                                                "comes from the NAR's stage 0 network.*--code0 ar"):
            choose_source(DecodingOptions(**{name: value}), "nar", code0)
    with pytest.raises(DecodingError, match="--code-choice sample does not apply"):
        choose_source(DecodingOptions(code_choice="sample"), "nar", code0)
    assert choose_source(DecodingOptions(code_choice="mean", pace=2.0), "nar", code0) == "nar"
    assert choose_source(DecodingOptions(code0="ar", top_p=0.9), "nar", code0) == "ar"
    with pytest.raises(DecodingError, match=r"--pace does not apply: codebook 0 comes from the AR, as the paper \(--code0 ar\)"):
        choose_source(DecodingOptions(code0="ar", pace=2.0), "nar", code0)
    with pytest.raises(DecodingError, match="--code0 table needs a fitted context table"):
        choose_source(DecodingOptions(code0="table"), "nar", code0)
    with pytest.raises(DecodingError, match="--code0 nar needs a model trained with model.nar_code0"):
        choose_source(DecodingOptions(code0="nar"), "ar", None)
    with pytest.raises(DecodingError, match="pace must be a number in 0.25..4, or 0"):
        DecodingOptions(pace=10.0)
    with pytest.raises(DecodingError, match="code0 must be one of"):
        DecodingOptions(code0="auto")
