"""Does the AR read the text?  A teacher-forced probe on held-out ARCTIC sentences.

For each sentence the demo recipe held out (seen speakers bdl and slt), the prompt is another
utterance of the same speaker and the target is the sentence, as in cross-sentence synthesis.  The
AR is teacher forced on the prompt's and the target's real codebook 0 (every group predicted from
the real history) twice: with the right text, and with the target's text swapped for another
held-out sentence.  Printed:

- top-1 accuracy of codebook 0 over the target frames with the right and the wrong text: an AR
  that does not read the text scores the same on both;
- pocketsphinx WER of the target decoded (NAR, voice match, codec) from its real codebook 0 and
  from the AR's teacher-forced argmax codebook 0.  The NAR predicts the codec's
  ``predicted_codebooks`` and the codec completes the rest, as synthesis does by default
  (``--nar-codebooks N``: the NAR fills N codebooks).

Last line: ``acc_right_text=<a> acc_wrong_text=<b> wer_real_code0=<w> wer_teacher_forced=<x>``.

    python -m benchmarks.ar_text_probe --n 24                    # the shipped demo model
    python -m benchmarks.ar_text_probe --model MODEL.pt --n 24   # a model of `valle2 recipe demo`
"""
from __future__ import annotations

import argparse
import csv
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
    p.add_argument("--n", type=int, default=24, help="held-out ARCTIC sentences")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--nar-codebooks", type=int, default=None, help="codebooks the NAR fills (default: the codec's predicted_codebooks)")
    args = p.parse_args(argv)
    speech_data(args.data)
    torch.set_num_threads(args.threads)

    from valle2 import metrics
    from valle2.audio import load_audio
    from valle2.checkpoint import load_model_bundle
    from valle2.codec import load_codec
    from valle2.decoding import nar_generate
    from valle2.synthesis import nar_codebooks

    bundle = load_model_bundle(args.model)
    ar, nar = bundle.ar.float().eval(), bundle.nar.float().eval()
    codec = load_codec(bundle.codec["name"], **bundle.codec.get("options", {}))
    g = ar.dims.group_size
    n_nar = nar_codebooks(codec, nar.dims, args.nar_codebooks)
    with open(args.data / "transcribed.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not bundle.meta.get("heldout"):
        raise SystemExit(f"{args.model} has no held-out lists in its metadata; train it with `valle2 recipe demo`")
    held = set(bundle.meta["heldout"]["sentences"])
    targets = [r for r in rows if r["id"].rsplit("_", 1)[1] in held][: args.n]
    acc, refs, hyp_real, hyp_tf = [], [], [], []
    for i, r in enumerate(tqdm(targets, desc="held-out sentences", unit="sentence")):
        prompt = next(x for x in rows if x["speaker"] == r["speaker"] and x["id"].rsplit("_", 1)[1] not in held)
        pc = codec.encode(*load_audio(args.data / prompt["path"], sr=codec.sample_rate))
        pc = pc[:, : pc.shape[1] // g * g]                              # whole groups, as the AR decodes a prompt
        tc = codec.encode(*load_audio(args.data / r["path"], sr=codec.sample_rate))
        n_p = pc.shape[1]
        code0 = torch.cat([pc[0], tc[0]])
        row = []
        for text in (r["text"], targets[(i + 1) % len(targets)]["text"]):
            ids = torch.tensor([bundle.tokenizer.encode(prompt["text"] + " " + text)])
            with torch.no_grad():
                logits, _, _ = ar.teacher_forced(ids, torch.tensor([ids.shape[1]]), [code0])
            pred = logits[0, ..., : codec.codebook_size].argmax(-1).reshape(-1)[n_p: code0.shape[0]]
            row.append(((pred == tc[0]).float().mean().item(), pred))
        acc.append([row[0][0], row[1][0]])
        ids = torch.tensor(bundle.tokenizer.encode(prompt["text"] + " " + r["text"]))
        refs.append(r["text"])
        for c0, hyps in ((tc[0], hyp_real), (row[0][1], hyp_tf)):
            codes = codec.match_voice(codec.complete(nar_generate(nar, [ids], [pc.T], [c0], codec.ordinal_codebooks, n_nar)[0]), pc)
            hyps.append(metrics.transcribe(codec.decode(codes).numpy(), codec.sample_rate))
    right, wrong = np.mean(acc, axis=0)
    wer_real, wer_tf = metrics.wer(refs, hyp_real), metrics.wer(refs, hyp_tf)
    print(f"\n{len(refs)} held-out ARCTIC sentences, seen speakers, teacher forced on the real codebook 0")
    print(f"top-1 accuracy of codebook 0, right text   {right:.3f}")
    print(f"top-1 accuracy of codebook 0, wrong text   {wrong:.3f}")
    print(f"WER decoded from the real codebook 0       {wer_real:.3f}")
    print(f"WER decoded from the AR's argmax codebook 0 {wer_tf:.3f}")
    print(f"acc_right_text={right:.3f} acc_wrong_text={wrong:.3f} wer_real_code0={wer_real:.3f} wer_teacher_forced={wer_tf:.3f}")
    return 0


if __name__ == "__main__":
    run_main(main)
