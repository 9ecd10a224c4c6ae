"""Shared fixtures: the real ARCTIC clips packaged in valle2/assets/demo/clips (CMU ARCTIC
licence) and a tiny AR+NAR overfit on them once per test session."""
from dataclasses import dataclass
from pathlib import Path

import pytest

from valle2.recipe import CLIPS

FIXTURES = Path(__file__).parent / "fixtures"


class Said:
    """A transcriber stand-in that returns ``text``."""

    def __init__(self):
        self.text = ""

    def __call__(self, wav, sr):
        return self.text


@dataclass
class Clip:
    id: str
    path: Path
    speaker: str
    text: str


def overfit_clips() -> list[Clip]:
    from valle2.recipe import packaged_clips

    return [Clip(c["id"], c["path"], c["speaker"], c["text"]) for c in packaged_clips()]


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
def tiny_model(tmp_path_factory, codec):
    """``valle2 recipe tiny``'s G=2 AR+NAR memorising the four packaged clips, on EnCodec codes;
    returns (path, bundle, data, history)."""
    from valle2.recipe import train_tiny

    tiny = train_tiny(tmp_path_factory.mktemp("model") / "tiny.pt", codec=codec, progress=False)
    return tiny.path, tiny.bundle, tiny.data, tiny.history


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, clips, codec):
    """``valle2 prepare`` shards (EnCodec codes, a 64-unit phoneme BPE) of the packaged clips:
    the ``train`` folder."""
    import shutil

    from valle2.data import manifests_from_tsv, prepare

    root = tmp_path_factory.mktemp("corpus")
    rows = ["id\tpath\tspeaker\tseconds\ttext"]
    for c in clips:
        shutil.copy(c.path, root / c.path.name)
        rows.append(f"{c.id}\t{c.path.name}\t{c.speaker}\t2.0\t{c.text}")
    (root / "transcribed.tsv").write_text("\n".join(rows) + "\n")
    out = tmp_path_factory.mktemp("prepared")
    prepare(manifests_from_tsv(root), codec, None, out / "train", num_workers=1, vocab_size=64)
    return out / "train"
