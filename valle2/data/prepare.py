"""Cuts -> phoneme-BPE ids + codec codes, stored in resumable shards.

Layout of a prepared folder::

    index.json          what was prepared: codec.describe(), shard plan, counts, skipped cuts
    tokenizer.json      TextTokenizer.state_dict() the text ids were made with
    shard-00000.pt      torch.save'd {"utterances": [...], "skipped": [...]} for cuts 0..shard_size-1
    ...

Each utterance record is ``{"id", "speaker", "text", "text_ids": IntTensor[L] (int32),
"codes": Tensor[n_q, T] (int16, or int32 for codebooks larger than 32768)}``; each skipped
record is ``{"id", "reason"}``.  Cut ``i`` always goes to shard ``i // shard_size``.  A shard is
written through a temporary file and a rename, so a shard file that exists is complete: a run
that crashed is resumed by calling :func:`prepare` again, which re-encodes only the missing
shards.  ``index.json`` says ``"complete": true`` once every shard exists.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from lhotse import CutSet
from lhotse.audio.utils import AudioLoadingError
from lhotse.cut import Cut
from tqdm.auto import tqdm

from ..audio import atomic_write_bytes
from ..codec import Codec, load_codec
from ..errors import CodecError, DataError, Valle2Error
from ..text import TextTokenizer
from .manifests import cut_speaker, cut_text
from .utterance import Utterance

logger = logging.getLogger(__name__)

INDEX_VERSION = 1
INDEX, TOKENIZER = "index.json", "tokenizer.json"


@dataclass
class PrepareReport:
    """What one :func:`prepare` call did.  ``skipped`` lists ``(cut id, reason)`` over all shards."""

    out_dir: Path
    n_shards: int
    encoded_shards: list[int] = field(default_factory=list)
    reused_shards: list[int] = field(default_factory=list)
    n_utterances: int = 0
    n_frames: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.out_dir}: {self.n_utterances} utterances ({self.n_frames} codec frames) in {self.n_shards} shards "
                f"({len(self.encoded_shards)} encoded now, {len(self.reused_shards)} already done), "
                f"{len(self.skipped)} cuts skipped")


def _json_roundtrip(obj: dict) -> dict:
    return json.loads(json.dumps(obj))


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}.pt"


def _ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


class _Encoder:
    """Turns one cut into a shard record: ``("ok", record)`` or ``("skipped", {"id", "reason"})``."""

    def __init__(self, codec: Codec, tokenizer: TextTokenizer):
        self.codec, self.tokenizer = codec, tokenizer
        self.code_dtype = torch.int16 if codec.codebook_size <= 2**15 else torch.int32

    def __call__(self, cut: Cut) -> tuple[str, dict]:
        text = cut_text(cut)
        if text is None:
            return "skipped", {"id": cut.id, "reason": "no transcript (untranscribed cuts cannot train the AR model)"}
        try:
            text_ids = self.tokenizer.encode(text)
            codes = self.codec.encode(cut.load_audio(), cut.sampling_rate)
        except Valle2Error as exc:
            return "skipped", {"id": cut.id, "reason": str(exc)}
        except (AudioLoadingError, OSError, RuntimeError, ValueError) as exc:
            return "skipped", {"id": cut.id, "reason": f"unreadable audio: {exc.__class__.__name__}: {exc}"}
        return "ok", {"id": cut.id, "speaker": cut_speaker(cut) or "", "text": text,
                      "text_ids": torch.tensor(text_ids, dtype=torch.int32), "codes": codes.to(self.code_dtype)}


@contextmanager
def process_map(fn: Callable, items: list, workers: int, local: Callable | None = None, initializer: Callable | None = None,
                initargs: tuple = (), chunksize: int = 1) -> Iterator:
    """Yield the results of ``fn`` over ``items``, in order, from ``workers`` spawned processes (each
    runs ``initializer(*initargs)`` first); with one worker or at most one item, from ``local``
    (default ``fn``) in this process.  The pool is shut down on exit, its pending tasks cancelled."""
    if workers <= 1 or len(items) <= 1:
        yield map(local or fn, items)
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=initializer, initargs=initargs)
    try:
        yield pool.map(fn, items, chunksize=chunksize)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_worker_encoder: _Encoder | None = None


def _init_worker(codec_description: dict, tokenizer_state: dict) -> None:
    """Pool initializer: one thread, and the codec and tokenizer built once per worker process."""
    global _worker_encoder
    torch.set_num_threads(1)
    codec = load_codec(codec_description["name"], **codec_description["options"])
    _worker_encoder = _Encoder(codec, TextTokenizer.from_state_dict(tokenizer_state))


def _encode_in_worker(cut: Cut) -> tuple[str, dict]:
    return _worker_encoder(cut)


def _tokenizer_for(cuts: list[Cut], tokenizer: TextTokenizer | None, out_dir: Path, vocab_size: int) -> TextTokenizer:
    """The given tokenizer, the one saved by an earlier run, or one trained on the cuts' text; saved to out_dir."""
    path = out_dir / TOKENIZER
    saved = json.loads(path.read_text()) if path.is_file() else None
    if tokenizer is None and saved is not None:
        return TextTokenizer.from_state_dict(saved)
    if tokenizer is None:
        texts = [t for t in (cut_text(c) for c in cuts) if t]
        if not texts:
            raise DataError("none of the cuts has a transcript to train the tokenizer on")
        tokenizer = TextTokenizer.train(texts, vocab_size=vocab_size)
    elif saved is not None and saved != _json_roundtrip(tokenizer.state_dict()):
        raise DataError(f"'{out_dir}' was prepared with another tokenizer; use a fresh output folder")
    atomic_write_bytes(path, json.dumps(tokenizer.state_dict()).encode())
    return tokenizer


def _check_plan(out_dir: Path, plan: dict) -> None:
    """Refuse to resume into a folder prepared from other cuts, another shard size or another codec."""
    path = out_dir / INDEX
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    if _json_roundtrip(old.get("codec", {})) != _json_roundtrip(plan["codec"]):
        raise CodecError(f"'{out_dir}' was prepared with codec {old.get('codec')}, not {plan['codec']}; "
                         "use a fresh output folder")
    if old.get("shard_size") != plan["shard_size"] or old.get("shard_digests") != plan["shard_digests"]:
        raise DataError(f"'{out_dir}' was prepared from other cuts or another shard size; use a fresh output folder")


def _write_index(out_dir: Path, plan: dict, shards: list[dict] | None) -> None:
    index = dict(plan, complete=shards is not None, shards=shards or [])
    atomic_write_bytes(out_dir / INDEX, json.dumps(index, indent=1).encode())


def _save_shard(path: Path, utterances: list[dict], skipped: list[dict]) -> None:
    buf = io.BytesIO()
    torch.save({"utterances": utterances, "skipped": skipped}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_shard(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises RuntimeError, pickle errors or EOFError for a damaged file
        raise DataError(f"shard '{path}' is unreadable ({exc.__class__.__name__}); delete it and run prepare again") from exc


def prepare(
    cuts: CutSet,
    codec: Codec,
    tokenizer: TextTokenizer | None,
    out_dir: str | Path,
    num_workers: int = 2,
    shard_size: int = 500,
    vocab_size: int = 256,
    progress: bool = True,
) -> PrepareReport:
    """Tokenize text and encode audio of ``cuts`` into shards under ``out_dir``; resumable.

    ``tokenizer=None`` trains one (``vocab_size``) on the cuts' text, so pass the training split
    here and its saved tokenizer (:func:`load_tokenizer`) for the validation split.  Work is
    spread over ``num_workers`` spawned processes, each loading the codec once from
    ``codec.describe()``; ``num_workers <= 1`` encodes in this process with ``codec`` itself.
    Cuts without text, with bad audio (unreadable, silent, too short or long) or with
    unpronounceable text are skipped, logged and listed in the report and index with the reason.
    A folder prepared with another codec, tokenizer or cut list is refused.
    """
    out_dir = Path(out_dir)
    if shard_size < 1:
        raise DataError(f"shard_size must be at least 1, got {shard_size}")
    cut_list = list(cuts)
    if not cut_list:
        raise DataError("no cuts to prepare")
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = [cut_list[i:i + shard_size] for i in range(0, len(cut_list), shard_size)]
    plan = {"version": INDEX_VERSION, "codec": codec.describe(), "tokenizer": TOKENIZER, "shard_size": shard_size,
            "n_cuts": len(cut_list), "shard_digests": [_ids_digest([c.id for c in s]) for s in shards]}
    _check_plan(out_dir, plan)
    tokenizer = _tokenizer_for(cut_list, tokenizer, out_dir, vocab_size)
    _write_index(out_dir, plan, None)

    pending = [i for i in range(len(shards)) if not (out_dir / _shard_name(i)).is_file()]
    report = PrepareReport(out_dir, len(shards), encoded_shards=pending,
                           reused_shards=sorted(set(range(len(shards))) - set(pending)))
    done_cuts = sum(len(shards[i]) for i in report.reused_shards)
    bar = tqdm(total=len(cut_list), initial=done_cuts, desc=f"preparing {out_dir.name}", unit="cut", disable=not progress)
    pending_cuts = [c for i in pending for c in shards[i]]
    # A worker that dies (or whose initializer fails) breaks the executor, which raises
    # BrokenProcessPool here instead of hanging.
    try:
        with process_map(_encode_in_worker, pending_cuts, num_workers, local=_Encoder(codec, tokenizer),
                         initializer=_init_worker, initargs=(codec.describe(), tokenizer.state_dict()),
                         chunksize=4) as results:
            for i in pending:
                utterances, skipped = [], []
                for _ in shards[i]:
                    status, record = next(results)
                    (utterances if status == "ok" else skipped).append(record)
                    if status != "ok":
                        logger.warning("skipping %s: %s", record["id"], record["reason"])
                    bar.update(1)
                _save_shard(out_dir / _shard_name(i), utterances, skipped)
    except BrokenProcessPool as exc:
        raise DataError("an encoding worker died (out of memory, or the codec failed to load in it; its traceback "
                        "is above); finished shards are kept: run again to resume, num_workers=1 to debug") from exc
    finally:
        bar.close()

    summaries = []
    for i in range(len(shards)):
        shard = _load_shard(out_dir / _shard_name(i))
        n_frames = sum(int(u["codes"].shape[1]) for u in shard["utterances"])
        summaries.append({"file": _shard_name(i), "n_utterances": len(shard["utterances"]), "n_frames": n_frames,
                          "skipped": shard["skipped"]})
        report.n_utterances += len(shard["utterances"])
        report.n_frames += n_frames
        report.skipped += [(s["id"], s["reason"]) for s in shard["skipped"]]
    if report.n_utterances == 0:
        raise DataError(f"every one of the {len(cut_list)} cuts was skipped; first reason: {report.skipped[0][1]}")
    _write_index(out_dir, plan, summaries)
    logger.info(report.summary())
    return report


def _read_index(out_dir: Path) -> dict:
    path = out_dir / INDEX
    if not path.is_file():
        raise DataError(f"'{out_dir}' holds no prepared data (no {INDEX}); run `valle2 prepare` first")
    index = json.loads(path.read_text())
    if index.get("version") != INDEX_VERSION:
        raise DataError(f"'{path}' has version {index.get('version')!r}; this valle2 reads version {INDEX_VERSION}")
    if not index.get("complete"):
        raise DataError(f"preparation of '{out_dir}' did not finish; run prepare again with the same arguments to resume")
    return index


def load_tokenizer(out_dir: str | Path) -> TextTokenizer:
    """The tokenizer a prepared folder's text ids were made with."""
    index = _read_index(Path(out_dir))
    return TextTokenizer.from_state_dict(json.loads((Path(out_dir) / index["tokenizer"]).read_text()))


def _check_codec(codec: Codec, prepared_with: dict, out_dir: Path) -> None:
    if _json_roundtrip(codec.describe()) != prepared_with:
        raise CodecError(f"'{out_dir}' was prepared with codec {prepared_with}, but the codec given is "
                         f"{codec.describe()}; prepare the data again with this codec")


def load_shards(out_dir: str | Path, codec: Codec | None = None) -> list[Utterance]:
    """All prepared utterances of ``out_dir`` in cut order: ``text_ids`` LongTensor[L], ``codes``
    LongTensor[n_q, T].  When ``codec`` is given, a folder prepared with another codec (name,
    rates, codebooks or load options) is refused with :class:`CodecError`."""
    out_dir = Path(out_dir)
    index = _read_index(out_dir)
    if codec is not None:
        _check_codec(codec, index["codec"], out_dir)
    data = []
    for entry in index["shards"]:
        for u in _load_shard(out_dir / entry["file"])["utterances"]:
            data.append(Utterance(u["text_ids"].long(), u["codes"].long(), u["speaker"]))
    return data


@dataclass
class Prepared:
    """A prepared folder as the trainer uses it: its utterances, tokenizer and codec description."""

    utterances: list[Utterance]
    tokenizer: TextTokenizer
    codec: dict
    out_dir: Path

    def load_codec(self) -> Codec:
        """The codec the codes were made with, rebuilt from its description.  Raises
        :class:`CodecError` when the codec this installation builds from it is another one
        (say, its offline assets changed since preparation): its codewords and decoder would not
        match the codes."""
        codec = load_codec(self.codec["name"], **self.codec.get("options", {}))
        _check_codec(codec, self.codec, self.out_dir)
        return codec


def load_prepared(out_dir: str | Path) -> Prepared:
    """Read everything ``valle2 prepare`` wrote to ``out_dir``."""
    index = _read_index(Path(out_dir))
    return Prepared(load_shards(out_dir), load_tokenizer(out_dir), index["codec"], Path(out_dir))
