"""Zero-shot quality of the demo model, measured here on 2 cores.

- Text: the ARCTIC sentences the demo recipe held out of training (model metadata), so no
  sentence was seen in training.
- Unseen speakers: LibriSpeech speakers held out of training; the prompt is the first 3 s of
  their clip, its transcript from the offline recogniser (no transcripts ship with them).
- Seen speakers: ARCTIC bdl and slt, prompted with one of their training utterances.
- Reference figures from real audio: the WER of the training speakers' real recordings of the
  same held-out sentences, and Resemblyzer same-speaker / different-speaker cosine means.

Prints a table and a last line
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
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import valle2
from tools import DEFAULT_DATA, run_main, speech_data
from valle2 import metrics
from valle2.audio import load_audio, save_audio
from valle2.commands.options import add_decoding_args, decoding_options
from valle2.evaluation.safeguards import open_research_gate
from valle2.recipe import ASSETS
from valle2.errors import ConsentError



def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ASSETS / "model.pt")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the speech data folder")
    p.add_argument("--sentences", type=int, default=50)
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
    seen_prompts = {spk: next(r for r in transcribed if r["speaker"] == spk and r["id"].rsplit("_", 1)[1] not in set(heldout["sentences"]))
                    for spk in ("bdl", "slt")}
    # The prompts pass the consent gate as files of an attested research corpus; outputs are watermarked.
    prompt_files = [args.data / r["path"] for r in unseen] + [args.data / r["path"] for r in seen_prompts.values()]
    open_research_gate(home, prompt_files, "demo quality prompts",
                       "CC BY 4.0 (LibriSpeech) and the CMU ARCTIC licence")

    # Real-audio references
    wer_real = metrics.wer([by_sentence[s][spk]["text"] for s in sentences for spk in by_sentence[s]],
                           [metrics.transcribe(*load_audio(args.data / by_sentence[s][spk]["path"]))
                            for s in tqdm(sentences, desc="ASR of real recordings") for spk in by_sentence[s]])
    emb = {r["speaker"]: metrics.speaker_embedding(*load_audio(args.data / r["path"])) for r in unseen}
    halves = {r["speaker"]: [metrics.speaker_embedding(w[: len(w) // 2], sr), metrics.speaker_embedding(w[len(w) // 2:], sr)]
              for r in unseen for w, sr in [load_audio(args.data / r["path"])]}
    same = float(np.mean([float(a @ b) for a, b in halves.values()]))
    diff = float(np.mean([float(emb[a] @ emb[b]) for a, b in itertools.combinations(sorted(emb), 2)]))

    def run(prompt_file, prompt_wav, prompt_sr, prompt_text, text):
        start = time.perf_counter()
        out, sr = model.synthesize(text, prompt_wav, prompt_sr, prompt_text=prompt_text, corpus_file=prompt_file,
                                   options=decoding_options(args, seed=rng.randrange(2**31)))
        return out, time.perf_counter() - start

    results = {"unseen": [], "seen": []}
    refused: list[str] = []   # unseen prompts the consent gate's liveness check refused (the next speaker is used)
    order = iter(itertools.cycle(unseen))
    for i, text in enumerate(tqdm(texts, desc="zero-shot synthesis")):
        while True:
            r = next(order)
            wav, sr = load_audio(args.data / r["path"])
            prompt = wav[: 3 * sr]
            prompt_text = metrics.transcribe(prompt, sr) or "hello"
            try:
                out, secs = run(args.data / r["path"], prompt, sr, prompt_text, text)
                break
            except ConsentError as exc:
                refused.append(f"{r['speaker']}: {exc}")
                if len(refused) > len(unseen):
                    raise SystemExit("the consent gate refused every unseen prompt") from None
        results["unseen"].append((text, out, secs, metrics.speaker_similarity(out, sr_model, prompt, sr)))
        spk = ("bdl", "slt")[i % 2]
        pw, psr = load_audio(args.data / seen_prompts[spk]["path"])
        out, secs = run(args.data / seen_prompts[spk]["path"], pw, psr, seen_prompts[spk]["text"], text)
        results["seen"].append((text, out, secs, metrics.speaker_similarity(out, sr_model, pw, psr)))
    all_out = results["unseen"] + results["seen"]
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for kind, outs in results.items():
            for i, (_, o, _, _) in enumerate(outs):
                save_audio(args.out / f"{kind}_{i:02d}.wav", o, sr_model)
    wer = metrics.wer([t for t, *_ in all_out], [metrics.transcribe(o, sr_model) for _, o, _, _ in tqdm(all_out, desc="ASR of outputs")])
    mos = float(np.mean([metrics.dnsmos(o, sr_model) for _, o, _, _ in all_out]))
    rtf = sum(s for _, _, s, _ in all_out) / sum(len(o) / sr_model for _, o, _, _ in all_out)
    sim_unseen = float(np.mean([s for *_, s in results["unseen"]]))
    sim_seen = float(np.mean([s for *_, s in results["seen"]]))
    print(f"{len(texts)} held-out sentences; unseen prompts from {len({r['speaker'] for r in unseen})} LibriSpeech speakers; "
          f"{args.threads} threads")
    if refused:
        print(f"{len(refused)} unseen prompt(s) refused by the gate's liveness check, replaced by the next speaker's:")
        for line in refused:
            print(f"  {line}")
    print(f"{'measure':<44}{'value':>8}")
    for name, v in [("WER of outputs (pocketsphinx)", wer), ("WER of real training-speaker recordings", wer_real),
                    ("SIM to prompt, unseen speakers", sim_unseen), ("SIM to prompt, seen speakers", sim_seen),
                    ("SIM real same-speaker mean", same), ("SIM real different-speaker mean", diff),
                    ("DNSMOS P.808 of outputs", mos), ("real-time factor", rtf)]:
        print(f"{name:<44}{v:>8.3f}")
    print(f"wer={wer:.3f} wer_real={wer_real:.3f} wer_ratio={wer / max(wer_real, 1e-9):.2f} sim_unseen={sim_unseen:.3f} "
          f"sim_diff_mean={diff:.3f} sim_margin={sim_unseen - diff:.3f} sim_seen={sim_seen:.3f} dnsmos={mos:.2f} rtf={rtf:.3f}")


if __name__ == "__main__":
    run_main(main)
