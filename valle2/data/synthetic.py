"""Extra speakers from formant, diphone and HMM synthesisers (espeak-ng variants, flite and festival voices).

These voices are robotic, so they widen the speaker set for codec, prompt and detector work and
for AR training at tiny scale; they are no substitute for real speech.  The binaries come from
Debian (``scripts/install_synthetic_voices.sh``); when one is missing its voices are skipped with
a logged message, and with none available :func:`synthesize_corpus` returns an empty CutSet.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lhotse import CutSet, Recording, SupervisionSegment
from tqdm.auto import tqdm

from ..audio import load_audio, save_audio
from ..errors import AudioError, ConsentError, DataError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
BINARIES = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}
"""The program each engine runs (festival's ``text2wave`` writes a wav file)."""
ENGINES = tuple(BINARIES)
FESTIVAL_VOICE_DIRS = (Path("/usr/share/festival/voices/english"), Path("/usr/share/festival/voices/us"))
"""Where Debian's festvox packages put festival's English voices (one folder per voice)."""
LIMITED_DOMAIN_FLITE = ("awb_time",)
"""flite voices that only speak a narrow domain (the time of day), never used."""


@dataclass(frozen=True)
class SyntheticVoice:
    """One synthetic speaker: an engine, its voice name, and for espeak-ng a pitch (0-99) and
    speed (words per minute)."""

    engine: str
    name: str
    pitch: int | None = None
    speed: int | None = None

    @property
    def speaker(self) -> str:
        """Speaker label, unique per voice and setting, e.g. ``espeak-en-us+m3-p40-s150``."""
        label = f"{self.engine.split('-')[0]}-{self.name}"
        if self.pitch is not None:
            label += f"-p{self.pitch}"
        if self.speed is not None:
            label += f"-s{self.speed}"
        return label

    def command(self, text: str, wav_path: Path) -> tuple[list[str], str | None]:
        """The command line that writes ``text`` to ``wav_path``, and what to send on stdin."""
        if self.engine == "espeak-ng":
            cmd = ["espeak-ng", "-v", self.name, "-w", str(wav_path), "--stdin"]
            if self.pitch is not None:
                cmd += ["-p", str(self.pitch)]
            if self.speed is not None:
                cmd += ["-s", str(self.speed)]
            return cmd, text
        if self.engine == "flite":
            return ["flite", "-voice", self.name, "-t", text, "-o", str(wav_path)], None
        if self.engine == "festival":
            return ["text2wave", "-eval", f"(voice_{self.name})", "-o", str(wav_path)], text
        raise DataError(f"unknown synthesis engine '{self.engine}': choose one of {', '.join(ENGINES)}")


ESPEAK_VOICES = tuple(
    SyntheticVoice("espeak-ng", name, pitch, speed)
    for name in ("en-us+m3", "en-us+f2", "en+m1", "en+f3", "en-gb+m7", "en-us+f4")
    for pitch, speed in ((40, 150), (65, 175))
)
"""Default espeak-ng speakers: six voice variants, each at a lower/slower and a higher/faster setting."""


def flite_voices() -> list[SyntheticVoice]:
    """The voices ``flite -lv`` lists (limited-domain ones left out); empty when flite is missing."""
    if shutil.which("flite") is None:
        return []
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=30).stdout
    names = out.split(":", 1)[-1].split()
    return [SyntheticVoice("flite", n) for n in names if n not in LIMITED_DOMAIN_FLITE]


def festival_voices() -> list[SyntheticVoice]:
    """festival's installed English voices (e.g. ``ked_diphone``, ``cmu_us_slt_arctic_hts``, from the
    festvox packages); empty when festival's ``text2wave`` is missing."""
    if shutil.which(BINARIES["festival"]) is None:
        return []
    names = sorted(d.name for root in FESTIVAL_VOICE_DIRS if root.is_dir() for d in root.iterdir() if d.is_dir())
    return [SyntheticVoice("festival", n) for n in names]


def default_voices() -> list[SyntheticVoice]:
    """:data:`ESPEAK_VOICES` plus every installed flite and festival voice."""
    return list(ESPEAK_VOICES) + flite_voices() + festival_voices()


def render(voice: SyntheticVoice, text: str, scratch: Path):
    """``text`` in ``voice``: 16 kHz mono float32 ``[samples]``; AudioError on failure."""
    raw = scratch / "raw.wav"
    raw.unlink(missing_ok=True)   # text2wave exits 0 even when it writes nothing
    cmd, stdin = voice.command(text, raw)
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not raw.is_file():
        what = f"failed (exit {proc.returncode})" if proc.returncode != 0 else f"wrote no audio for voice '{voice.name}'"
        raise AudioError(f"{voice.engine} {what}: {(proc.stderr or proc.stdout).strip()[:200]}")
    return load_audio(raw, sr=SAMPLE_RATE)[0]


def _synthesize(voice: SyntheticVoice, text: str, path: Path, scratch: Path) -> None:
    """Write ``text`` in ``voice`` to ``path`` as 16 kHz mono FLAC, atomically; AudioError on failure."""
    save_audio(path, render(voice, text, scratch), SAMPLE_RATE)


def synthesize_corpus(texts: Sequence[str], out_dir: str | Path, voices: Sequence[SyntheticVoice] | None = None) -> CutSet:
    """Every voice reads every text; returns their cuts (speaker = ``voice.speaker``).

    Audio goes to ``out_dir/<speaker>/<speaker>_<text index>.flac`` (16 kHz mono, written
    atomically; files already there are reused, so an interrupted run continues).  Voices whose
    engine is not installed are skipped with a logged message, as are single utterances the
    engine fails on; with no engine available the result is an empty CutSet.
    """
    out_dir = Path(out_dir)
    voices = default_voices() if voices is None else list(voices)
    missing = sorted({v.engine for v in voices if shutil.which(BINARIES.get(v.engine, v.engine)) is None})
    if missing:
        logger.warning("synthetic voices: %s not installed (run scripts/install_synthetic_voices.sh); "
                       "skipping its voices", ", ".join(missing))
    voices = [v for v in voices if v.engine not in missing]
    if not voices:
        logger.warning("synthetic voices: no synthesis engine available, so no synthetic speakers")
        return CutSet.from_cuts([])
    cuts = []
    with tempfile.TemporaryDirectory(prefix="valle2-synth-") as scratch:
        for voice in voices:
            for i, text in enumerate(tqdm(texts, desc=f"{voice.speaker} reading", unit="sentence", leave=False)):
                utt_id = f"{voice.speaker}_{i:05d}"
                path = out_dir / voice.speaker / f"{utt_id}.flac"
                if not path.is_file():
                    try:
                        _synthesize(voice, text, path, Path(scratch))
                    except (AudioError, subprocess.TimeoutExpired) as exc:
                        logger.warning("synthetic voices: skipping %s: %s", utt_id, exc)
                        continue
                recording = Recording.from_file(path, recording_id=utt_id)
                cut = recording.to_cut()
                cut.supervisions = [SupervisionSegment(
                    id=utt_id, recording_id=utt_id, start=0.0, duration=recording.duration, channel=0, text=text,
                    speaker=voice.speaker, language="English", custom={"synthetic": voice.engine},
                )]
                cuts.append(cut)
    return CutSet.from_cuts(cuts)


def attest_synthetic_corpus(registry, name: str, cuts: CutSet, voice: SyntheticVoice, licence: str):
    """Attest ``cuts`` (one file each, as :func:`synthesize_corpus` writes them) as research corpus
    ``name`` whose every file is ``voice``'s rendering of its transcript, after proving it: each
    transcript is rendered again and must give the file's samples exactly (the engines are
    deterministic).  ``registry``: a :class:`~valle2.safety.ConsentRegistry`.  ConsentError naming
    the first file that differs; returns the signed
    :class:`~valle2.safety.consent.CorpusAttestation` (``synthetic_voice`` set)."""
    files = []
    with tempfile.TemporaryDirectory(prefix="valle2-synth-check-") as scratch:
        for cut in tqdm(cuts, desc=f"proving {voice.speaker}'s files", unit="file", leave=False):
            path = Path(cut.recording.sources[0].source)
            again = render(voice, cut.supervisions[0].text, Path(scratch))
            wav, _ = load_audio(path, sr=SAMPLE_RATE)
            if wav.shape != again.shape or not np.allclose(wav, again, atol=1.5 / 32768):
                raise ConsentError(f"'{path}' is not {voice.engine}:{voice.name}'s rendering of its transcript "
                                   f"(rendered again, the samples differ): attest it as an ordinary research corpus")
            files.append(path)
    return registry.attest_corpus(name, files, licence, synthetic_voice=f"{voice.engine}:{voice.name}")
