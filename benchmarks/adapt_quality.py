"""Voice adaptation (``valle2 voice adapt``) against zero-shot, on speakers held out of training.

- Speakers: the 10 VCC2016 speakers of ``real-extra/`` (studio, 16 kHz; none in the demo model's
  training data).  They read the same 16 sentences: for each speaker the first 12 (about 35 s)
  adapt a research voice, the last 4 are the test sentences.
- Texts: VCC2016 ships no transcripts.  Each test sentence's reference text is the consensus of
  the offline recogniser (pocketsphinx) over the 10 speakers' real recordings of it: the transcript
  with the lowest WER against the other 9.  WER of real speech is the 10 real recordings' WER
  against it; the adaptation itself gets no transcripts (the recogniser's, as for a user).
- Adapted: ``voice adapt --research`` on the 12 clips, then each test text in that voice with no
  prompt.  Zero-shot: the same texts prompted with the first of the 12 clips (its recogniser
  transcript as prompt text).
- SIM: Resemblyzer cosine of each output to the speaker's real recording of the same sentence;
  ``sim_diff_mean``: the mean cosine between different speakers' real recordings of a test
  sentence; ``sim_same_p5``: the 5th percentile between one speaker's real test recordings.

Last line: ``sim_adapted=<> sim_zero_shot=<> sim_diff_mean=<> wer_ratio=<> dnsmos=<> adapt_seconds=<> adapter_mb=<>``
(targets: sim_adapted >= sim_diff_mean + 0.15, wer_ratio <= 2, dnsmos >= 3.3).
"""
from __future__ import annotations

import argparse
import csv
import itertools
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import valle2
from tools import DEFAULT_DATA, REAL_EXTRA_LICENCES, run_main, speech_data
from valle2 import metrics
from valle2.adapt import AdaptConfig, adapt_voice
from valle2.audio import load_audio
from valle2.evaluation.safeguards import open_research_gate

LICENCE = REAL_EXTRA_LICENCES["vcc2016"]


def vcc_clips(data: Path) -> dict[str, list[Path]]:
    """speaker -> the 16 clip paths, in sentence order."""
    with open(data / "real-extra" / "clips.tsv", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if r["source"] == "vcc2016"]
    out: dict[str, list[Path]] = {}
    for r in sorted(rows, key=lambda r: r["path"]):
        out.setdefault(r["speaker"], []).append(data / "real-extra" / r["path"])
    return out


def consensus(transcripts: list[str]) -> str:
    """The transcript with the lowest summed WER against the others."""
    cost = [sum(metrics.wer(t, u) for u in transcripts if u is not t) for t in transcripts]
    return transcripts[int(np.argmin(cost))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the speech data folder")
    p.add_argument("--speakers", type=int, default=10, help="how many of the 10 VCC2016 speakers")
    p.add_argument("--n-adapt", type=int, default=12)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--home", type=Path, default=None, help="deployment (default: a temporary one)")
    p.add_argument("--tables", default="model", help="the context tables adapt chooses among (AdaptConfig.tables)")
    args = p.parse_args()
    speech_data(args.data)
    torch.set_num_threads(args.threads)
    clips = vcc_clips(args.data)
    speakers = sorted(clips)[: args.speakers]
    home = args.home or Path(tempfile.mkdtemp(prefix="adapt_quality_"))
    gate = open_research_gate(home, [f for s in clips for f in clips[s]], "VCC2016 training data", LICENCE)
    model = valle2.load_model(args.model, gate=gate)
    sr = model.sample_rate
    tests = range(args.n_adapt, len(clips[speakers[0]]))
    heard = {(s, j): metrics.transcribe(*load_audio(clips[s][j])) for s in clips for j in tqdm(tests, desc=f"ASR {s}")}
    texts = {j: consensus([heard[s, j] for s in clips]) for j in tests}
    wer_real = metrics.wer([texts[j] for s in clips for j in tests], [heard[s, j] for s in clips for j in tests])
    emb = {(s, j): metrics.speaker_embedding(*load_audio(clips[s][j])) for s in clips for j in tests}
    diff = np.mean([float(emb[a, j] @ emb[b, j]) for a, b in itertools.permutations(clips, 2) for j in tests])
    same = [float(emb[s, j] @ emb[s, k]) for s in clips for j, k in itertools.combinations(tests, 2)]
    rows: dict[str, list] = {"adapted": [], "zero_shot": []}
    seconds, sizes = [], []
    for s in tqdm(speakers, desc="speakers"):
        result = adapt_voice(model, clips[s][: args.n_adapt], name=s, log=lambda line: print(f"{s}: {line}"),
                             config=AdaptConfig(tables=tuple(args.tables.split(","))))
        print(f"{s}: {result.table} table, prompt {result.adapter.prompt_name}, {result.seconds:.1f} s")
        seconds.append(result.seconds)
        sizes.append(result.adapter_bytes / 1e6)
        zs_wav, zs_sr = load_audio(clips[s][0])
        zs_text = metrics.transcribe(zs_wav, zs_sr)
        for j in tests:
            out, _ = model.synthesize(texts[j], voice_id=result.voice_id)
            rows["adapted"].append((s, j, out))
            out, _ = model.synthesize(texts[j], zs_wav, zs_sr, prompt_text=zs_text, corpus_file=clips[s][0])
            rows["zero_shot"].append((s, j, out))
    print(f"{'':<10} {'SIM':>6} {'WER':>6} {'DNSMOS':>7}")
    figures = {}
    for name, outs in rows.items():
        sim = np.mean([float(metrics.speaker_embedding(o, sr) @ emb[s, j]) for s, j, o in outs])
        w = metrics.wer([texts[j] for _, j, _ in outs], [metrics.transcribe(o, sr) for _, _, o in outs])
        mos = float(np.mean([metrics.dnsmos(o, sr) for _, _, o in outs]))
        figures[name] = (sim, w, mos)
        print(f"{name:<10} {sim:6.3f} {w:6.3f} {mos:7.2f}")
    print(f"{'real':<10} {'':>6} {wer_real:6.3f}    (same-speaker SIM 5th percentile {np.percentile(same, 5):.3f}, "
          f"different-speaker mean {diff:.3f}; test texts {[texts[j] for j in tests]})")
    sim_a, wer_a, mos_a = figures["adapted"]
    print(f"sim_adapted={sim_a:.3f} sim_zero_shot={figures['zero_shot'][0]:.3f} sim_diff_mean={diff:.3f} "
          f"wer_ratio={wer_a / max(wer_real, 1e-9):.2f} dnsmos={mos_a:.2f} adapt_seconds={np.mean(seconds):.1f} "
          f"adapter_mb={max(sizes):.3f}")


if __name__ == "__main__":
    run_main(main)
