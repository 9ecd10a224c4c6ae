"""The paper's AR learns to read (issue 33's fast check): a tiny G=2 AR trained on pairs of flite
sentences (one voice reading one sentence, then another) continues a prompt of one sentence with
whichever sentence the text asks for, free-running with Repetition Aware Sampling.

The prompt alone cannot tell the AR what comes next (every sentence follows every other in
training), so matching codes show that it reads the text, finds the end of speech (no length-limit
hit) and does not loop.  A change that breaks the loss masking, the shift by one, the end-of-speech
target or the grouping fails here in about a minute, not on a GPU weeks later.
"""
import itertools
import random
import shutil

import pytest
import torch

from valle2.codec import load_codec
from valle2.data import SyntheticVoice
from valle2.data.synthetic import render
from valle2.data.utterance import Utterance
from valle2.decoding import DecodingOptions, ar_generate
from valle2.model import ModelDims
from valle2.config import OptimConfig
from valle2.text import TextTokenizer
from valle2.train import Trainer, join

GROUP = 2
SENTENCES = ["The cat sat on the mat.", "Open the red door now.", "Birds sing in the morning.",
             "Please pass me the salt.", "Time flies like an arrow."]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    if shutil.which("flite") is None:
        pytest.fail("flite is missing: `make test` installs it (scripts/install_synthetic_voices.sh)")
    codec = load_codec("offline")
    tokenizer = TextTokenizer.train(SENTENCES, vocab_size=0)
    voice = SyntheticVoice("flite", "kal16")
    scratch = tmp_path_factory.mktemp("flite")
    said = [Utterance(torch.tensor(tokenizer.encode(t)), codec.encode(render(voice, t, scratch), 16_000), "kal16")
            for t in SENTENCES]
    data = [join(said[j], said[i], GROUP) for j, i in itertools.permutations(range(len(said)), 2)]
    return tokenizer, codec, said, data


def test_a_tiny_ar_reads_which_sentence_to_say(pairs):
    tokenizer, codec, said, data = pairs
    torch.manual_seed(0)
    dims = ModelDims(n_text_vocab=tokenizer.vocab_size, n_codebooks=codec.n_codebooks, codebook_size=codec.codebook_size,
                     group_size=GROUP, d_model=128, n_heads=4, n_ar_layers=3, n_nar_layers=1, d_ff=256, dropout=0.0)
    trainer = Trainer(dims, OptimConfig(steps=300, lr=3e-3, warmup_steps=30, seed=0))
    history = trainer.fit(data, batch_size=8, progress=False)
    assert history[-1]["ar_acc"] > 0.95, history[-1]
    ar = trainer.ar.eval()
    options = DecodingOptions(code0="ar", code_choice="sample", ras=True, top_p=0.8, seed=0)
    rng = random.Random(0)
    for i in range(len(said)):
        j = rng.choice([k for k in range(len(said)) if k != i])   # a prompt of another sentence
        text = torch.cat([said[j].text_ids, said[i].text_ids])
        target = said[i].codes[0]
        res = ar_generate(ar, [text], [said[j].codes[0]], [3 * target.shape[0]], options)   # trims the prompt to G
        assert not res.hit_limit[0], f"sentence {i} after {j}: no end of speech"
        out = res.codes[0]
        n = min(out.shape[0], target.shape[0])
        match = (out[:n] == target[:n]).float().mean().item()
        assert abs(out.shape[0] - target.shape[0]) <= 2 and match > 0.85, (i, j, out.shape, target.shape, match)
