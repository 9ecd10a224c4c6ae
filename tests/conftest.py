"""Shared fixtures: real ARCTIC clips copied into tests/fixtures (CMU ARCTIC licence, see
tests/fixtures/LICENSE.md) and a tiny AR+NAR overfit on them once per test session."""
import csv
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass
class Clip:
    id: str
    path: Path
    speaker: str
    text: str


def overfit_clips() -> list[Clip]:
    folder = FIXTURES / "overfit"
    with open(folder / "transcripts.tsv") as f:
        return [Clip(r["id"], folder / r["file"], r["speaker"], r["text"]) for r in csv.DictReader(f, delimiter="\t")]


@pytest.fixture(scope="session")
def clips() -> list[Clip]:
    return overfit_clips()


@pytest.fixture(scope="session", autouse=True)
def deployment(tmp_path_factory, clips):
    """A fresh deployment (keys, registry, audit log) for the whole session, via $VALLE2_HOME, in
    which the fixture clips are an attested research corpus (CMU ARCTIC licence)."""
    import os

    from valle2.safety.deployment import Deployment

    home = tmp_path_factory.mktemp("valle2_home")
    old = os.environ.get("VALLE2_HOME")
    os.environ["VALLE2_HOME"] = str(home)
    dep = Deployment.open(home)
    dep.registry.attest_corpus("CMU ARCTIC fixtures", [c.path for c in clips],
                               "CMU ARCTIC: free to use and redistribute under the CMU ARCTIC licence")
    yield dep
    if old is None:
        os.environ.pop("VALLE2_HOME", None)
    else:
        os.environ["VALLE2_HOME"] = old


@pytest.fixture(scope="session")
def codec():
    from valle2.codec import load_codec

    return load_codec("encodec", pretrained=False)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, clips, codec):
    """A G=2 AR+NAR trained to memorise the four fixture utterances; returns (path, bundle, data)."""
    from valle2.audio import load_audio
    from valle2.checkpoint import ModelBundle, save_model
    from valle2.model import ModelDims
    from valle2.text import TextTokenizer
    from valle2.config import OptimConfig
    from valle2.train import Trainer, Utterance, frames_per_token

    tokenizer = TextTokenizer.train([c.text for c in clips], vocab_size=64)
    data = []
    for c in clips:
        wav, sr = load_audio(c.path)
        data.append(Utterance(torch.tensor(tokenizer.encode(c.text)), codec.encode(wav, sr), c.speaker))
    dims = ModelDims(n_text_vocab=tokenizer.vocab_size, codebook_size=codec.codebook_size, n_codebooks=codec.n_codebooks,
                     group_size=2, d_model=128, n_heads=4, n_ar_layers=2, n_nar_layers=2, d_ff=256, dropout=0.0)
    trainer = Trainer(dims, OptimConfig(steps=250, lr=3e-3, warmup_steps=20, seed=0))
    history = trainer.fit(data, batch_size=4, progress=False)
    bundle = ModelBundle(dims, trainer.ar.eval(), trainer.nar.eval(), tokenizer, codec.describe(), frames_per_token(data))
    path = save_model(tmp_path_factory.mktemp("model") / "tiny.pt", bundle)
    return path, bundle, data, history
