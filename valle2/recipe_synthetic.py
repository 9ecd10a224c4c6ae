"""``valle2 recipe synthetic``: the paper's AR and NAR trained on synthetic speech with exact transcripts.

The task that shows the AR learns to read: Debian voices (flite, espeak-ng, festival) speak
sentences from Debian's ``fortunes`` (:func:`valle2.data.texts.fortune_sentences`), the offline
codec codes them, and ``configs/synthetic.yaml`` trains the plain AR (codebook 0 sampled with
RAS, no context table, no stage 0, no aligned pointer) and the NAR.

Steps (each resumable: a rerun reuses what is done, and training resumes from its last checkpoint,
so a 4-hour budget can be spread over several sessions):

1. Sentences, shuffled with ``seed``: ``test_sentences`` held out for tests, ``valid_sentences``
   for validation, the rest (or the first ``texts``) for training.  ``OUT/sentences.json``.
2. Every training voice reads the training and validation sentences; every training voice and
   the held-out voice (``heldout_voice``, never trained on) read the test sentences
   (``OUT/test/cuts.jsonl.gz``, what ``benchmarks.ar_learns`` and ``valle2 ablate`` read).  Each
   voice's test files are attested in the deployment (``home``, default ``$VALLE2_HOME``) as a
   synthetic-voice research corpus, proved by rendering them again
   (:func:`valle2.data.attest_synthetic_corpus`), so that they pass the consent gate as prompts.
3. ``valle2 prepare`` shards with the offline codec (``OUT/prepared/{train,valid}``).
4. Training (``OUT/train``), with checkpoints kept for the learning curve; each checkpoint and the
   model file carry the wall-clock seconds of training so far, over every resumed run
   (``train_seconds``).
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lhotse import CutSet
from tqdm.auto import tqdm

from .audio import atomic_write_bytes
from .data.synthetic import ENGINES, SyntheticVoice
from .errors import DataError


def parse_voice(spec: str) -> SyntheticVoice:
    """``ENGINE:NAME`` (e.g. ``flite:kal16``, ``festival:ked_diphone``, ``espeak-ng:en-us+m3``) -> a voice."""
    engine, sep, name = spec.partition(":")
    if not sep or not name or engine not in ENGINES:
        raise DataError(f"voice '{spec}' is not ENGINE:NAME with ENGINE one of {', '.join(ENGINES)} "
                        "(e.g. flite:kal16)")
    return SyntheticVoice(engine, name)


@dataclass
class SyntheticRecipe:
    """Settings of the synthetic recipe; voices are ``ENGINE:NAME`` strings (:func:`parse_voice`)."""

    out: Path = Path("runs/synthetic")
    config: Path = Path("configs/synthetic.yaml")
    voices: tuple[str, ...] = ("flite:kal16",)
    heldout_voice: str | None = None
    texts: int = 0   # training sentences; 0 = every one not held out
    test_sentences: int = 100
    valid_sentences: int = 64
    steps: int | None = None
    workers: int = 2
    seed: int = 0
    overrides: tuple[str, ...] = field(default_factory=tuple)
    home: Path | None = None   # the deployment the test files are attested in (None: $VALLE2_HOME)

    def __post_init__(self):
        for spec in (*self.voices, *([self.heldout_voice] if self.heldout_voice else [])):
            parse_voice(spec)
        if not self.voices:
            raise DataError("the synthetic recipe needs at least one training voice")
        if self.heldout_voice in self.voices:
            raise DataError(f"the held-out voice '{self.heldout_voice}' is also a training voice")


def recipe_dict(r: SyntheticRecipe) -> dict:
    """``r`` as JSON-ready values (what ``OUT/recipe.json`` and the model's metadata hold)."""
    return json.loads(json.dumps(asdict(r), default=str))


def split_sentences(sentences: list[str], r: SyntheticRecipe) -> dict[str, list[str]]:
    """``{"test", "valid", "train"}`` disjoint lists drawn from ``sentences`` with ``r.seed``."""
    order = sentences[:]
    random.Random(r.seed).shuffle(order)
    n_test, n_valid = r.test_sentences, r.valid_sentences
    train = order[n_test + n_valid:]
    if r.texts:
        train = train[: r.texts]
    if len(train) < 10:
        raise DataError(f"only {len(train)} training sentences are left after {n_test} test and {n_valid} validation ones")
    return {"test": order[:n_test], "valid": order[n_test:n_test + n_valid], "train": train}


def read_split(r: SyntheticRecipe) -> dict[str, list[str]]:
    """The recipe's sentence split, written to ``OUT/sentences.json`` on the first run and read
    back after (so a resumed run keeps its held-out sentences)."""
    from .data.texts import fortune_sentences

    path = r.out / "sentences.json"
    if path.is_file():
        return json.loads(path.read_text())
    split = split_sentences(fortune_sentences(), r)
    atomic_write_bytes(path, json.dumps(split, indent=0).encode())
    return split


def speak(texts: list[str], out_dir: Path, voices: list[SyntheticVoice], what: str) -> CutSet:
    """Every voice reads ``texts`` into ``out_dir`` (:func:`~valle2.data.synthesize_corpus`);
    DataError naming the voice when one read nothing (its engine is missing)."""
    from .data import synthesize_corpus

    cuts = []
    for voice in tqdm(voices, desc=f"synthesizing {what}", unit="voice"):
        got = synthesize_corpus(texts, out_dir, [voice])
        if len(got) == 0:
            raise DataError(f"voice {voice.engine}:{voice.name} produced no audio: install it "
                            "(scripts/install_synthetic_voices.sh) or choose another with --voice")
        cuts.extend(got)
    return CutSet.from_cuts(cuts)


def heldout_cuts_path(out: Path) -> Path:
    """Where the recipe keeps the test sentences' cuts (every voice, the held-out one included)."""
    return out / "test" / "cuts.jsonl.gz"


LICENCE = ("sentences from Debian's fortunes package (fortune-mod, BSD licence), spoken by a "
           "synthesizer: no person's voice")


def attest_test_voices(test: CutSet, voices: list[SyntheticVoice], home: Path | None) -> None:
    """Attest each voice's test files in the deployment at ``home`` (once: a voice whose files are
    attested already is left as it is)."""
    from .data import attest_synthetic_corpus
    from .errors import ConsentError
    from .safety.deployment import Deployment

    registry = Deployment.open(home).registry
    for voice in voices:
        cuts = CutSet.from_cuts(c for c in test if c.supervisions[0].speaker == voice.speaker)
        try:
            registry.corpus_for_file(cuts[0].recording.sources[0].source)
        except ConsentError:
            att = attest_synthetic_corpus(registry, f"synthetic {voice.speaker} test sentences", cuts, voice, LICENCE)
            tqdm.write(f"recipe: attested {len(att.files)} test files of {voice.engine}:{voice.name} ({att.corpus_id})")


def build_data(r: SyntheticRecipe) -> Path:
    """Steps 1-3: sentences, audio and prepared shards; returns ``OUT/prepared``."""
    from .codec import load_codec
    from .config import load_config
    from .data import load_tokenizer, prepare

    cfg = load_config(r.config, list(r.overrides))   # config errors before the corpus is built
    split = read_split(r)
    voices = [parse_voice(v) for v in r.voices]
    test_voices = voices + ([parse_voice(r.heldout_voice)] if r.heldout_voice else [])
    test = speak(split["test"], r.out / "audio" / "test", test_voices, "the test sentences")
    heldout_cuts_path(r.out).parent.mkdir(parents=True, exist_ok=True)
    test.to_file(heldout_cuts_path(r.out))
    attest_test_voices(test, test_voices, r.home)
    train = speak(split["train"], r.out / "audio" / "train", voices, "the training sentences")
    valid = speak(split["valid"], r.out / "audio" / "valid", voices, "the validation sentences")
    codec = load_codec("offline")
    prepared = r.out / "prepared"
    prepare(train, codec, None, prepared / "train", num_workers=r.workers, vocab_size=cfg.data.text_vocab)
    prepare(valid, codec, load_tokenizer(prepared / "train"), prepared / "valid", num_workers=r.workers)
    return prepared


def run_synthetic(r: SyntheticRecipe) -> Path:
    """Every step; returns the exported model file ``OUT/train/model.pt`` (its metadata names the
    voices, the held-out voice and the test cuts)."""
    from .checkpoint import load_model_bundle, save_model
    from .config import load_config
    from .train import run

    r.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(r.out / "recipe.json", json.dumps(recipe_dict(r), indent=1).encode())
    prepared = build_data(r)
    overrides = [f"data.train={prepared / 'train'}", f"data.valid={prepared / 'valid'}", f"run.out_dir={r.out / 'train'}",
                 *r.overrides, *([f"optim.steps={r.steps}"] if r.steps else [])]
    model_path = run(load_config(r.config, overrides))
    bundle = load_model_bundle(model_path)
    bundle.meta.update(recipe=recipe_dict(r), test_cuts=str(heldout_cuts_path(r.out)))
    save_model(model_path, bundle, half=True)
    tqdm.write(f"recipe: {bundle.meta['train_seconds'] / 3600:.2f} h of training in all")
    return model_path
