"""How much of the prompt speaker's voice survives the NAR, with the AR taken out of the question.

For LibriSpeech speakers the demo recipe held out (``valle2.recipe.heldout_split``), each clip is
encoded with the model's codec and split into a 3 s prompt and the rest (the target).  The target
is then decoded four ways and its Resemblyzer cosine to the prompt audio is measured:

- ``real``: every codebook of the target as encoded (the codec's own ceiling);
- ``real 0 + NAR``: the target's real codebook 0 (a perfect AR) and codebooks 1.. from the NAR
  (every codebook it predicts, as the paper: ``DecodingOptions(nar_codebooks=8)``);
- ``real 0 + NAR, voice matched``: the same, moved toward the prompt's voice statistics by
  ``codec.match_voice`` as synthesis does by default;
- ``real 0 + NAR, completed, voice matched``: what synthesis does by default: the NAR predicts
  the codec's ``predicted_codebooks`` only (offline codec: F0 and aperiodicity), the codec
  completes the rest (``codec.complete``), then the voice match;
- ``real 0-2, no residual``: real codebooks 0-2 (envelope stage 1, F0, aperiodicity for the
  offline codec) and the later envelope stages set to the code nearest zero (offline codec only);
- per codebook, the NAR's exact-code accuracy against the real target.

The transcript is the offline recogniser's (these clips ship without one).  Last line:
``sim_real=<x> sim_nar=<y> sim_nar_matched=<m> sim_completed=<c> sim_no_residual=<z> sim_diff_mean=<d>`` (the different-speaker mean of
the same clips, the floor that issue 3's similarity margin is measured from).

    python -m benchmarks.nar_oracle --n 20                       # the shipped demo model
    python -m benchmarks.nar_oracle --model MODEL.pt --n 20      # a model of `valle2 recipe demo`
"""
from __future__ import annotations

import argparse
import csv
import itertools
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tools import DEFAULT_DATA, run_main, speech_data
from valle2.recipe import ASSETS


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=ASSETS / "model.pt",
                   help="a valle2 model file with the demo recipe's held-out lists (default: the shipped demo model)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the speech data folder")
    p.add_argument("--n", type=int, default=20, help="held-out LibriSpeech speakers (one clip each)")
    p.add_argument("--prompt-seconds", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    speech_data(args.data)
    torch.set_num_threads(args.threads)

    from valle2 import metrics
    from valle2.audio import load_audio
    from valle2.checkpoint import load_model_bundle
    from valle2.codec import load_codec
    from valle2.decoding import nar_generate
    from valle2.synthesis import nar_codebooks
    from valle2.recipe import heldout_split

    bundle = load_model_bundle(args.model)
    codec = load_codec(bundle.codec["name"])
    offline = hasattr(codec, "envelope_codebooks")
    if offline:   # the code of each later envelope stage whose vector is nearest zero (no residual)
        books = codec.config.envelope_books
        zero = {book: int(np.argmin(np.linalg.norm(codec.envelope_codebooks[s], axis=1))) for s, book in enumerate(books) if s}
    n_nar = nar_codebooks(codec, bundle.dims)
    held = set(heldout_split(args.data, 60, 50, 0)["speakers"])
    with open(args.data / "untranscribed.tsv", newline="") as f:
        clips = [r for r in csv.DictReader(f, delimiter="\t") if r["speaker"] in held][: args.n]
    sims: dict[str, list[float]] = {"real": [], "nar": [], "nar_matched": [], "completed": [], "no_residual": []}
    acc, voices = [], []
    for r in tqdm(clips, desc="held-out speakers", unit="clip"):
        wav, sr = load_audio(args.data / r["path"], sr=codec.sample_rate)
        codes = codec.encode(wav, sr)                                    # [n_q, T]
        n_prompt = int(args.prompt_seconds * codec.frame_rate)
        prompt, target = codes[:, :n_prompt], codes[:, n_prompt:]
        if target.shape[1] < codec.frame_rate:                          # under 1 s left to decode
            continue
        prompt_emb = metrics.speaker_embedding(wav[: n_prompt * wav.size // codes.shape[1]], sr)
        voices.append(metrics.speaker_embedding(wav, sr))
        ids = torch.tensor(bundle.tokenizer.encode(metrics.transcribe(wav, sr) or "hello"))
        nar = nar_generate(bundle.nar, [ids], [prompt.T], [target[0]], codec.ordinal_codebooks)[0]
        acc.append([(nar[j] == target[j]).float().mean().item() for j in range(1, codes.shape[0])])
        part = nar_generate(bundle.nar, [ids], [prompt.T], [target[0]], codec.ordinal_codebooks, n_nar)[0]
        variants = {"real": target, "nar": nar, "nar_matched": codec.match_voice(nar, prompt),
                    "completed": codec.match_voice(codec.complete(part), prompt)}
        if offline:
            variants["no_residual"] = target.clone()
            for book, code in zero.items():
                variants["no_residual"][book] = code
        for name, c in variants.items():
            sims[name].append(float(metrics.speaker_embedding(codec.decode(c).numpy(), sr) @ prompt_emb))
    diff = float(np.mean([float(a @ b) for a, b in itertools.combinations(voices, 2)]))
    mean = {k: float(np.mean(v)) if v else float("nan") for k, v in sims.items()}
    print(f"\n{len(sims['real'])} held-out LibriSpeech speakers, {args.prompt_seconds:.0f} s prompts, codec {bundle.codec['name']}")
    print(f"{'target decoded from':<40} {'SIM to prompt':>13}")
    for label, key in (("real codes", "real"), ("real codebook 0 + NAR", "nar"),
                       ("real codebook 0 + NAR, voice matched", "nar_matched"),
                       (f"real 0 + NAR 1-{n_nar - 1}, completed, matched", "completed"),
                       ("real codebooks 0-2, no envelope residual", "no_residual")):
        print(f"{label:<40} {mean[key]:>13.3f}")
    print(f"{'different-speaker mean (real audio)':<40} {diff:>13.3f}")
    print("NAR exact-code accuracy, codebooks 1..: " + " ".join(f"{a:.3f}" for a in np.mean(acc, axis=0)))
    print(f"sim_real={mean['real']:.3f} sim_nar={mean['nar']:.3f} sim_nar_matched={mean['nar_matched']:.3f} sim_completed={mean['completed']:.3f} sim_no_residual={mean['no_residual']:.3f} sim_diff_mean={diff:.3f}")
    return 0


if __name__ == "__main__":
    run_main(main)
