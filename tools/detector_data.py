"""The data set of valle2's synthesized-speech detector: real speech from six sources, synthesized
speech from every generator that runs offline.  Generated files are cached under ``--cache``
(default /tmp/valle2_detector), never in the repo; ``manifest.tsv`` there lists every clip.

    python -m tools.detector_data --data ../shared/data            # build (cached; about 40 min the first time)

Real speech (label 0), one ``source`` each, split speaker-disjoint into train and test where the
source has several speakers (:data:`REAL_SOURCES`):

- ``arctic``: CMU ARCTIC bdl + slt (``transcribed.tsv``); test: the demo recipe's 60 held-out sentences;
- ``librispeech``: 251 LibriSpeech speakers (``untranscribed.tsv``, 8 s each); test: the recipe's 50 held-out speakers;
- ``commonvoice``, ``cathy``, ``vcc2016``, ``fsdd``: ``real-extra/`` (volunteers' own microphones, a
  home USB microphone, a studio, 8 kHz home recordings); test: 30 Common Voice speakers, 30 cathy
  clips, 3 VCC speakers, 2 FSDD speakers.

Synthesized speech (label 1), by ``generator``:

- ``codec``: offline-codec resyntheses of the real clips (with and without the codec's post-net);
- ``pulsenoise``, ``griffinlim``, ``lpc``: classic vocoders re-synthesising real clips (``lpc``:
  Praat's linear prediction through ``parselmouth``, with the stylised pitch and changed timing of
  rule-based prosody; test only, a second generator never trained on: in training it made the
  detector refuse real speech through noise, docs/history/2026-12-07-detector.md);
- ``espeak``, ``festival``: their voices reading ARCTIC sentences (held-out ones for the test split);
- ``valle2``: unwatermarked outputs of valle2 models (the shipped demo model and the tiny model of
  ``valle2 recipe tiny``, trained into the cache on first use; decoded as ``valle2 synthesize``
  decodes) prompted by 3 s of LibriSpeech speakers;
- ``flite``: flite's voices, test only: the generator left out of training (``eer_unseen``).

``lpc`` and ``flite`` are test-only (:data:`UNSEEN_GENERATORS`).

Fakes made from a real clip (codec, vocoders) carry that clip's ``source``, so that leaving a
source out of training leaves out its resyntheses too.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tools import DEFAULT_DATA, run_main

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path("/tmp/valle2_detector")
DEFAULT_MODEL = ROOT / "valle2" / "assets" / "demo" / "model.pt"
TINY = "tiny"          # ``--model tiny``: the model of ``valle2 recipe tiny``, trained into the cache on first use
DEFAULT_MODELS = (str(DEFAULT_MODEL), TINY)
REAL_SOURCES = ("arctic", "librispeech", "commonvoice", "cathy", "vcc2016", "fsdd")
TRAIN_GENERATORS = ("codec", "espeak", "festival", "valle2", "pulsenoise", "griffinlim")
UNSEEN_GENERATORS = ("flite", "lpc")   # never trained on; the first one's EER is ``eer_unseen``
PLAIN_TAG = "plain-"   # item ids of clips decoded by plain WORLD when the codec has a post-net: codec_plain-..., valle2_plain-...
SR = 16_000
# clips the tests score (valle2/assets/demo/clips, tests/fixtures/codec): never trained on
KEEP_OUT_SENTENCES = {"a0005", "a0008", "a0015", "a0018", "b0452", "b0455"}
KEEP_OUT_SPEAKERS = {"ls103", "ls1098"}
# real-extra test split: speakers (or, for the one-speaker cathy, clips) held out of training
EXTRA_TEST = {"commonvoice": 30, "cathy": 30, "vcc2016": 3, "fsdd": 2}


@dataclass
class Item:
    """One clip: ``label`` 1 = synthesized; ``generator`` real/codec/espeak/festival/valle2/flite/a vocoder;
    ``source`` the real source it is or was made from ("" for text-to-speech engines)."""

    id: str
    path: str
    label: int
    generator: str
    source: str
    speaker: str
    split: str


# --------------------------------------------------------------------------------------- helpers
def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _save(path: Path, wav: np.ndarray) -> None:
    from valle2.audio import save_audio

    save_audio(path, np.clip(wav, -1.0, 1.0).astype(np.float32), SR)


def eer(real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
    """Equal error rate (percent) of scores (higher = synthesized) and the threshold where the
    false-alarm rate on ``real`` and the miss rate on ``fake`` cross."""
    real, fake = np.asarray(real, float), np.asarray(fake, float)
    thresholds = np.unique(np.concatenate([real, fake]))
    fa = np.array([(real >= t).mean() for t in thresholds])
    miss = np.array([(fake < t).mean() for t in thresholds])
    i = int(np.argmin(np.abs(fa - miss)))
    return 100.0 * float((fa[i] + miss[i]) / 2), float(thresholds[i])


# ------------------------------------------------------------------------------------- the data
def real_items(data: Path, heldout: dict, arctic_per_speaker: int, seed: int) -> list[Item]:
    """Real clips of every source in :data:`REAL_SOURCES`, split into train and test."""
    held_sent, held_spk = set(heldout["sentences"]), set(heldout["speakers"])
    rng = random.Random(seed)
    items = []
    arctic = _rows(data / "transcribed.tsv")
    for spk in sorted({r["speaker"] for r in arctic}):
        rows = [r for r in arctic if r["speaker"] == spk]
        test = [r for r in rows if r["id"].rsplit("_", 1)[1] in held_sent]
        train = [r for r in rows if r["id"].rsplit("_", 1)[1] not in held_sent | KEEP_OUT_SENTENCES]
        rng.shuffle(train)
        for split, chosen in (("test", test), ("train", train[:arctic_per_speaker])):
            items += [Item(r["id"], str(data / r["path"]), 0, "real", "arctic", spk, split) for r in chosen]
    for r in _rows(data / "untranscribed.tsv"):
        if r["speaker"] in KEEP_OUT_SPEAKERS and r["speaker"] not in held_spk:
            continue
        items.append(Item(r["id"], str(data / r["path"]), 0, "real", "librispeech", r["speaker"],
                          "test" if r["speaker"] in held_spk else "train"))
    extra_dir = data / "real-extra"
    if not (extra_dir / "clips.tsv").is_file():
        print(f"no {extra_dir}/clips.tsv: the real-extra sources are left out", file=sys.stderr)
        return items
    extra = _rows(extra_dir / "clips.tsv")
    for source, n_test in EXTRA_TEST.items():
        rows = [r for r in extra if r["source"] == source]
        speakers = sorted({r["speaker"] for r in rows})
        if len(speakers) > 1:      # speaker-disjoint
            test_spk = set(random.Random(f"{seed}-{source}").sample(speakers, n_test))
            is_test = [r["speaker"] in test_spk for r in rows]
        else:                      # one speaker: held-out clips
            test_ids = set(random.Random(f"{seed}-{source}").sample(range(len(rows)), n_test))
            is_test = [i in test_ids for i in range(len(rows))]
        for r, t in zip(rows, is_test):
            items.append(Item(f"{source}_{Path(r['path']).stem}", str(extra_dir / r["path"]), 0, "real", source,
                              r["speaker"], "test" if t else "train"))
    return items


def decoders(codec=None) -> list[tuple[str, object]]:
    """``(tag, codec)`` for each way valle2 decodes offline-codec codes: the shipped codec and, when it
    has a post-net, plain WORLD as well (``postnet=False``), as users can decode either way."""
    from valle2.codec.offline import OfflineCodec

    codec = codec or OfflineCodec.load()
    if getattr(codec, "postnet", None) is None:
        return [("", codec)]
    plain = OfflineCodec(codec.config, codec.envelope_codebooks, codec.aperiodicity_codebook, None)
    return [("", codec), (PLAIN_TAG, plain)]


def codec_items(real: list[Item], cache: Path) -> list[Item]:
    """Offline-codec resynthesis of every real clip by each of :func:`decoders` (cached per decoder)."""
    from valle2.audio import load_audio

    ways = [(tag, codec, cache / "codec" / codec.decoder_fingerprint()) for tag, codec in decoders()]
    encoder = ways[0][1]     # the decoders share the codebooks, so each clip is encoded once
    for it in tqdm(real, desc="codec resyntheses", unit="clip"):
        missing = [(codec, out_dir / f"{it.id}.flac") for _, codec, out_dir in ways if not (out_dir / f"{it.id}.flac").is_file()]
        if missing:
            codes = encoder.encode(*load_audio(it.path))
            for codec, path in missing:
                _save(path, codec.decode(codes).numpy())
    return [Item(f"codec_{tag}{it.id}", str(out_dir / f"{it.id}.flac"), 1, "codec", it.source, it.speaker, it.split)
            for tag, _, out_dir in ways for it in real]


def _rms_matched(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``y`` scaled to the RMS of ``x`` (a re-synthesis at its original's loudness)."""
    return y * np.sqrt(np.mean(x ** 2) / (np.mean(y ** 2) + 1e-12))


def pulse_noise_vocoder(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Classic parametric-TTS vocoding of 16 kHz ``wav [samples]``: WORLD F0 (DIO + StoneMask) and
    CheapTrick envelope every 10 ms, re-synthesised from a pulse train (voiced) or white noise
    (unvoiced) shaped by the envelope in the STFT domain (HTS-style pulse/noise excitation)."""
    import pyworld

    x = wav.astype(np.float64)
    f0, t = pyworld.dio(x, SR, frame_period=10.0)
    f0 = pyworld.stonemask(x, f0, t, SR)
    sp = pyworld.cheaptrick(x, f0, t, SR)                       # [frames, 513]
    hop, n = SR // 100, x.size
    f0s = f0[np.minimum(np.arange(n) // hop, f0.size - 1)] * float(rng.uniform(0.9, 1.1))
    voiced = f0s > 0
    phase = np.cumsum(np.where(voiced, f0s, 0.0) / SR)
    pulses = (np.diff(np.floor(phase), prepend=0.0) > 0) * np.sqrt(SR / np.maximum(f0s, 1.0))
    noise = rng.standard_normal(n)
    exc = np.where(voiced, pulses + float(rng.uniform(0.0, 0.3)) * noise, noise)
    win = torch.hann_window(1024, dtype=torch.float64)
    spec = torch.stft(torch.from_numpy(exc), 1024, hop, 1024, win, return_complex=True)   # [513, frames]
    m = min(spec.shape[1], sp.shape[0])
    shaped = spec[:, :m] * torch.from_numpy(np.sqrt(sp[:m].T))
    y = torch.istft(shaped, 1024, hop, 1024, win, length=min(n, (m - 1) * hop)).numpy()
    return _rms_matched(y, x).astype(np.float32)


def _mel_filters(n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular mel filters ``[n_mels, n_fft // 2 + 1]`` over 0 .. 8 kHz (HTK mel scale)."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)        # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)          # noqa: E731
    edges = hz(np.linspace(0, mel(SR / 2), n_mels + 2))
    freqs = np.linspace(0, SR / 2, n_fft // 2 + 1)
    up = (freqs[None] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    down = (edges[2:, None] - freqs[None]) / (edges[2:] - edges[1:-1])[:, None]
    return np.clip(np.minimum(up, down), 0, None)


def griffin_lim(wav: np.ndarray, rng: np.random.Generator, iters: int = 16) -> np.ndarray:
    """Phase reconstruction of 16 kHz ``wav [samples]`` from its STFT magnitude (Griffin-Lim with
    momentum), half of the time from an 80-band mel spectrogram inverted by least squares, as a
    mel-spectrogram TTS with a Griffin-Lim vocoder would produce."""
    n_fft = int(rng.choice([512, 1024]))
    hop = n_fft // 4
    win = torch.hann_window(n_fft)
    x = torch.from_numpy(wav.astype(np.float32))
    mag = torch.stft(x, n_fft, hop, n_fft, win, return_complex=True).abs()
    if rng.random() < 0.5:
        fb = _mel_filters(n_fft, 80)
        mag = torch.from_numpy(np.clip(np.linalg.pinv(fb) @ (fb @ mag.numpy()), 0, None).astype(np.float32))
    angles = torch.exp(2j * np.pi * torch.from_numpy(rng.random(mag.shape).astype(np.float32)))
    prev = torch.zeros_like(angles)
    for _ in range(iters):
        y = torch.istft(mag * angles, n_fft, hop, n_fft, win, length=x.numel())
        rebuilt = torch.stft(y, n_fft, hop, n_fft, win, return_complex=True)
        angles = rebuilt - 0.99 * prev
        prev = rebuilt
        angles = angles / (angles.abs() + 1e-8)
    y = torch.istft(mag * angles, n_fft, hop, n_fft, win, length=x.numel()).numpy()
    return _rms_matched(y, wav).astype(np.float32)


def _praat_prosody(wav: np.ndarray, rng: np.random.Generator):
    """A Praat Manipulation (pitch-synchronous overlap-add) of 16 kHz ``wav [samples]`` with rule-like
    prosody: the pitch contour stylised to straight lines (1-4 semitone resolution) and scaled by
    0.85-1.15, the timing stretched by 0.85-1.2."""
    import parselmouth
    from parselmouth.praat import call

    snd = parselmouth.Sound(wav.astype(np.float64), sampling_frequency=SR)
    manip = call(snd, "To Manipulation", 0.01, 75, 600)
    pitch = call(manip, "Extract pitch tier")
    call(pitch, "Stylize...", float(rng.uniform(1.0, 4.0)), "Semitones")
    call(pitch, "Multiply frequencies", snd.xmin, snd.xmax, float(rng.uniform(0.85, 1.15)))
    call([pitch, manip], "Replace pitch tier")
    timing = call(manip, "Extract duration tier")
    call(timing, "Add point", snd.xmin, float(rng.uniform(0.85, 1.2)))
    call([timing, manip], "Replace duration tier")
    return manip


def lpc(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Linear-prediction resynthesis of 16 kHz ``wav [samples]`` (Praat, Burg, order 16-20, 25 ms
    windows every 5 ms): the filter driven, half of the time, by a pulse train at the stylised
    pitch of :func:`_praat_prosody` plus noise where unvoiced, otherwise by the clip's own
    residual re-timed by overlap-add (residual-excited LP, as classic diphone voices)."""
    import parselmouth
    from parselmouth.praat import call

    snd = parselmouth.Sound(wav.astype(np.float64), sampling_frequency=SR)
    order = int(rng.integers(16, 21))
    if rng.random() < 0.5:
        source_wav = call([snd, call(snd, "To LPC (burg)", order, 0.025, 0.005, 50.0)], "Filter (inverse)").values[0]
        manip = _praat_prosody(source_wav, rng)
        source = call(manip, "Get resynthesis (overlap-add)")
    else:
        manip = _praat_prosody(wav, rng)
        points = call(call(manip, "Extract pitch tier"), "To PointProcess")
        pulses = call(points, "To Sound (pulse train)", SR, 1.0, 0.05, 2000).values[0]
        f0 = snd.to_pitch(0.01, 75, 600)
        voiced = np.interp(np.arange(pulses.size) / SR, f0.xs(), (f0.selected_array["frequency"] > 0).astype(float))
        noise = rng.standard_normal(pulses.size) * float(np.sqrt(np.mean(pulses ** 2)) + 1e-4) * 0.5
        source = parselmouth.Sound(pulses + noise * (voiced < 0.5), sampling_frequency=SR)
    # the filter of the clip's own timing cannot follow a re-timed source: re-time the clip the same way first
    target = call(manip, "Get resynthesis (overlap-add)")
    filt = call(target, "To LPC (burg)", order, 0.025, 0.005, 50.0)
    y = _rms_matched(np.nan_to_num(call([source, filt], "Filter", "no").values[0]), wav)
    return (y * min(1.0, 0.99 / (np.abs(y).max() + 1e-12))).astype(np.float32)   # peak below full scale


VOCODERS = {"pulsenoise": pulse_noise_vocoder, "griffinlim": griffin_lim, "lpc": lpc}
VOCODER_SHARE = {"pulsenoise": 1.0, "griffinlim": 0.5, "lpc": 1.0}   # Griffin-Lim is the slower one: half as many clips


def vocoder_items(kind: str, real: list[Item], per_split: dict[str, int], cache: Path, seed: int) -> list[Item]:
    """``kind`` ("pulsenoise" or "griffinlim") applied to a random subset of the real clips (cached)."""
    from valle2.audio import load_audio

    rng = random.Random(seed)
    items = []
    for split, n in per_split.items():
        pool = [it for it in real if it.split == split]
        chosen = rng.sample(pool, min(n, len(pool)))[: round(n * VOCODER_SHARE[kind])]
        for it in tqdm(chosen, desc=f"{kind} {split}", unit="clip"):
            path = cache / kind / f"{it.id}.flac"
            if not path.is_file():
                wav, _ = load_audio(it.path, sr=SR)
                _save(path, VOCODERS[kind](wav, np.random.default_rng(int(hashlib.sha256(it.id.encode()).hexdigest()[:8], 16))))
            items.append(Item(f"{kind}_{it.id}", str(path), 1, kind, it.source, it.speaker, split))
    return items


def engine_items(engine: str, voices, texts_by_split: dict[str, list[str]], per_voice: int, cache: Path, seed: int) -> list[Item]:
    """Each voice reads ``per_voice`` texts of each split (different texts per voice; cached)."""
    from valle2.data.synthetic import synthesize_corpus

    rng = random.Random(seed)
    items = []
    for split, texts in texts_by_split.items():
        for voice in tqdm(voices, desc=f"{engine} {split}", unit="voice"):
            chosen = rng.sample(texts, min(per_voice, len(texts)))
            cuts = synthesize_corpus(chosen, cache / engine / split / voice.speaker, [voice])
            for cut in cuts:
                items.append(Item(f"{engine}_{split}_{cut.id}", cut.recording.sources[0].source, 1, engine, "",
                                  voice.speaker, split))
    return items


def _file_tag(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def load_valle2_bundle(path: Path, prepared: Path | None = None):
    """A model file (``save_model``) or, while the demo model trains, a trainer checkpoint
    (``run.out_dir/last.pt`` or ``checkpoints/step-*.pt``) with the prepared data it trains on
    (tokenizer, codec, frames per token; default: ``<run>/../prepared/train``)."""
    from valle2.checkpoint import ModelBundle, load_model_bundle
    from valle2.code0 import Code0
    from valle2.data import load_prepared
    from valle2.model import ARModel, ModelDims, NARModel
    from valle2.train import frames_per_token

    state = torch.load(path, map_location="cpu", weights_only=False)
    if "trainer" not in state:
        return load_model_bundle(path)
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    prepared = prepared or run_dir.parent / "prepared" / "train"
    train = load_prepared(prepared)
    dims = ModelDims(n_text_vocab=train.tokenizer.vocab_size, n_codebooks=train.codec["n_codebooks"],
                     codebook_size=train.codec["codebook_size"], **state["config"]["model"])
    ar, nar = ARModel(dims), NARModel(dims)
    ar.load_state_dict(state["trainer"]["ar"])
    nar.load_state_dict(state["trainer"]["nar"])
    code0 = None
    if dims.nar_code0:
        code0 = Code0(dims)
        code0.load_state_dict(state["trainer"]["code0"])
        code0.eval()
    return ModelBundle(dims, ar.eval(), nar.eval(), train.tokenizer, train.codec, frames_per_token(train.utterances),
                       {"steps": state["trainer"]["step"], "from_checkpoint": str(path)}, code0,
                       "ar" if code0 is None else code0.source)


def resolve_model(model: str | Path, cache: Path) -> Path:
    """A model file of the valle2 generator: a path, or :data:`TINY` (``valle2 recipe tiny``'s model,
    trained into ``cache/tiny/model.pt`` the first time: about 2 minutes)."""
    if str(model) != TINY:
        return Path(model)
    path = cache / "tiny" / "model.pt"
    if not path.is_file():
        from valle2.recipe import train_tiny

        print(f"training the tiny model into {path} (valle2 recipe tiny)", file=sys.stderr)
        train_tiny(path)
    return path


def valle2_items(model_path: Path, data: Path, heldout: dict, n_train: int, n_test: int, cache: Path, seed: int,
                 prepared: Path | None = None, minutes: float | None = None, model_name: str = "") -> list[Item]:
    """Unwatermarked valle2 outputs: the codes :meth:`VallE2.generate_codes` makes with the default
    decoding options (what ``valle2 synthesize`` decodes), decoded by each of :func:`decoders` and
    not passed through ``gate.finalize``, so not watermarked.  The prompts pass the consent gate of
    a deployment in ``cache/deployment``, where the LibriSpeech files they come from are attested
    as a research corpus (CC BY 4.0).

    Prompts: 3 s (0.5-3.5 s) of one LibriSpeech clip per speaker (up to ``n`` speakers of the
    split), transcribed by pocketsphinx; texts: ARCTIC sentences (held-out ones for the test split),
    4 (train) or 2 (test) per prompt, decoded as one batch.  Cached per model file and codec decoder;
    with ``minutes``, generation stops after that long and the outputs made so far are used.  Item ids
    are ``valle2_<model_name>_...``."""
    from valle2.audio import load_audio
    from valle2.codec import load_codec
    from valle2.decoding import DecodingOptions
    from valle2.evaluation.safeguards import open_research_gate
    from valle2.metrics import transcribe
    from valle2.synthesis import VallE2

    bundle = load_valle2_bundle(model_path, prepared)
    print(f"valle2 generator: {model_path} (step {bundle.meta.get('steps')})")
    model_codec = load_codec(bundle.codec["name"])
    out_dirs = [(tag, cache / "valle2" / f"{_file_tag(model_path)}-{codec.decoder_fingerprint()}", codec)
                for tag, codec in decoders(model_codec)]
    out_dir = out_dirs[0][1]
    held_sent, held_spk = set(heldout["sentences"]), set(heldout["speakers"])
    arctic = _rows(data / "transcribed.tsv")
    texts = {"test": sorted({r["text"] for r in arctic if r["id"].rsplit("_", 1)[1] in held_sent}),
             "train": sorted({r["text"] for r in arctic if r["id"].rsplit("_", 1)[1] not in held_sent})}
    libri = _rows(data / "untranscribed.tsv")
    rng = random.Random(seed)
    plans = {"train": [], "test": []}   # split -> [(prompt row, [(text, file name, item id)])]
    for split, n in (("train", n_train), ("test", n_test)):
        rows = [r for r in libri if (r["speaker"] in held_spk) == (split == "test") and r["speaker"] not in KEEP_OUT_SPEAKERS]
        rng.shuffle(rows)
        n_prompts = min(len(rows), math.ceil(n / (4 if split == "train" else 2)))
        for i in range(n_prompts):
            k = n // n_prompts + (i < n % n_prompts)
            row = rows[i]
            plans[split].append((row, [(t, f"{split}/{row['id']}_{j:02d}.flac", f"{split}_{row['id']}_{j:02d}")
                                       for j, t in enumerate(rng.sample(texts[split], k))]))
    # test and train prompts alternate, so that a time-limited run has some of each
    plan = [(split, job) for pair in itertools.zip_longest(plans["test"], plans["train"])
            for split, job in zip(("test", "train"), pair) if job]
    done = lambda name: all((d / name).is_file() or (d / name).with_suffix(".skip").is_file() for _, d, _ in out_dirs)  # noqa: E731
    transcripts_path = out_dir / "prompt_transcripts.json"
    transcripts = json.loads(transcripts_path.read_text()) if transcripts_path.is_file() else {}
    options = DecodingOptions(seed=seed)
    model = None   # opened at the first prompt with outputs to make: a complete cache needs no gate
    deadline = time.time() + 60 * minutes if minutes is not None else math.inf
    for split, (row, jobs) in tqdm(plan, desc="valle2 outputs (unwatermarked)", unit="prompt"):
        todo = [job for job in jobs if not done(job[1])]
        if not todo:
            continue
        if time.time() > deadline:
            print(f"valle2 generation stopped after {minutes} min", file=sys.stderr)
            break
        wav, _ = load_audio(data / row["path"], sr=SR)
        prompt = wav[int(0.5 * SR): int(3.5 * SR)]
        if row["id"] not in transcripts:
            transcripts[row["id"]] = transcribe(prompt, SR) or "hello"
            transcripts_path.parent.mkdir(parents=True, exist_ok=True)
            transcripts_path.write_text(json.dumps(transcripts, indent=1))
        if model is None:
            files = [data / r["path"] for _, (r, _) in plan]
            gate = open_research_gate(cache / "deployment", files, "librispeech", "CC BY 4.0 (LibriSpeech, openslr.org/12)")
            model = VallE2(bundle, model_codec, gate)
        gen = model.generate_codes([t for t, _, _ in todo], prompt, SR, transcripts[row["id"]],
                                   corpus_file=data / row["path"], options=options)
        for (_, name, _), samples in zip(todo, gen.codes):
            for _, d, codec in out_dirs:
                out, path = codec.decode(samples[0]).numpy(), d / name
                if out.size < 0.5 * SR or float(np.sqrt(np.mean(out ** 2))) < 1e-3:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.with_suffix(".skip").write_text("nothing audible came out\n")
                else:
                    _save(path, out)
    return [Item(f"valle2_{model_name}_{tag}{item_id}", str(d / file), 1, "valle2", "", row["speaker"], split)
            for tag, d, _ in out_dirs for split, (row, jobs) in plan for _, file, item_id in jobs if (d / file).is_file()]


@dataclass
class DataOptions:
    """How much of each generator :func:`build` makes (the defaults are the shipped detector's)."""

    arctic_per_speaker: int = 300      # ARCTIC training sentences per speaker
    codec_per_source: int = 40         # real clips per source and split re-synthesised by the offline codec
    espeak_per_voice: int = 30         # texts per espeak-ng voice and split
    vocoder_train: int = 200           # real training clips re-vocoded by each classic vocoder
    vocoder_test: int = 60
    flite_per_voice: int = 30
    festival_per_voice: int = 100      # texts per festival voice and split
    valle2_train: int = 120            # outputs of the first valle2 model prompted by LibriSpeech training speakers
    valle2_test: int = 100             # ... by the 50 held-out speakers
    other_model_train: int = 60        # ... of each further model (the tiny model)
    other_model_test: int = 40
    valle2_minutes: float | None = None
    seed: int = 0


def build(data: Path, cache: Path, models: tuple[str | Path, ...] = DEFAULT_MODELS, opts: DataOptions = DataOptions(),
          prepared: Path | None = None) -> list[Item]:
    """Every clip of the detector's data set, generated files cached; writes ``cache/manifest.tsv``."""
    from valle2.audio import atomic_write_bytes
    from valle2.data.synthetic import ESPEAK_VOICES, festival_voices, flite_voices
    from valle2.recipe import heldout_split

    data, cache = Path(data).resolve(), Path(cache).resolve()   # the manifest's paths work from anywhere
    if not (data / "transcribed.tsv").is_file() or not (data / "untranscribed.tsv").is_file():
        raise SystemExit(f"no shared speech data at '{data}' (transcribed.tsv, untranscribed.tsv): pass --data ../shared/data")
    heldout = heldout_split(data, 60, 50, 0)
    real = real_items(data, heldout, opts.arctic_per_speaker, opts.seed)
    rng = random.Random(opts.seed)
    for_codec = []
    for source in REAL_SOURCES:
        for split in ("train", "test"):
            pool = [it for it in real if it.source == source and it.split == split]
            for_codec += rng.sample(pool, min(len(pool), opts.codec_per_source))
    items = list(real) + codec_items(for_codec, cache)
    arctic = _rows(data / "transcribed.tsv")
    held = set(heldout["sentences"])
    texts = {"train": sorted({r["text"] for r in arctic if r["id"].rsplit("_", 1)[1] not in held}),
             "test": sorted({r["text"] for r in arctic if r["id"].rsplit("_", 1)[1] in held})}
    items += engine_items("espeak", ESPEAK_VOICES, texts, opts.espeak_per_voice, cache, opts.seed)
    for kind in VOCODERS:
        splits = {"test": opts.vocoder_test} if kind in UNSEEN_GENERATORS else {"train": opts.vocoder_train, "test": opts.vocoder_test}
        items += vocoder_items(kind, real, splits, cache, opts.seed)
    items += engine_items("flite", flite_voices(), {"test": texts["test"]}, opts.flite_per_voice, cache, opts.seed)
    items += engine_items("festival", festival_voices(), texts, opts.festival_per_voice, cache, opts.seed)
    for i, model in enumerate(models):
        path = resolve_model(model, cache)
        if not path.is_file():
            raise SystemExit(f"no valle2 model at {path}: pass --model with a model file, or '{TINY}'")
        n_train, n_test = (opts.valle2_train, opts.valle2_test) if i == 0 else (opts.other_model_train, opts.other_model_test)
        items += valle2_items(path, data, heldout, n_train, n_test, cache, opts.seed, prepared if i == 0 else None,
                              minutes=opts.valle2_minutes, model_name=TINY if str(model) == TINY else path.stem)
    lines = ["\t".join(Item.__dataclass_fields__)] + ["\t".join(str(v) for v in asdict(it).values()) for it in items]
    atomic_write_bytes(cache / "manifest.tsv", ("\n".join(lines) + "\n").encode())
    return items


def read_manifest(cache: Path) -> list[Item]:
    return [Item(**{**r, "label": int(r["label"])}) for r in _rows(Path(cache) / "manifest.tsv")]


def summary(items: list[Item]) -> dict[str, int]:
    """Clips per ``generator/source/split``."""
    out: dict[str, int] = {}
    for it in items:
        key = f"{it.generator}/{it.source or '-'}/{it.split}"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared speech data (its README describes it)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where generated clips and manifest.tsv go")
    p.add_argument("--model", action="append", default=None,
                   help=f"valle2 model whose outputs join the 'valle2' generator, a file or '{TINY}' (repeatable; "
                        f"default: the shipped demo model and {TINY})")
    p.add_argument("--prepared", type=Path, default=None, help="prepared data of the first --model when it is a trainer checkpoint")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    for f in fields(DataOptions):
        p.add_argument("--" + f.name.replace("_", "-"), type=float if "minutes" in f.name else int, default=f.default,
                       help=f"(default {f.default})")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    opts = DataOptions(**{f.name: getattr(args, f.name) for f in fields(DataOptions)})
    items = build(args.data, args.cache, tuple(args.model or DEFAULT_MODELS), opts, args.prepared)
    print("clips:", json.dumps(summary(items), indent=1))
    return 0


if __name__ == "__main__":
    run_main(main)
