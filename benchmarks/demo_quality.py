"""Zero-shot quality of the demo model, measured here on 2 cores.

- Text: the ARCTIC sentences the demo recipe held out of training (model metadata), so no
  sentence was seen in training.
- Unseen speakers: LibriSpeech speakers held out of training; the prompt is the first 3 s of
  their clip, its transcript from the offline recogniser (no transcripts ship with them).
- Seen speakers: ARCTIC bdl and slt, prompted with one of their training utterances.
- Reference figures from real audio: the WER of the training speakers' real recordings of the
  same held-out sentences, and Resemblyzer same-speaker / different-speaker cosine means.
- Text length (``--bucket-texts`` texts a bucket; 0 leaves it out): Harvard sentences
  (``benchmarks/texts/harvard.txt``, IEEE 1969, public domain; not in the demo model's training
  text), spoken from the unseen speakers' prompts in turn.  Buckets: 1-3 words and 4-8 words (the
  first words of a sentence, ending on a content word), one sentence of 12+ words (two joined by
  ", and"), three sentences.  ``VallE2.synthesize`` speaks the three sentence by sentence in one
  call (one batch, joined by a pause); the HTTP server makes one call a sentence with the same
  prompt and streams them, and the three are also spoken that way ("3 sentences, split").
  Per bucket: WER, the share of outputs whose last reference word is recognised in its place, the
  share with recognised words after it (babble; :func:`end_check`), the longest output against its
  expected length; the real ARCTIC recordings give the recogniser's own rates.
- Other microphones (``--source-prompts`` speakers a source; 0 leaves it out): Common Voice
  (browser and phone microphones, MP3; the clip's own transcript) and VCC2016 (studio; the
  recogniser's transcript) from ``real-extra/``, the whole clip as prompt, reading the held-out
  ARCTIC sentences.  None of their speakers is in training.  They did not enrol: like the
  LibriSpeech ones they pass the consent gate as files of an attested research corpus
  (``open_research_gate``).  Per source: SIM to the prompt against the mean between different
  speakers of that source (one clip each), DNSMOS of the outputs and of the prompts, WER, and the
  pause floor (:func:`pause_floor_db`).

Prints the tables, then (when the buckets or sources ran) a line
``wer_1_3=<> wer_4_8=<> wer_sentence=<> wer_3_sentences=<> wer_3_split=<> bucket_ratio_max=<> last_word=<> babble=<> last_word_flite=<> sim_margin_commonvoice=<> dnsmos_commonvoice=<> sim_margin_vcc2016=<> dnsmos_vcc2016=<> pause_floor_db=<>``
(targets: bucket_ratio_max <= 1.5, last_word 1 (the recogniser itself misses last words: last_word_flite is
its rate on flite reading the same texts), babble 0, sim margins >= 0.05, DNSMOS >= 3.2), and a last line
``wer=<x> wer_real=<y> wer_ratio=<x/y> sim_unseen=<s> sim_diff_mean=<d> sim_margin=<s-d> sim_seen=<z> dnsmos=<m> rtf=<r>``
(targets: wer_ratio <= 2, sim_margin >= 0.1, rtf <= 0.2).
"""
from __future__ import annotations

import argparse
import csv
import itertools
import random
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

import valle2
from tools import DEFAULT_DATA, REAL_EXTRA_LICENCES, run_main, speech_data
from valle2 import metrics
from valle2.audio import load_audio, save_audio
from valle2.commands.options import add_decoding_args, decoding_options
from valle2.evaluation.safeguards import open_research_gate
from valle2.recipe import ASSETS
from valle2.errors import ConsentError
from valle2.text import split_sentences

HARVARD = Path(__file__).resolve().parent / "texts" / "harvard.txt"
# A phrase cut from a sentence does not end on one of these (it would read as cut off).
FUNCTION_WORDS = frozenset("a an the of to in on at by for from with and or but as is was were are be it's "
                           "his her their your its this that these those".split())
BUCKETS = ("1-3 words", "4-8 words", "1 sentence, 12+ words", "3 sentences")
SPLIT = "3 sentences, split"   # the "3 sentences" texts, one call a sentence (as the HTTP server speaks them)
# real-extra/ sources: (name in the tables, corpus licence as attested here)
SOURCES = {"commonvoice": ("Common Voice", REAL_EXTRA_LICENCES["commonvoice"]),
           "vcc2016": ("VCC2016", REAL_EXTRA_LICENCES["vcc2016"])}
FRAME_SECONDS = 0.02   # pause_floor_db's frames
FLITE_VOICE = "slt"    # the classic synthesizer whose reading of each bucket shows what the recogniser makes of its texts


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def harvard_sentences(path: Path = HARVARD) -> list[str]:
    """The sentences of ``path``, one a line, in order; blank lines and '#' comments left out."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def prefix_phrase(sentence: str, n_words: int, fewest: int, most: int) -> str:
    """The first ``n_words`` words of ``sentence`` ending in a period: where the last of them is
    one of ``FUNCTION_WORDS`` or a possessive, the nearest longer prefix (up to ``most`` words) that
    does not end on one, else the nearest shorter one (down to ``fewest``), else ``n_words`` words."""
    words = sentence.split()
    n_words = min(n_words, len(words))
    last = [w.strip(",.;:!?").lower() for w in words]
    ends_well = [n for n in [*range(n_words, min(most, len(words)) + 1), *range(n_words - 1, fewest - 1, -1)]
                 if last[n - 1] not in FUNCTION_WORDS and not (last[n - 1].endswith("'s") and n < len(words))]
    return " ".join(words[: ends_well[0] if ends_well else n_words]).rstrip(",.;:!?") + "."


def join_clauses(first: str, second: str) -> str:
    """Two sentences as one: ``"Rice is served." + "The juice is fine."`` -> ``"Rice is served, and the juice is fine."``"""
    return f"{first.rstrip('.!?')}, and {second[0].lower()}{second[1:]}"


def length_buckets(sentences: list[str], n: int) -> dict[str, list[str]]:
    """``n`` texts for each of ``BUCKETS`` from ``7 n`` of ``sentences``, each sentence used once,
    in order: "1-3 words" and "4-8 words" are :func:`prefix_phrase` of 1, 2, 3 and of 4..8 words in
    turn, "1 sentence, 12+ words" two sentences joined by :func:`join_clauses`, "3 sentences"
    three in a row.  ValueError when there are too few sentences."""
    if len(sentences) < 7 * n:
        raise ValueError(f"{n} texts a bucket need {7 * n} sentences, got {len(sentences)}")
    it = iter(sentences)

    def take(k: int) -> list[str]:   # the next k sentences
        return [next(it) for _ in range(k)]
    short = [prefix_phrase(s, 1 + i % 3, 1, 3) for i, s in enumerate(take(n))]
    middle = [prefix_phrase(s, 4 + i % 5, 4, 8) for i, s in enumerate(take(n))]
    pairs, triples = take(2 * n), take(3 * n)
    return dict(zip(BUCKETS, (short, middle, [join_clauses(a, b) for a, b in zip(pairs[::2], pairs[1::2])],
                              [" ".join(triples[i:i + 3]) for i in range(0, 3 * n, 3)])))


def end_check(reference: str, hypothesis: str) -> tuple[bool, int]:
    """``(last word, words after)`` of a transcript ``hypothesis`` of ``reference``, both after
    :func:`valle2.metrics.wer_normalize`: whether the reference's last word is recognised in its
    place (the WER's word alignment matches it), and how many recognised words follow the
    reference's end (the alignment's trailing insertions: babble after the text).  ValueError for
    a reference with no words."""
    import jiwer

    ref, hyp = metrics.wer_normalize(reference), metrics.wer_normalize(hypothesis)
    n_ref = len(ref.split())
    if not n_ref:
        raise ValueError(f"reference text {reference!r} has no words to check")
    if not hyp:
        return False, 0
    chunks = jiwer.process_words(ref, hyp).alignments[0]
    last = next(c for c in chunks if c.type != "insert" and c.ref_end_idx == n_ref)
    after = chunks[-1].hyp_end_idx - chunks[-1].hyp_start_idx if chunks[-1].type == "insert" else 0
    return last.type == "equal", after


def pause_floor_db(wav: np.ndarray, sr: int) -> float:
    """How quiet the pauses of ``wav [samples]`` are: the 10th percentile of its 20 ms frames'
    energy in dB, less their 90th percentile (the speech level); about -60 or below where pauses
    are silent, -25 to -35 where they carry a noise floor."""
    n = int(FRAME_SECONDS * sr)
    frames = np.asarray(wav, dtype=np.float64)[: len(wav) // n * n].reshape(-1, n)
    db = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    return float(np.percentile(db, 10) - np.percentile(db, 90))


def flite_heard(texts: list[str]) -> list[str] | None:
    """The recogniser's transcripts of flite (voice ``FLITE_VOICE``) reading ``texts``: what it
    makes of the texts spoken cleanly; None where flite is not installed."""
    import shutil

    from valle2.data.synthetic import SAMPLE_RATE, SyntheticVoice, render

    if shutil.which("flite") is None:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        return [metrics.transcribe(render(SyntheticVoice("flite", FLITE_VOICE), t, Path(scratch)), SAMPLE_RATE)
                for t in texts]


@dataclass
class Prompt:
    """A prompt: its speaker, the attested file it comes from, the waveform ``[samples]`` at
    ``sr`` and its transcript."""

    speaker: str
    file: Path
    wav: np.ndarray
    sr: int
    text: str


def load_prompt(speaker: str, file: Path, seconds: float | None = None, text: str | None = None) -> Prompt:
    """``file`` as a prompt, cut to its first ``seconds`` where given; without ``text`` its
    transcript is the recogniser's ("hello" where it hears nothing)."""
    wav, sr = load_audio(file)
    wav = wav[: int(seconds * sr)] if seconds else wav
    return Prompt(speaker, file, wav, sr, text or metrics.transcribe(wav, sr) or "hello")


@dataclass
class Output:
    """One synthesis: the text, its prompt, the output ``[samples]`` at ``sr`` and the seconds it
    took; its transcript, SIM to the prompt and DNSMOS are measured once, when first asked for."""

    text: str
    prompt: Prompt
    wav: np.ndarray
    sr: int
    seconds: float

    @cached_property
    def heard(self) -> str:
        return metrics.transcribe(self.wav, self.sr)

    @cached_property
    def similarity(self) -> float:
        return metrics.speaker_similarity(self.wav, self.sr, self.prompt.wav, self.prompt.sr)

    @cached_property
    def mos(self) -> float:
        return metrics.dnsmos(self.wav, self.sr)


def speak_in_turn(speak: Callable[[Prompt, str], tuple[np.ndarray, int, float]], prompts: list[Prompt], texts: list[str],
                  refused: list[str]) -> list[Output]:
    """Each of ``texts`` spoken by ``speak`` from the next of ``prompts`` in turn; a prompt the
    consent gate's liveness check refuses is noted in ``refused`` and not tried again (the next
    one takes its place); SystemExit when every prompt is refused."""
    live, out = list(prompts), []
    for i, text in enumerate(texts):
        while True:
            if not live:
                raise SystemExit(f"the consent gate refused every prompt, the last: {refused[-1]}")
            p = live[i % len(live)]
            try:
                out.append(Output(text, p, *speak(p, text)))
                break
            except ConsentError as exc:
                refused.append(f"{p.speaker}: {exc}")
                live.remove(p)
    return out


def extra_prompts(data: Path, source: str, n: int) -> tuple[list[Prompt], list[Path]]:
    """The first clip (by path) of each of the first ``n`` speakers (by id) of ``real-extra/``
    source ``source`` as whole-clip prompts (its transcript where the source has one, else the
    recogniser's), and the first clip of every speaker of that source."""
    first: dict[str, dict] = {}
    for r in sorted((r for r in rows(data / "real-extra" / "clips.tsv") if r["source"] == source), key=lambda r: r["path"]):
        first.setdefault(r["speaker"], r)
    chosen = [first[s] for s in sorted(first)[:n]]
    return ([load_prompt(r["speaker"], data / "real-extra" / r["path"], text=r["text"]) for r in chosen],
            [data / "real-extra" / r["path"] for r in first.values()])


def different_speaker_mean(embeddings: list[np.ndarray]) -> float:
    """Mean cosine between speaker embeddings (Resemblyzer's, unit length), each another speaker's."""
    return float(np.mean([float(a @ b) for a, b in itertools.combinations(embeddings, 2)]))


def end_rates(texts: list[str], heard: list[str]) -> tuple[float, float, float]:
    """``(WER, share with the last word, share with babble after it)`` of transcripts ``heard`` of ``texts``."""
    ends = [end_check(t, h) for t, h in zip(texts, heard)]
    return metrics.wer(texts, heard), float(np.mean([e[0] for e in ends])), float(np.mean([e[1] > 0 for e in ends]))


def bucket_table(model, outs: dict[str, list[Output]], real: tuple[list[str], list[str]]) -> dict:
    """Print the text-length table: per bucket the outputs' :func:`end_rates`, the longest output
    against its expected length (its tokens times the model's mean frames per token), and the
    rates of flite reading the same texts; returns the summary figures (keys of the summary line)."""
    sr = model.sample_rate
    print(f"{'text bucket':<24}{'texts':>6}{'words':>6}{'WER':>7}{'last word':>10}{'babble':>7}{'len/exp max':>12}"
          f"{'flite: WER':>11}{'last':>6}{'babble':>7}")
    rates, flite_rates = {}, {}
    for name, bucket in outs.items():
        texts = [o.text for o in bucket]
        rates[name] = end_rates(texts, [o.heard for o in bucket])
        words = np.mean([len(metrics.wer_normalize(t).split()) for t in texts])
        stretch = max(len(o.wav) / sr / (len(model.tokenizer.encode(o.text)) * model.bundle.frames_per_token
                                         / model.codec.frame_rate) for o in bucket)
        flite = flite_heard(texts) if name != SPLIT else None   # the same texts as "3 sentences"
        if flite is not None:
            flite_rates[name] = end_rates(texts, flite)
        shown = "".join(f"{v:>{w}.{d}f}" for v, w, d in zip(flite_rates.get(name, ()), (11, 6, 7), (3, 2, 2)))
        print(f"{name:<24}{len(bucket):>6}{words:>6.1f}{rates[name][0]:>7.3f}{rates[name][1]:>10.2f}{rates[name][2]:>7.2f}"
              f"{stretch:>12.2f}{shown}")
    w, last, babble = end_rates(*real)
    print(f"{'real ARCTIC recordings':<24}{len(real[0]):>6}{'':>6}{w:>7.3f}{last:>10.2f}{babble:>7.2f}"
          "   (the recogniser on real speech of the held-out sentences)")
    ref = rates[BUCKETS[2]][0]
    issue = [rates[b] for b in BUCKETS]
    return {"wer_1_3": rates[BUCKETS[0]][0], "wer_4_8": rates[BUCKETS[1]][0], "wer_sentence": ref,
            "wer_3_sentences": rates[BUCKETS[3]][0], "wer_3_split": rates[SPLIT][0],
            "bucket_ratio_max": max(r[0] for r in issue) / max(ref, 1e-9),
            "last_word": np.mean([r[1] for r in issue]), "babble": np.mean([r[2] for r in issue]),
            **({"last_word_flite": np.mean([flite_rates[b][1] for b in BUCKETS])} if flite_rates else {})}


def source_table(outs: dict[str, list[Output]], diffs: dict[str, float]) -> dict:
    """Print the prompt-source table: per source the SIM of outputs to their prompts against the
    source's different-speaker mean ``diffs[name]``, DNSMOS, WER and :func:`pause_floor_db` of the
    outputs (and of the prompts); returns the summary figures (keys of the summary line)."""
    print(f"{'prompt source':<22}{'prompts':>8}{'SIM':>7}{'diff':>7}{'margin':>8}{'DNSMOS':>8}{'of prompts':>11}"
          f"{'WER':>7}{'pause dB':>9}{'of prompts':>11}")
    figures = {}
    for name, bucket in outs.items():
        prompts = list({id(o.prompt): o.prompt for o in bucket}.values())
        sim = float(np.mean([o.similarity for o in bucket]))
        mos = float(np.mean([o.mos for o in bucket]))
        mos_prompt = float(np.mean([metrics.dnsmos(p.wav, p.sr) for p in prompts]))
        wer = metrics.wer([o.text for o in bucket], [o.heard for o in bucket])
        floor = float(np.mean([pause_floor_db(o.wav, o.sr) for o in bucket]))
        floor_prompt = float(np.mean([pause_floor_db(p.wav, p.sr) for p in prompts]))
        figures[name] = (sim - diffs[name], mos, floor)
        print(f"{SOURCES.get(name, ('LibriSpeech, 3 s',))[0]:<22}{len(prompts):>8}{sim:>7.3f}{diffs[name]:>7.3f}{sim - diffs[name]:>+8.3f}"
              f"{mos:>8.2f}{mos_prompt:>11.2f}{wer:>7.3f}{floor:>9.1f}{floor_prompt:>11.1f}")
    out = {}
    for name in SOURCES:
        if name in figures:
            out[f"sim_margin_{name}"], out[f"dnsmos_{name}"] = figures[name][:2]
    out["pause_floor_db"] = float(np.mean([f[2] for f in figures.values()]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ASSETS / "model.pt")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the speech data folder")
    p.add_argument("--sentences", type=int, default=50)
    p.add_argument("--bucket-texts", type=int, default=10, help="Harvard texts in each length bucket (0: no buckets)")
    p.add_argument("--source-prompts", type=int, default=10,
                   help="speakers (prompts) of Common Voice and of VCC2016 each (0: no other microphones)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="seeds the seed of each sentence's decoding")
    add_decoding_args(p, exclude=("seed",))   # the valle2 synthesize flags, but --seed above
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                   help="int8 linear layers in the AR and NAR (valle2.load_model's default: on the CPU)")
    p.add_argument("--out", type=Path, default=None, help="also write each output there (unseen_NN.wav, seen_NN.wav)")
    p.add_argument("--home", type=Path, default=None,
                   help="deployment whose gate the prompts pass (default: a temporary one)")
    args = p.parse_args()
    speech_data(args.data)
    torch.set_num_threads(args.threads)
    home = args.home or Path(tempfile.mkdtemp(prefix="valle2_demo_quality_"))
    model = valle2.load_model(args.model, gate=open_research_gate(home, [], "demo quality prompts", None), int8=args.int8)
    heldout = model.bundle.meta.get("heldout")
    if not heldout:
        raise SystemExit(f"{args.model} has no held-out lists in its metadata; train it with `valle2 recipe demo`")
    sr_model = model.sample_rate
    transcribed = rows(args.data / "transcribed.tsv")
    by_sentence: dict[str, dict[str, dict]] = {}
    for r in transcribed:
        by_sentence.setdefault(r["id"].rsplit("_", 1)[1], {})[r["speaker"]] = r
    sentences = [s for s in heldout["sentences"] if s in by_sentence][: args.sentences]
    texts = [next(iter(by_sentence[s].values()))["text"] for s in sentences]
    unseen = [r for r in rows(args.data / "untranscribed.tsv") if r["speaker"] in set(heldout["speakers"])]
    rng = random.Random(args.seed)
    seen_rows = {spk: next(r for r in transcribed if r["speaker"] == spk and r["id"].rsplit("_", 1)[1] not in set(heldout["sentences"]))
                 for spk in ("bdl", "slt")}
    # The prompts pass the consent gate as files of an attested research corpus; outputs are watermarked.
    open_research_gate(home, [args.data / r["path"] for r in unseen] + [args.data / r["path"] for r in seen_rows.values()],
                       "demo quality prompts", "CC BY 4.0 (LibriSpeech) and the CMU ARCTIC licence")
    extra = {name: extra_prompts(args.data, name, args.source_prompts) for name in SOURCES} if args.source_prompts else {}
    for name, (_, files) in extra.items():
        open_research_gate(home, files, f"demo quality prompts ({SOURCES[name][0]})", SOURCES[name][1])

    # Real-audio references
    real_pairs = [(by_sentence[s][spk]["text"], args.data / by_sentence[s][spk]["path"]) for s in sentences for spk in by_sentence[s]]
    real = ([t for t, _ in real_pairs], [metrics.transcribe(*load_audio(f)) for _, f in tqdm(real_pairs, desc="ASR of real recordings")])
    wer_real = metrics.wer(*real)
    clips = [load_audio(args.data / r["path"]) for r in unseen]          # one clip per LibriSpeech speaker
    same = float(np.mean([float(metrics.speaker_embedding(w[: len(w) // 2], sr) @ metrics.speaker_embedding(w[len(w) // 2:], sr))
                          for w, sr in clips]))
    diff = different_speaker_mean([metrics.speaker_embedding(w, sr) for w, sr in clips])

    def options():
        return decoding_options(args, seed=rng.randrange(2**31))

    def speak(prompt: Prompt, text: str) -> tuple[np.ndarray, int, float]:
        start = time.perf_counter()
        out, sr = model.synthesize(text, prompt.wav, prompt.sr, prompt_text=prompt.text, corpus_file=prompt.file,
                                   options=options())
        return out, sr, time.perf_counter() - start

    def speak_split(prompt: Prompt, text: str) -> tuple[np.ndarray, int, float]:
        """One call a sentence of ``text``, the same prompt, joined (as the HTTP server speaks it)."""
        start = time.perf_counter()
        outs = [model.synthesize(s, prompt.wav, prompt.sr, prompt_text=prompt.text, corpus_file=prompt.file,
                                 options=options())[0] for s in split_sentences(text)]
        return np.concatenate(outs), sr_model, time.perf_counter() - start

    refused: list[str] = []   # prompts the consent gate's liveness check refused (the next speaker is used)
    unseen_prompts = [load_prompt(r["speaker"], args.data / r["path"], seconds=3) for r in tqdm(unseen, desc="unseen prompts")]
    seen_prompts = [load_prompt(spk, args.data / r["path"], text=r["text"]) for spk, r in seen_rows.items()]
    results = {"unseen": speak_in_turn(speak, unseen_prompts, tqdm(texts, desc="zero-shot synthesis"), refused),
               "seen": speak_in_turn(speak, seen_prompts, tqdm(texts, desc="seen-speaker synthesis"), refused)}
    all_out = results["unseen"] + results["seen"]
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for kind, outs in results.items():
            for i, o in enumerate(outs):
                save_audio(args.out / f"{kind}_{i:02d}.wav", o.wav, sr_model)
    wer = metrics.wer([o.text for o in all_out], [o.heard for o in tqdm(all_out, desc="ASR of outputs")])
    mos = float(np.mean([o.mos for o in all_out]))
    rtf = sum(o.seconds for o in all_out) / sum(len(o.wav) / sr_model for o in all_out)
    sim_unseen = float(np.mean([o.similarity for o in results["unseen"]]))
    sim_seen = float(np.mean([o.similarity for o in results["seen"]]))

    buckets = length_buckets(harvard_sentences(), args.bucket_texts) if args.bucket_texts else {}
    bucket_outs = {name: speak_in_turn(speak, unseen_prompts, tqdm(bt, desc=name), refused) for name, bt in buckets.items()}
    if buckets:
        bucket_outs[SPLIT] = speak_in_turn(speak_split, unseen_prompts, tqdm(buckets[BUCKETS[3]], desc=SPLIT), refused)
    source_outs = {name: speak_in_turn(speak, prompts, tqdm(texts[: len(prompts)], desc=SOURCES[name][0]), refused)
                   for name, (prompts, _) in extra.items()}

    print(f"{len(texts)} held-out sentences; unseen prompts from {len(unseen)} LibriSpeech speakers; {args.threads} threads")
    if refused:
        print(f"{len(refused)} prompt(s) refused by the gate's liveness check, replaced by the next speaker's:")
        for line in refused:
            print(f"  {line}")
    print(f"{'measure':<44}{'value':>8}")
    for name, v in [("WER of outputs (pocketsphinx)", wer), ("WER of real training-speaker recordings", wer_real),
                    ("SIM to prompt, unseen speakers", sim_unseen), ("SIM to prompt, seen speakers", sim_seen),
                    ("SIM real same-speaker mean", same), ("SIM real different-speaker mean", diff),
                    ("DNSMOS P.808 of outputs", mos), ("real-time factor", rtf)]:
        print(f"{name:<44}{v:>8.3f}")
    summary = {}
    if bucket_outs:
        print(f"\ntext length: Harvard sentences, prompts of the unseen LibriSpeech speakers in turn")
        summary.update(bucket_table(model, bucket_outs, real))
    if source_outs:
        print(f"\nother microphones: whole-clip prompts, held-out ARCTIC sentences; 'diff': the source's different-speaker "
              "mean; pause dB: pause_floor_db")
        diffs = {"librispeech": diff, **{name: different_speaker_mean([metrics.speaker_embedding(*load_audio(f)) for f in files])
                                          for name, (_, files) in extra.items()}}
        summary.update(source_table({"librispeech": results["unseen"], **source_outs}, diffs))
    if summary:
        print(" ".join(f"{k}={v:.3f}" if k != "pause_floor_db" else f"{k}={v:.1f}" for k, v in summary.items()))
    print(f"wer={wer:.3f} wer_real={wer_real:.3f} wer_ratio={wer / max(wer_real, 1e-9):.2f} sim_unseen={sim_unseen:.3f} "
          f"sim_diff_mean={diff:.3f} sim_margin={sim_unseen - diff:.3f} sim_seen={sim_seen:.3f} dnsmos={mos:.2f} rtf={rtf:.3f}")


if __name__ == "__main__":
    run_main(main)
