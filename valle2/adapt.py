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
- the prompt: the recording of ``AdaptConfig.prompt_seconds`` at most whose speaker embedding is
  nearest the mean of all of them;
- the voice-match reference: the codes of the recordings, up to ``AdaptConfig.reference_seconds``.

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
    total is refused (the 5-minute budget on 2 cores is measured up to it)."""

    prompt_seconds: float = 10.0
    reference_seconds: float = 60.0
    max_seconds: float = 600.0


@dataclass
class Recording:
    """One adaptation recording that passed the gate: its file, waveform ``[samples]`` at ``sr``,
    transcript, codes ``[n_codebooks, T]`` and speaker embedding ``[256]``."""

    file: AudioFile
    wav: np.ndarray
    sr: int
    text: str = ""
    codes: torch.Tensor | None = None
    embedding: np.ndarray | None = None


@dataclass
class AdaptResult:
    """What :func:`adapt_voice` made: the voice id, its adapter, the files skipped with why, seconds."""

    voice_id: str
    adapter: VoiceAdapter
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
    ones as (file, reason).  ``voice_id`` None: research files, matched to the first that passes."""
    gate, passed, skipped, reference = model.gate, [], [], None
    for path in files:
        name = str(path)
        try:
            clip = AudioFile.read(path)
            wav, sr = clip.load()
            if voice_id is not None:
                gate.authorize(voice_id, wav, sr)
            else:
                gate.authorize(None, wav, sr, corpus_file=clip)              # attested, and its liveness
                if reference is not None:
                    gate.authorize(None, wav, sr, corpus_file=reference)     # the same speaker as the first
                reference = reference or clip
            passed.append(Recording(clip, wav, sr))
        except (ConsentError, AudioError) as e:
            skipped.append((name, str(e)))
        if progress:
            progress(name)
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
        r.embedding = np.asarray(model.gate.embedder(r.wav, r.sr), dtype=np.float64)
        items.append((ids, r.codes[0], align(model.ar.log_emission, ids, r.codes[0])))
        kept.append(r)
        bar.update(1)
    bar.close()
    for file, why in skipped:
        log(f"skipped {file}: {why}")
    if not kept:
        raise ConsentError(f"none of the {len(files)} recordings can adapt the voice: "
                           + "; ".join(f"{f}: {w}" for f, w in skipped))
    table = fit_table(model, items)
    unit = np.stack([r.embedding / (np.linalg.norm(r.embedding) + 1e-12) for r in kept])
    score = unit @ unit.mean(0)
    short = [i for i, r in enumerate(kept) if r.wav.size / r.sr <= config.prompt_seconds] or list(range(len(kept)))
    best = kept[max(short, key=lambda i: score[i])]
    frames = int(config.reference_seconds * model.codec.frame_rate)
    reference = torch.cat([r.codes for r in kept], dim=1)[:, :frames]
    kind = "consent" if voice_id is not None else "research"
    vid = voice_id if voice_id is not None else "r_" + secrets.token_hex(8)
    label = name or (Path(kept[0].file.name).stem if kind == "research" else vid)
    adapter = VoiceAdapter(vid, kind, label, {k: v.cpu() for k, v in table.state_dict().items()},
                           Path(best.file.name).name, best.file.data, best.text, reference)
    data = adapter.to_bytes()
    model.gate.registry.store_adapter(vid, kind, label, data)
    return AdaptResult(vid, adapter, [r.file.name for r in kept], skipped, total, time.perf_counter() - start, len(data))
