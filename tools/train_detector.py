"""Build the data for valle2's synthesized-speech detector and train it; writes the shipped weights.

    nice -n 19 python tools/train_detector.py --data ../shared/data            # build (cached) + train
    nice -n 19 python tools/train_detector.py --data ../shared/data --build-only

Data (every generated file is cached under ``--cache``, default /tmp/valle2_detector, never in the repo):

- **real**: CMU ARCTIC bdl + slt (``transcribed.tsv``) and 251 LibriSpeech speakers
  (``untranscribed.tsv``, 8 s each), 16 kHz.
- **codec**: offline-codec resyntheses of those real clips (``codec.decode(codec.encode(wav))``).
- **espeak**: espeak-ng's 12 default voices (``valle2.data.synthetic.ESPEAK_VOICES``) reading ARCTIC sentences.
- **valle2**: unwatermarked outputs of a valle2 model (AR + NAR codes decoded by the offline codec,
  through ``VallE2._generate``, not the gated API that watermarks), prompted with 3 s of a
  LibriSpeech speaker (transcribed with pocketsphinx) and speaking ARCTIC sentences.
- **festival**: its English voices where installed (ked_diphone, a diphone voice, and
  cmu_us_slt_arctic_hts, an HMM voice) reading ARCTIC sentences.
- **flite**: flite's voices reading held-out ARCTIC sentences; test only: the unseen generator.

Split (speaker-disjoint): the held-out set of the demo model's recipe
(``valle2.recipe.heldout_split(data, 60, 50, seed=0)``: 50 LibriSpeech speakers and 60 ARCTIC
sentences) is the test set, for real speech and for every generator; the rest is training data.
The packaged demo clips and the test fixtures are kept out of training.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path("/tmp/valle2_detector")
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "valle2" / "assets" / "demo" / "model.pt"
TRAIN_GENERATORS = ("codec", "espeak", "festival", "valle2", "pulsenoise", "griffinlim")
UNSEEN_GENERATORS = ("flite",)   # never trained on; the first one's EER is ``eer_unseen``
PLAIN_TAG = "plain-"   # item ids of clips decoded by plain WORLD when the codec has a post-net: codec_plain-..., valle2_plain-...
# share of the synthesized half of each batch (renormalised over the generators present): valle2
# outputs weigh most, as the detector is for them and resyntheses alone do not carry over to them
FAKE_WEIGHTS = {"valle2": 0.35, "codec": 0.25, "espeak": 0.15, "festival": 0.10, "pulsenoise": 0.15, "griffinlim": 0.10}
SR = 16_000
# clips the tests score (valle2/assets/demo/clips, tests/fixtures/codec): never trained on
KEEP_OUT_SENTENCES = {"a0005", "a0008", "a0015", "a0018", "b0452", "b0455"}
KEEP_OUT_SPEAKERS = {"ls103", "ls1098"}


@dataclass
class Item:
    """One clip: ``label`` 1 = synthesized; ``generator`` real/codec/espeak/festival/valle2/flite/a vocoder."""

    id: str
    path: str
    label: int
    generator: str
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
            items += [Item(r["id"], str(data / r["path"]), 0, "real", spk, split) for r in chosen]
    for r in _rows(data / "untranscribed.tsv"):
        if r["speaker"] in KEEP_OUT_SPEAKERS and r["speaker"] not in held_spk:
            continue
        items.append(Item(r["id"], str(data / r["path"]), 0, "real", r["speaker"], "test" if r["speaker"] in held_spk else "train"))
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
    return [Item(f"codec_{tag}{it.id}", str(out_dir / f"{it.id}.flac"), 1, "codec", it.speaker, it.split)
            for tag, _, out_dir in ways for it in real]


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
    return (y * np.sqrt(np.mean(x ** 2) / (np.mean(y ** 2) + 1e-12))).astype(np.float32)


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
    return (y * np.sqrt(np.mean(wav ** 2) / (np.mean(y ** 2) + 1e-12))).astype(np.float32)


VOCODERS = {"pulsenoise": pulse_noise_vocoder, "griffinlim": griffin_lim}
VOCODER_SHARE = {"pulsenoise": 1.0, "griffinlim": 0.5}   # Griffin-Lim is the slower one: half as many clips


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
            items.append(Item(f"{kind}_{it.id}", str(path), 1, kind, it.speaker, split))
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
                items.append(Item(f"{engine}_{split}_{cut.id}", cut.recording.sources[0].source, 1, engine,
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
    return ModelBundle(dims, ar.eval(), nar.eval(), train.tokenizer, train.codec, frames_per_token(train.utterances),
                       {"steps": state["trainer"]["step"], "from_checkpoint": str(path)})


def generate_batch(model, texts: list[str], prompts: list[tuple[torch.Tensor, str]], options) -> list[torch.Tensor]:
    """Codes ``[n_codebooks, T]`` for each text, each with its own prompt ``(codes [n_codebooks, P],
    transcript)``, in one AR and one NAR batch: ``VallE2._generate`` (cross mode, no gate, no
    watermark) batched over prompts as well as texts."""
    from valle2.decoding import ar_generate, frame_bounds, nar_generate
    from valle2.synthesis import nar_codebooks

    ids, limits, floors, given_text = [], [], [], []
    for text, (codes, p_text) in zip(texts, prompts):
        t, n_target, n_prompt = model._text_ids(text, p_text, "cross")
        given_text.append(n_prompt)
        fpt = codes.shape[1] / n_prompt if n_prompt else model.bundle.frames_per_token
        ids.append(t)
        floor, limit = frame_bounds(n_target, fpt, model.codec.frame_rate, options)
        floors.append(floor)
        limits.append(limit)
    res = ar_generate(model.ar, ids, [c[0] for c, _ in prompts], limits, options, min_frames=floors,
                      prompt_text_lens=given_text)
    codes0 = [c if c.numel() else prompts[0][0].new_zeros(1) for c in res.codes]
    codes = nar_generate(model.nar, ids, [c.T for c, _ in prompts], codes0, model.codec.ordinal_codebooks,
                         nar_codebooks(model.codec, model.bundle.dims))
    return [model.codec.complete(c) for c in codes]


def valle2_items(model_path: Path, data: Path, heldout: dict, n_train: int, n_test: int, cache: Path, seed: int,
                 prepared: Path | None = None, batch_size: int = 10, minutes: float | None = None) -> list[Item]:
    """Unwatermarked valle2 outputs: ``VallE2._generate`` + ``codec.decode`` (no gate, no watermark),
    the same codes decoded by each of :func:`decoders`.

    Prompts: 3 s (0.5-3.5 s) of one LibriSpeech clip per speaker (up to ``n`` speakers of the
    split), transcribed by pocketsphinx; texts: ARCTIC sentences (held-out ones for the test split),
    spread over the prompts, decoded ``batch_size`` at a time (test and train outputs alternate).  Cached per model
    file and codec decoder; with ``minutes``, generation stops after that long and the outputs made so far are used."""
    from valle2.audio import load_audio
    from valle2.codec import load_codec
    from valle2.decoding import DecodingOptions
    from valle2.metrics import transcribe
    from valle2.synthesis import VallE2

    bundle = load_valle2_bundle(model_path, prepared)
    print(f"valle2 generator: {model_path} (step {bundle.meta.get('steps')})")
    model = VallE2(bundle, load_codec(bundle.codec["name"]), gate=None)
    out_dirs = [(tag, cache / "valle2" / f"{_file_tag(model_path)}-{codec.decoder_fingerprint()}", codec)
                for tag, codec in decoders(model.codec)]
    out_dir = out_dirs[0][1]
    held_sent, held_spk = set(heldout["sentences"]), set(heldout["speakers"])
    arctic = _rows(data / "transcribed.tsv")
    texts = {"test": sorted({r["text"] for r in arctic if r["id"].rsplit("_", 1)[1] in held_sent}),
             "train": sorted({r["text"] for r in arctic if r["id"].rsplit("_", 1)[1] not in held_sent})}
    libri = _rows(data / "untranscribed.tsv")
    rng = random.Random(seed)
    plan = []   # (split, prompt row, texts): the texts of one prompt are decoded as one batch
    for split, n in (("train", n_train), ("test", n_test)):
        rows = [r for r in libri if (r["speaker"] in held_spk) == (split == "test") and r["speaker"] not in KEEP_OUT_SPEAKERS]
        rng.shuffle(rows)
        n_prompts = min(len(rows), math.ceil(n / (4 if split == "train" else 2)))  # 4 (train) or 2 (test) texts a prompt
        for i in range(n_prompts):
            k = n // n_prompts + (i < n % n_prompts)
            plan.append((split, rows[i], rng.sample(texts[split], k)))
    transcripts_path = out_dir / "prompt_transcripts.json"
    transcripts = json.loads(transcripts_path.read_text()) if transcripts_path.is_file() else {}
    per_split: dict[str, list] = {"test": [], "train": []}   # (split, prompt row, text, file name, item id)
    for split, row, batch in plan:
        for j, text in enumerate(batch):
            per_split[split].append((split, row, text, f"{split}/{row['id']}_{j:02d}.flac", f"{split}_{row['id']}_{j:02d}"))
    # test and train outputs alternate, so that a time-limited run has some of each
    jobs = [job for pair in itertools.zip_longest(per_split["test"], per_split["train"]) for job in pair if job]
    todo = [job for job in jobs if not all((d / job[3]).is_file() or (d / job[3]).with_suffix(".skip").is_file()
                                           for _, d, _ in out_dirs)]
    options = DecodingOptions(top_p=0.8, ras=True, seed=seed)
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="valle2 outputs (unwatermarked)", unit="utt")
    deadline = time.time() + 60 * minutes if minutes is not None else math.inf
    for start in range(0, len(todo), batch_size):
        if time.time() > deadline:
            print(f"valle2 generation stopped after {minutes} min: {len(todo) - start} outputs not made", file=sys.stderr)
            break
        chunk = todo[start:start + batch_size]
        prompts = []
        for _, row, _, _, _ in chunk:
            wav, _ = load_audio(data / row["path"], sr=SR)
            prompt = wav[int(0.5 * SR): int(3.5 * SR)]
            if row["id"] not in transcripts:
                transcripts[row["id"]] = transcribe(prompt, SR) or "hello"
                transcripts_path.parent.mkdir(parents=True, exist_ok=True)
                transcripts_path.write_text(json.dumps(transcripts, indent=1))
            prompts.append((model.encode_prompt(prompt, SR), transcripts[row["id"]]))
        for (_, _, _, name, _), codes in zip(chunk, generate_batch(model, [j[2] for j in chunk], prompts, options)):
            for _, d, codec in out_dirs:
                out, path = codec.decode(codes).numpy(), d / name
                if out.size < 0.5 * SR or float(np.sqrt(np.mean(out ** 2))) < 1e-3:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.with_suffix(".skip").write_text("nothing audible came out\n")
                else:
                    _save(path, out)
        bar.update(len(chunk))
    bar.close()
    return [Item(f"valle2_{tag}{item_id}", str(d / name), 1, "valle2", row["speaker"], split)
            for tag, d, _ in out_dirs for split, row, _, name, item_id in jobs if (d / name).is_file()]


def build(args) -> list[Item]:
    """Every clip of the detector's data set, generated files cached; writes ``cache/manifest.tsv``."""
    from valle2.data.synthetic import ESPEAK_VOICES, festival_voices, flite_voices
    from valle2.recipe import heldout_split

    data, cache = Path(args.data), Path(args.cache)
    heldout = heldout_split(data, 60, 50, 0)
    real = real_items(data, heldout, args.arctic_per_speaker, args.seed)
    items = list(real) + codec_items(real, cache)
    arctic = _rows(data / "transcribed.tsv")
    held = set(heldout["sentences"])
    texts = {"train": sorted({r["text"] for r in arctic if r["id"].rsplit("_", 1)[1] not in held}),
             "test": sorted({r["text"] for r in arctic if r["id"].rsplit("_", 1)[1] in held})}
    items += engine_items("espeak", ESPEAK_VOICES, texts, args.espeak_per_voice, cache, args.seed)
    for kind in VOCODERS:
        items += vocoder_items(kind, real, {"train": args.vocoder_train, "test": args.vocoder_test}, cache, args.seed)
    items += engine_items("flite", flite_voices(), {"test": texts["test"]}, args.flite_per_voice, cache, args.seed)
    items += engine_items("festival", festival_voices(), texts, args.festival_per_voice, cache, args.seed)
    model = Path(args.model) if args.model else None
    if model is not None and model.is_file():
        items += valle2_items(model, data, heldout, args.valle2_train, args.valle2_test, cache, args.seed, args.prepared,
                              minutes=args.valle2_minutes)
    else:
        print(f"no valle2 model at {model}: the valle2 generator is left out", file=sys.stderr)
    lines = ["\t".join(Item.__dataclass_fields__)] + ["\t".join(str(v) for v in asdict(it).values()) for it in items]
    (cache / "manifest.tsv").write_text("\n".join(lines) + "\n")
    return items


def read_manifest(cache: Path) -> list[Item]:
    return [Item(**{**r, "label": int(r["label"])}) for r in _rows(Path(cache) / "manifest.tsv")]


# ------------------------------------------------------------------------------------- training
def load_clips(items: list[Item], cfg, desc: str) -> list[np.ndarray]:
    """16 kHz audio of each item, silence trimmed at the ends (as the detector does)."""
    from valle2.audio import load_audio
    from valle2.safety.detector import trim_silence

    return [trim_silence(load_audio(it.path, sr=SR)[0], cfg) for it in tqdm(items, desc=desc, unit="clip")]


class Sampler:
    """Balanced batches: half real, half synthesized (drawn by :data:`FAKE_WEIGHTS`);
    random crops of ``crop`` samples (short clips are tiled), gain and light noise on both classes."""

    def __init__(self, items: list[Item], clips: list[np.ndarray], crop: int, seed: int):
        self.crop, self.rng = crop, np.random.default_rng(seed)
        self.pools: dict[str, list[np.ndarray]] = {}
        for it, clip in zip(items, clips):
            if clip.size >= SR // 2:
                self.pools.setdefault(it.generator, []).append(clip)
        self.fake = sorted(g for g in self.pools if g != "real")

    def _crop(self, clip: np.ndarray) -> np.ndarray:
        if clip.size < self.crop:
            clip = np.tile(clip, math.ceil(self.crop / clip.size))
        start = int(self.rng.integers(0, clip.size - self.crop + 1))
        x = clip[start:start + self.crop] * float(10 ** self.rng.uniform(-1.0, 0.5))
        if self.rng.random() < 0.3:
            snr = self.rng.uniform(25, 50)
            x = x + self.rng.standard_normal(x.size).astype(np.float32) * np.sqrt(np.mean(x ** 2) / 10 ** (snr / 10))
        return x.astype(np.float32)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        half = size // 2
        wavs = [self._crop(self.pools["real"][int(self.rng.integers(len(self.pools["real"])))]) for _ in range(half)]
        weights = np.array([FAKE_WEIGHTS.get(g, 0.1) for g in self.fake])
        picks = self.rng.choice(len(self.fake), size - half, p=weights / weights.sum())
        for i in picks:
            pool = self.pools[self.fake[i]]
            wavs.append(self._crop(pool[int(self.rng.integers(len(pool)))]))
        labels = torch.tensor([0.0] * half + [1.0] * (size - half))
        return torch.from_numpy(np.stack(wavs)), labels


def train_member(args, seed: int, train_items: list[Item], clips: list[np.ndarray]):
    """One network of the ensemble, trained with ``seed`` (its initialisation and batches)."""
    from valle2.safety.detector import DetectorConfig, DetectorNet, normalize_rms

    torch.manual_seed(seed)
    cfg = DetectorConfig()
    sampler = Sampler(train_items, clips, int(cfg.window_seconds * SR), seed)
    net = DetectorNet(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    net.train()
    losses = []
    bar = tqdm(range(args.steps), desc=f"training detector (seed {seed})", unit="step")
    for step in bar:
        x, y = sampler.batch(args.batch)
        logits = net(normalize_rms(x, cfg.target_rms))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    return net.eval(), {g: len(pool) for g, pool in sampler.pools.items()}, round(float(np.mean(losses[-100:])), 5)


def train(args, items: list[Item]) -> Path:
    """Train ``args.ensemble`` networks (seeds ``args.seed``, ``args.seed + 1``, ...) and save them as one detector."""
    from valle2.safety.detector import DetectorConfig, save_detector

    train_items = [it for it in items if it.split == "train" and it.generator in ("real",) + TRAIN_GENERATORS]
    clips = load_clips(train_items, DetectorConfig(), "loading training audio")
    tick = time.time()
    seeds = list(range(args.seed, args.seed + args.ensemble))
    members, losses, counts = [], [], {}
    for seed in seeds:
        net, counts, loss = train_member(args, seed, train_items, clips)
        members.append(net)
        losses.append(loss)
    print(f"training clips per generator: {counts}")
    meta = {"trained_on": {g: int(n) for g, n in counts.items()}, "unseen_generators": list(UNSEEN_GENERATORS),
            "steps": args.steps, "batch": args.batch, "lr": args.lr, "seeds": seeds,
            "train_seconds": round(time.time() - tick, 1), "final_loss": losses,
            "split": "valle2.recipe.heldout_split(data, 60, 50, seed=0) held out"}
    path = save_detector(args.out, members, meta)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB): {json.dumps(meta)}")
    return path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--out", type=Path, default=ROOT / "valle2" / "assets" / "detector" / "detector.pt")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="valle2 model whose outputs are the 'valle2' generator")
    p.add_argument("--arctic-per-speaker", type=int, default=300, help="ARCTIC training sentences per speaker")
    p.add_argument("--espeak-per-voice", type=int, default=30, help="texts per espeak-ng voice (and per split)")
    p.add_argument("--vocoder-train", type=int, default=250, help="real training clips re-vocoded by each classic vocoder")
    p.add_argument("--vocoder-test", type=int, default=60)
    p.add_argument("--flite-per-voice", type=int, default=30)
    p.add_argument("--festival-per-voice", type=int, default=100, help="texts per festival voice (and per split)")
    p.add_argument("--valle2-train", type=int, default=120, help="valle2 outputs for training (LibriSpeech training speakers)")
    p.add_argument("--valle2-test", type=int, default=100, help="valle2 outputs for testing (the 50 held-out speakers)")
    p.add_argument("--valle2-minutes", type=float, default=None, help="stop generating valle2 outputs after this long")
    p.add_argument("--prepared", type=Path, default=None, help="prepared data of --model when it is a trainer checkpoint")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0, help="seed of the first network; the others take the next ones")
    p.add_argument("--ensemble", type=int, default=3, help="networks trained (one per seed) and averaged")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--build-only", action="store_true", help="build the data set and stop")
    p.add_argument("--reuse-manifest", action="store_true", help="train on the cached manifest without rebuilding")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    items = read_manifest(args.cache) if args.reuse_manifest else build(args)
    summary: dict = {}
    for it in items:
        summary.setdefault(f"{it.generator}/{it.split}", 0)
        summary[f"{it.generator}/{it.split}"] += 1
    print("clips:", json.dumps(summary, sort_keys=True))
    if not args.build_only:
        train(args, items)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
