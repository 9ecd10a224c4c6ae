"""Test sets built the paper's way, and the prompt each test utterance is synthesized from.

Sources: a LibriSpeech-format folder (``SPK/CHAPTER/SPK-CHAPTER-NNNN.flac`` beside
``SPK-CHAPTER.trans.txt``), a folder with the project's ``transcribed.tsv``, or a lhotse CutSet.
The paper's LibriSpeech test-clean set keeps the utterances of 4 to 10 seconds.

Settings (``SETTINGS``):

- ``prefix3`` -- "3 s prefix as prompt": the prompt is the utterance's own first 3 s and the
  model continues it with the whole transcript (continuation mode); the output is scored with
  the prompt included.
- ``reference`` -- "reference utterance as prompt": utterance i is synthesized from utterance
  i-1 of the same speaker (the first from the last), in cross mode with the prompt's transcript.
- ``prompt3`` / ``prompt5`` / ``prompt10`` -- VCTK-style: the prompt is the first N s of that
  same other utterance, in cross mode.  Cross mode needs the transcript of exactly the prompt
  audio, taken from (1) the whole transcript when the other utterance is at most N s long, else
  (2) word alignments in the cut (the crop ends at the last word that ends by N s), else (3) the
  ASR transcript of the crop (approximate; each record says which source it used).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import load_audio
from ..data.manifests import cut_speaker, cut_text
from ..errors import DataError

SETTINGS = ("prefix3", "reference", "prompt3", "prompt5", "prompt10")
CROP_SECONDS = {"prompt3": 3.0, "prompt5": 5.0, "prompt10": 10.0}
AUDIO_SUFFIXES = (".flac", ".wav")


@dataclass(frozen=True)
class EvalUtterance:
    """One utterance: ``duration`` seconds of ``path`` from ``start``; ``words`` are
    ``(word, start, end)`` in seconds from the utterance start when the source aligns words."""

    id: str
    speaker: str
    text: str | None
    path: Path
    duration: float
    start: float = 0.0
    words: tuple[tuple[str, float, float], ...] | None = None

    def load(self, sr: int | None = None) -> tuple[np.ndarray, int]:
        """The utterance's audio: mono float32 ``[samples]`` and its rate."""
        wav, rate = load_audio(self.path, sr=sr)
        a = int(round(self.start * rate))
        return wav[a: a + int(round(self.duration * rate))], rate


@dataclass(frozen=True)
class Trial:
    """What one test synthesis is: speak ``target.text`` in the voice of ``prompt`` (cropped to
    ``prompt_seconds`` from its start, or whole when None) in ``mode``."""

    setting: str
    target: EvalUtterance
    prompt: EvalUtterance
    prompt_seconds: float | None
    mode: str

    @property
    def id(self) -> str:
        return self.target.id


# ------------------------------------------------------------------------------ reading
def read_librispeech(root: str | Path) -> list[EvalUtterance]:
    """Utterances of a LibriSpeech-format folder: every ``*.trans.txt`` line ``ID TEXT`` names
    ``ID.flac`` (or ``.wav``) beside it; the speaker is the id's first dash-separated field."""
    root = Path(root)
    items = []
    for trans in sorted(root.rglob("*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            uid, _, text = line.strip().partition(" ")
            if not uid:
                continue
            audio = next((trans.parent / f"{uid}{s}" for s in AUDIO_SUFFIXES if (trans.parent / f"{uid}{s}").is_file()), None)
            if audio is None:
                raise DataError(f"'{trans}' lists {uid}, but there is no {uid}.flac or {uid}.wav beside it")
            items.append(EvalUtterance(uid, uid.split("-")[0], text.strip() or None, audio, sf.info(str(audio)).duration))
    return items


def _word_alignment(cut) -> tuple[tuple[str, float, float], ...] | None:
    sup = cut.supervisions[0] if cut.supervisions else None
    words = (sup.alignment or {}).get("word") if sup is not None else None
    if not words:
        return None
    return tuple((w.symbol, w.start - cut.start, w.start - cut.start + w.duration) for w in words)


def read_cuts(cuts) -> list[EvalUtterance]:
    """Utterances of a lhotse CutSet (or a path to one): one per cut whose recording is one file."""
    from lhotse import CutSet

    if not isinstance(cuts, CutSet):
        cuts = CutSet.from_file(cuts)
    items = []
    for cut in cuts:
        sources = cut.recording.sources if cut.has_recording else []
        if len(sources) != 1 or sources[0].type != "file":
            raise DataError(f"cut {cut.id}: evaluation needs a recording stored as one audio file")
        items.append(EvalUtterance(cut.id, cut_speaker(cut) or "", cut_text(cut), Path(sources[0].source),
                                   float(cut.duration), float(cut.start), _word_alignment(cut)))
    return items


def load_test_utterances(data: str | Path | None = None, cuts: str | Path | None = None) -> list[EvalUtterance]:
    """Utterances from ``cuts`` (a CutSet file) or ``data`` (a folder with ``transcribed.tsv`` or
    in LibriSpeech format), sorted by speaker then id."""
    if (data is None) == (cuts is None):
        raise DataError("give exactly one of a data folder and a cuts file")
    if cuts is not None:
        items = read_cuts(cuts)
    else:
        data = Path(data)
        if not data.is_dir():
            raise DataError(f"data folder '{data}' does not exist")
        if (data / "transcribed.tsv").is_file():
            from ..data.manifests import manifests_from_tsv

            items = read_cuts(manifests_from_tsv(data))
        else:
            items = read_librispeech(data)
    if not items:
        raise DataError(f"no utterances found in '{cuts or data}'")
    return sorted(items, key=lambda u: (u.speaker, u.id))


def select_test_set(items: list[EvalUtterance], min_seconds: float = 4.0, max_seconds: float = 10.0) -> list[EvalUtterance]:
    """The paper's rule: transcribed utterances of ``min_seconds`` to ``max_seconds`` (inclusive)."""
    return [u for u in items if u.text and u.text.strip() and min_seconds <= u.duration <= max_seconds]


# ------------------------------------------------------------------------------- trials
def previous_of_speaker(items: list[EvalUtterance]) -> dict[str, EvalUtterance]:
    """For each utterance id, the speaker's previous utterance in ``items`` order (the first gets
    the last).  Speakers with a single utterance get none."""
    by_speaker: dict[str, list[EvalUtterance]] = defaultdict(list)
    for u in items:
        by_speaker[u.speaker].append(u)
    return {u.id: us[i - 1] for us in by_speaker.values() if len(us) > 1 for i, u in enumerate(us)}


def build_trials(items: list[EvalUtterance], setting: str, prefix_seconds: float = 3.0) -> list[Trial]:
    """One trial per test utterance for ``setting`` (see the module docstring).  Utterances whose
    speaker has no other utterance are left out of the settings that need one."""
    if setting not in SETTINGS:
        raise DataError(f"unknown setting '{setting}': choose one of {', '.join(SETTINGS)}")
    if setting == "prefix3":
        return [Trial(setting, u, u, prefix_seconds, "continuation") for u in items]
    previous = previous_of_speaker(items)
    crop = CROP_SECONDS.get(setting)
    return [Trial(setting, u, previous[u.id], crop, "cross") for u in items if u.id in previous]


def prompt_audio(trial: Trial) -> tuple[np.ndarray, int, str | None, str]:
    """The trial's prompt ``(wav [samples], sr, transcript or None, transcript source)``.

    The source is ``"none"`` (continuation: not needed), ``"transcript"`` (the whole prompt
    utterance), ``"alignment"`` (words of the crop) or ``"asr"`` (None here: the caller must
    transcribe the crop)."""
    wav, sr = trial.prompt.load()
    if trial.mode == "continuation":
        return wav[: int(round(trial.prompt_seconds * sr))], sr, None, "none"
    if trial.prompt_seconds is None or trial.prompt.duration <= trial.prompt_seconds:
        return wav, sr, trial.prompt.text, "transcript"
    words = [w for w in trial.prompt.words or () if w[2] <= trial.prompt_seconds]
    if words:
        return wav[: int(round(words[-1][2] * sr))], sr, " ".join(w[0] for w in words), "alignment"
    return wav[: int(round(trial.prompt_seconds * sr))], sr, None, "asr"
