"""Corpora as lhotse manifests: the project's tsv files, lhotse recipes, and a speaker-disjoint split.

Every function here returns a :class:`lhotse.CutSet` of ``MonoCut`` s, one per utterance, each
with exactly one supervision that carries ``speaker`` and (for transcribed data) ``text``.  The
cut id is the utterance id, so ids survive from manifest to shard.
"""
from __future__ import annotations

import csv
import logging
import random
from collections.abc import Sequence
from pathlib import Path

from lhotse import CutSet, Recording, SupervisionSegment
from lhotse.cut import Cut
from lhotse.utils import fastcopy

from ..errors import DataError
from ..imports import import_quietly

logger = logging.getLogger(__name__)

RECIPES = ("libritts", "librittsr", "libriheavy", "librispeech")
"""Corpora that :func:`manifests_from_recipe` prepares."""

TRAIN_PARTS = {
    "libritts": ("train-clean-100", "train-clean-360", "train-other-500"),
    "librittsr": ("train-clean-100", "train-clean-360", "train-other-500"),
    "librispeech": ("train-clean-100", "train-clean-360", "train-other-500"),
    "libriheavy": ("small", "medium", "large"),
}
"""Parts used when none are named: training parts only, so that the dev and test speakers (e.g.
LibriSpeech test-clean, the paper's zero-shot evaluation set) never reach training by default."""

_EXTRACTED_DIR = {"libritts": "LibriTTS", "librittsr": "LibriTTS_R", "librispeech": "LibriSpeech"}


def cut_speaker(cut: Cut) -> str | None:
    """The speaker label of a cut (its first supervision's), or None when it has none."""
    return cut.supervisions[0].speaker if cut.supervisions else None


def cut_text(cut: Cut) -> str | None:
    """The transcript of a cut (its supervisions' texts joined), or None when it has none."""
    texts = [s.text for s in cut.supervisions if s.text and s.text.strip()]
    return " ".join(t.strip() for t in texts) if texts else None


def manifests_from_tsv(data_dir: str | Path, transcribed: bool = True) -> CutSet:
    """Cuts for ``transcribed.tsv`` or ``untranscribed.tsv`` in ``data_dir``.

    Columns: ``id``, ``path`` (relative to ``data_dir``), ``speaker``, ``seconds``, and ``text``
    in the transcribed file.  Untranscribed rows still get one supervision, with
    ``text=None`` and the speaker label, so they serve speaker-level uses (prompts, codec and
    detector training, splits) while :func:`valle2.data.prepare` skips them for AR training
    with the reason "no transcript".  Rows whose audio cannot be read are logged and left out.
    Recording paths in the cuts are absolute.
    """
    data_dir = Path(data_dir)
    tsv = data_dir / ("transcribed.tsv" if transcribed else "untranscribed.tsv")
    if not tsv.is_file():
        raise DataError(f"no manifest at '{tsv}'")
    needed = {"id", "path", "speaker"} | ({"text"} if transcribed else set())
    cuts, unreadable = [], 0
    import_quietly("audioread.rawread")   # lhotse's fallback reader for a bad row; its import warns
    with open(tsv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = needed - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"'{tsv}' lacks the column(s) {', '.join(sorted(missing))}")
        for row in reader:
            path = (data_dir / row["path"]).resolve()
            try:
                recording = Recording.from_file(path, recording_id=row["id"])
            except Exception as exc:  # lhotse and its audio backends raise many types for a bad file
                logger.warning("leaving out %s: cannot read '%s' (%s)", row["id"], path, exc)
                unreadable += 1
                continue
            cut = recording.to_cut()
            cut.supervisions = [SupervisionSegment(
                id=row["id"], recording_id=row["id"], start=0.0, duration=recording.duration, channel=0,
                text=row["text"] if transcribed else None, speaker=row["speaker"], language="English",
            )]
            cuts.append(cut)
    if unreadable:
        logger.warning("%s: left out %d unreadable row(s) of %d", tsv, unreadable, unreadable + len(cuts))
    if not cuts:
        raise DataError(f"'{tsv}' lists no readable audio")
    return CutSet.from_cuts(cuts)


def _corpus_root(name: str, corpus_dir: Path) -> Path:
    """The folder that holds the parts: ``corpus_dir`` itself or its extracted ``LibriTTS``-like child."""
    child = corpus_dir / _EXTRACTED_DIR.get(name, "")
    return child if name in _EXTRACTED_DIR and child.is_dir() else corpus_dir


def _download(name: str, corpus_dir: Path, parts: Sequence[str]) -> None:
    from lhotse.recipes import download_librispeech, download_libritts, download_librittsr

    if name == "libritts":
        download_libritts(corpus_dir, dataset_parts=list(parts))
    elif name == "librittsr":
        download_librittsr(corpus_dir, dataset_parts=list(parts))
    elif name == "librispeech":
        download_librispeech(corpus_dir, dataset_parts=list(parts))
    else:
        raise DataError(
            "lhotse has no Libriheavy downloader: fetch the LibriLight audio and the libriheavy_cuts_*.jsonl.gz "
            "manifests with the k2-fsa/libriheavy run.sh, then pass that folder as corpus_dir without download"
        )


def _libriheavy_manifest(corpus_dir: Path, part: str) -> Path | None:
    """Where ``libriheavy_cuts_{part}.jsonl.gz`` lies: in ``corpus_dir`` or its ``cases_and_punc/lhotse``."""
    for folder in (corpus_dir, corpus_dir / "cases_and_punc" / "lhotse"):
        if (folder / f"libriheavy_cuts_{part}.jsonl.gz").is_file():
            return folder / f"libriheavy_cuts_{part}.jsonl.gz"
    return None


def _libriheavy_cuts(corpus_dir: Path, parts: Sequence[str]) -> CutSet:
    """Libriheavy's own lhotse cuts; their audio paths (``download/librilight/...``) are relative to
    ``corpus_dir``, and the text is the book transcript with case and punctuation (``texts[0]``)."""
    cuts = []
    for part in parts:
        manifest = _libriheavy_manifest(corpus_dir, part)
        if manifest is None:
            raise DataError(f"no libriheavy_cuts_{part}.jsonl.gz in '{corpus_dir}' or its cases_and_punc/lhotse")
        for cut in CutSet.from_file(manifest).with_recording_path_prefix(str(corpus_dir)):
            cut.supervisions = [
                s if s.text else fastcopy(s, text=(s.custom or {}).get("texts", [None])[0]) for s in cut.supervisions
            ]
            cuts.append(cut)
    return CutSet.from_cuts(cuts)


def manifests_from_recipe(
    name: str,
    corpus_dir: str | Path,
    output_dir: str | Path,
    download: bool = False,
    parts: Sequence[str] | None = None,
    num_jobs: int = 1,
) -> CutSet:
    """Cuts for a public corpus through lhotse's own ``download_*`` / ``prepare_*`` recipes.

    ``name`` is one of :data:`RECIPES`.  ``corpus_dir`` holds the corpus (its parts directly, or
    the ``LibriTTS`` / ``LibriTTS_R`` / ``LibriSpeech`` folder the archives extract to);
    with ``download=True`` the archives are fetched into it first (needs internet).  ``parts``
    defaults to the training parts in :data:`TRAIN_PARTS` that are present (all of them when
    downloading).  lhotse writes its recording and supervision manifests to ``output_dir``
    (reused when there), and the combined cuts go to ``output_dir/cuts_{name}.jsonl.gz``.
    """
    if name not in RECIPES:
        raise DataError(f"unknown recipe '{name}': choose one of {', '.join(RECIPES)}")
    corpus_dir, output_dir = Path(corpus_dir), Path(output_dir)
    if download:
        _download(name, corpus_dir, parts or TRAIN_PARTS[name])
    if not corpus_dir.is_dir():
        raise DataError(f"corpus folder '{corpus_dir}' does not exist (pass download=True to fetch {name})")
    if name == "libriheavy":
        parts = list(parts or [p for p in TRAIN_PARTS[name] if _libriheavy_manifest(corpus_dir, p)])
        if not parts:
            raise DataError(f"'{corpus_dir}' holds none of libriheavy_cuts_{{{','.join(TRAIN_PARTS[name])}}}.jsonl.gz")
        cuts = _libriheavy_cuts(corpus_dir, parts)
    else:
        from lhotse.recipes import prepare_librispeech, prepare_libritts, prepare_librittsr

        root = _corpus_root(name, corpus_dir)
        parts = list(parts or [p for p in TRAIN_PARTS[name] if (root / p).is_dir()])
        if not parts:
            raise DataError(f"'{root}' holds none of the {name} training parts {', '.join(TRAIN_PARTS[name])}")
        prepare = {"libritts": prepare_libritts, "librittsr": prepare_librittsr, "librispeech": prepare_librispeech}[name]
        manifests = prepare(root, dataset_parts=parts, output_dir=output_dir, num_jobs=num_jobs)
        cuts = []
        for part in parts:
            m = manifests[part]
            by_recording = {s.recording_id: [] for s in m["supervisions"]}
            for s in m["supervisions"]:
                by_recording[s.recording_id].append(s)
            for recording in m["recordings"]:
                if recording.id in by_recording:
                    cut = recording.to_cut()
                    cut.supervisions = by_recording[recording.id]
                    cuts.append(cut)
        cuts = CutSet.from_cuts(cuts)
    if len(cuts) == 0:
        raise DataError(f"the {name} recipe found no utterances in '{corpus_dir}'")
    output_dir.mkdir(parents=True, exist_ok=True)
    cuts.to_file(output_dir / f"cuts_{name}.jsonl.gz")
    return cuts


def split_by_speaker(cuts: CutSet, valid_speakers: int | Sequence[str], seed: int = 0) -> tuple[CutSet, CutSet]:
    """Split ``cuts`` into ``(train, valid)`` with no speaker in both.

    ``valid_speakers`` is either how many speakers to hold out (drawn with ``seed`` from the
    sorted speaker list) or their labels.  Every cut needs a speaker label, and both sides must
    keep at least one speaker.
    """
    speakers: dict[str, list[Cut]] = {}
    for cut in cuts:
        speaker = cut_speaker(cut)
        if not speaker:
            raise DataError(f"cut {cut.id} has no speaker label, so it cannot be split by speaker")
        speakers.setdefault(speaker, []).append(cut)
    names = sorted(speakers)
    if isinstance(valid_speakers, int) and not isinstance(valid_speakers, bool):
        if not 1 <= valid_speakers < len(names):
            raise DataError(f"valid_speakers={valid_speakers}: need 1 to {len(names) - 1} of the {len(names)} speakers")
        held_out = set(random.Random(seed).sample(names, valid_speakers))
    else:
        held_out = set(valid_speakers)
        unknown = held_out - set(names)
        if unknown:
            raise DataError(f"validation speaker(s) {', '.join(sorted(unknown))} not in the corpus")
        if not held_out or held_out == set(names):
            raise DataError(f"validation speakers must be a non-empty, proper subset of the {len(names)} speakers")
    train = [c for n in names if n not in held_out for c in speakers[n]]
    valid = [c for n in names if n in held_out for c in speakers[n]]
    return CutSet.from_cuts(train), CutSet.from_cuts(valid)
