"""``valle2 voice adapt``: fit a voice's adapter (:mod:`valle2.code0.adapter`) on its own recordings.

Each recording passes the consent gate first (:meth:`valle2.safety.ConsentGate.authorize`: the
liveness checks, and the speaker match against the enrolled voice; for a research voice, its
file must be in an attested corpus and its speaker must match the first file that passes); one
that fails is named and skipped, and none passing is a :class:`ConsentError`.  The recordings
that pass are transcribed (``texts``, else pocketsphinx), encoded and aligned to their text with
the aligned AR's emission table, and the adapter gets:

- the speaker's context table, fitted on those alignments as the model's own table was fitted on
  its training voices (:meth:`valle2.code0.table.ContextTable.fit`), with the token(-place) codes
  the speaker never said taken from the model's training voice nearest the speaker;
- the voice-match reference: the codes of the recordings, up to ``AdaptConfig.reference_seconds``;
- of the speaker's own table and the model's, and of the recordings (``AdaptConfig.prompt_seconds``
  at most) whose speaker embedding is nearest the mean of all of them: the table and prompt whose
  renderings of other recordings' transcripts lie nearest that mean (:func:`score_candidate`).

It is signed and stored in the registry (:meth:`valle2.safety.ConsentRegistry.store_adapter`);
revoking the voice deletes it.  ``docs/adapt.md`` has the measured effect.
"""
from __future__ import annotations

import csv
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .alignment import align
from .audio import AudioFile
from .code0.adapter import VoiceAdapter
from .code0.table import ContextTable
from .errors import AudioError, ConsentError, DataError, TextError
from .synthesis import VallE2


@dataclass
class AdaptConfig:
    """``prompt_seconds``: the longest recording that may be the voice's prompt; ``reference_seconds``:
    how much of the recordings' codes the voice match reads; ``max_seconds``: speech beyond this
    total is refused (the 5-minute budget on 2 cores is measured up to it); ``prompt_candidates``
    (recordings nearest the mean embedding) x ``tables`` ("own": the speaker's, "model": the
    model's; by default the model's alone, which measured better: docs/adapt.md) are the candidates, each scored on ``score_texts`` of the other recordings' transcripts
    (:func:`score_candidate`)."""

    prompt_seconds: float = 10.0
    reference_seconds: float = 60.0
    max_seconds: float = 600.0
    prompt_candidates: int = 4
    score_texts: int = 2
    tables: tuple[str, ...] = ("model",)


@dataclass
class Recording:
    """One adaptation recording that passed the gate: its file, waveform ``[samples]`` at ``sr``,
    speaker embedding ``[256]`` (unit norm), transcript and codes ``[n_codebooks, T]``."""

    file: AudioFile
    wav: np.ndarray
    sr: int
    embedding: np.ndarray
    text: str = ""
    codes: torch.Tensor | None = None


@dataclass
class AdaptResult:
    """What :func:`adapt_voice` made: the voice id, its adapter, which table it chose ("own",
    "model"), the files used and those skipped with why, seconds of speech, wall seconds, bytes."""

    voice_id: str
    adapter: VoiceAdapter
    table: str
    used: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    speech_seconds: float = 0.0
    seconds: float = 0.0
    adapter_bytes: int = 0


def read_texts(path) -> dict[str, str]:
    """Transcripts from a TSV of ``FILE<TAB>TEXT`` lines (FILE as given on the command line, or its
    name); DataError for a missing file or a line without both columns."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the transcripts file '{path}': {e}") from None
    texts = {}
    for n, row in enumerate(csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise DataError(f"'{path}' line {n}: expected FILE<TAB>TEXT, got {lines[n - 1]!r}")
        texts[row[0].strip()] = row[1].strip()
    return texts


def _text_for(name: str, texts: dict[str, str] | None, wav: np.ndarray, sr: int) -> str:
    if texts is not None:
        for key in (name, Path(name).name):
            if key in texts:
                return texts[key]
    from .metrics import transcribe

    return transcribe(wav, sr)


def check_recordings(model: VallE2, files: Sequence, voice_id: str | None,
                     progress: Callable | None = None) -> tuple[list[Recording], list[tuple[str, str]]]:
    """The recordings of ``files`` that pass the gate (see the module docstring) and the skipped
    ones as (file, reason).  ``voice_id`` None: research files, matched to the reference file, the
    one whose speaker embedding is nearest the others' (if it fails, the next that passes)."""
    gate, loaded, passed, skipped, reference = model.gate, [], [], [], None
    for path in files:
        try:
            clip = AudioFile.read(path)
            wav, sr = clip.load()
            e = np.asarray(gate.embedder(wav, sr), dtype=np.float64)
            loaded.append(Recording(clip, wav, sr, embedding=e / (np.linalg.norm(e) + 1e-12)))
        except AudioError as e:
            skipped.append((str(path), str(e)))
    if voice_id is None and len(loaded) > 2:
        unit = np.stack([r.embedding for r in loaded])
        first = int(np.argmax((unit @ unit.T).sum(1)))
        loaded = [loaded[first]] + loaded[:first] + loaded[first + 1:]
    for r in loaded:
        try:
            if voice_id is not None:
                gate.authorize(voice_id, r.wav, r.sr)
            else:
                gate.authorize(None, r.wav, r.sr, corpus_file=r.file)              # attested, and its liveness
                if reference is not None:
                    gate.authorize(None, r.wav, r.sr, corpus_file=reference)     # the reference file's speaker
                reference = reference or r.file
            passed.append(r)
        except (ConsentError, AudioError) as e:
            skipped.append((r.file.name, str(e)))
        if progress:
            progress(r.file.name)
    return passed, skipped


def fit_table(model: VallE2, items: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> ContextTable:
    """The speaker's one-voice context table from ``items`` of (text ids ``[L]``, codebook 0 ``[T]``,
    token index ``[T]``), its unseen token(-place) codes filled from the model's training voice
    whose drafts of the items lie nearest their codes."""
    base, vectors = model.bundle.code0.table, model.codec.code0_vectors()
    table = ContextTable(base.n_vocab)
    table.fit([("self", t, c, i) for t, c, i in items], vectors, min_voice_frames=0, max_voices=1)
    if base.n_voices:
        real = vectors.float()
        dist = [sum(float(((real[base.draft(v, t, i)] - real[c]) ** 2).sum()) for t, c, i in items)
                for v in range(base.n_voices)]
        v = int(np.argmin(dist))
        for name in ("place_codes", "token_codes"):
            mine, theirs = getattr(table, name), getattr(base, name)[v:v + 1].to(getattr(table, name).device)
            setattr(table, name, torch.where(mine < 0, theirs, mine))
    return table


def score_candidate(model: VallE2, adapter: VoiceAdapter, recordings: list[Recording], centroid: np.ndarray,
                    voice_id: str | None, n_texts: int) -> float:
    """How near the voice ``adapter`` speaks: the mean cosine, to the recordings' mean speaker
    embedding ``centroid [256]``, of its renderings of the transcripts of the ``n_texts`` longest
    recordings other than its prompt (decoded here, never finalized: nothing leaves)."""
    texts = [r.text for r in sorted(recordings, key=lambda r: -r.wav.size) if r.file.name != adapter.prompt_name]
    texts = texts[:n_texts] or [recordings[0].text]
    clip = AudioFile(adapter.prompt_name, adapter.prompt_data)
    wav, sr = clip.load()
    consent = {"voice_id": voice_id} if voice_id is not None else {"corpus_file": clip}
    gen = model.generate_codes(texts, wav, sr, adapter.prompt_text, adapter=adapter, **consent)
    sims = []
    for samples in gen.codes:
        e = np.asarray(model.gate.embedder(model.codec.decode(samples[0]).numpy(), model.sample_rate), dtype=np.float64)
        sims.append(float(e @ centroid) / (np.linalg.norm(e) + 1e-12))
    return float(np.mean(sims))


def adapt_voice(model: VallE2, files: Sequence, voice_id: str | None = None, *, name: str | None = None,
                texts: dict[str, str] | None = None, config: AdaptConfig | None = None, progress: bool = False,
                log: Callable[[str], None] = print) -> AdaptResult:
    """Adapt voice ``voice_id`` (an enrolled ``v_...``), or with None a new research voice named
    ``name`` from files of an attested research corpus, on the recordings ``files``; returns the
    stored adapter (see the module docstring).  ``log`` receives one line per skipped file."""
    config = config or AdaptConfig()
    if model.code0_source != "table":
        raise DataError(f"voice adaptation fits a context table; this model's codebook 0 comes from "
                        f"'{model.code0_source}', not 'table' (the demo model's)")
    if not config.tables or set(config.tables) - {"own", "model"}:
        raise DataError(f"AdaptConfig.tables must name 'own' and/or 'model', got {config.tables!r}")
    if not files:
        raise AudioError("voice adapt needs at least one recording of the voice")
    start = time.perf_counter()
    bar = tqdm(total=3 * len(files), desc="adapting", unit="step", disable=not progress)
    recordings, skipped = check_recordings(model, files, voice_id, progress=lambda _: bar.update(1))
    total = sum(r.wav.size / r.sr for r in recordings)
    if total > config.max_seconds:
        raise AudioError(f"the recordings hold {total:.0f} s; voice adapt takes at most {config.max_seconds:.0f} s "
                         "(10 minutes): give fewer files")
    items, kept = [], []
    for r in recordings:
        r.text = _text_for(r.file.name, texts, r.wav, r.sr)
        bar.update(1)
        try:
            ids = torch.tensor(model.tokenizer.encode(r.text)) if r.text.strip() else None
        except TextError as e:
            ids, why = None, str(e)
        else:
            why = "no words recognised in it (give its transcript with --texts)"
        if ids is None or not len(ids):
            skipped.append((r.file.name, why))
            bar.update(1)
            continue
        r.codes = model.codec.encode(r.wav, r.sr)
        items.append((ids, r.codes[0], align(model.ar.log_emission, ids, r.codes[0])))
        kept.append(r)
        bar.update(1)
    bar.close()
    for file, why in skipped:
        log(f"skipped {file}: {why}")
    if not kept:
        raise ConsentError(f"none of the {len(files)} recordings can adapt the voice: "
                           + "; ".join(f"{f}: {w}" for f, w in skipped))
    own = {k: v.cpu() for k, v in fit_table(model, items).state_dict().items()}
    base = {k: v.cpu() for k, v in model.bundle.code0.table.state_dict().items()}
    frames = int(config.reference_seconds * model.codec.frame_rate)
    reference = torch.cat([r.codes for r in kept], dim=1)[:, :frames]
    kind = "consent" if voice_id is not None else "research"
    vid = voice_id if voice_id is not None else "r_" + secrets.token_hex(8)
    label = name or (Path(kept[0].file.name).stem if kind == "research" else vid)
    unit = np.stack([r.embedding for r in kept])
    centroid = unit.mean(0) / (np.linalg.norm(unit.mean(0)) + 1e-12)
    short = [i for i, r in enumerate(kept) if r.wav.size / r.sr <= config.prompt_seconds] or list(range(len(kept)))
    prompts = sorted(short, key=lambda i: -float(unit[i] @ centroid))[: config.prompt_candidates]
    tables = {"own": own, "model": base}
    candidates = [(t, VoiceAdapter(vid, kind, label, tables[t], Path(kept[i].file.name).name, kept[i].file.data,
                                   kept[i].text, reference)) for i in prompts for t in config.tables]
    table, adapter = max(tqdm(candidates, desc="choosing the prompt", disable=not progress or len(candidates) < 2),
                         key=lambda c: score_candidate(model, c[1], kept, centroid, voice_id, config.score_texts))
    data = adapter.to_bytes()
    model.gate.registry.store_adapter(vid, kind, label, data)
    return AdaptResult(vid, adapter, table, [r.file.name for r in kept], skipped, total, time.perf_counter() - start, len(data))
