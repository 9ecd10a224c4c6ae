"""The paper's AR, shown to learn: free-running VALL-E 2 on the synthetic-speech task.

Reads a ``valle2 recipe synthetic`` output folder (``--run``; it names the one command that makes
it when missing).  Test set: the recipe's held-out sentences (never trained on), spoken by each
training voice and by the held-out voice when the recipe has one; setting ``reference`` (each
sentence synthesized from the same voice's rendering of another held-out sentence, in cross mode).
Codebook 0 comes from the AR, sampled with RAS (top-p 0.8), one sample, no reranking (``--samples 5``:
the paper's best-of-5, each trial's outputs ranked as ``valle2.evaluation.runner`` ranks them); every
prompt passes the consent gate (the test files are attested as a proved synthetic-voice corpus)
and every output is watermarked before it is scored.

- ``wer_ratio``: pocketsphinx WER of valle2's outputs over that of the voices' own renderings of
  the same sentences (target <= 1.5).  ``limit_hits``: outputs whose AR stopped at its frame
  limit instead of emitting end-of-speech (target <= 2 %).  ``loops``: outputs whose transcript
  repeats a run of 1-4 words 3 times or more (target 0).  ``train_hours``: the model's training
  wall-clock hours over every resumed run (its ``train_seconds``; threads as the config says).
- ``--curve``: the same on the first ``--curve-limit`` trials for every ``--curve-every``-th
  checkpoint the run kept, drawn as WER against training steps (``--figure``), with the voices'
  own WER on the final run's trials as the reference line.  ``--curve-stages`` names the training
  folders under ``--run`` in the order they trained (default ``train``; e.g. ``train joint`` for a
  run resumed into another folder): a later stage's steps continue the earlier one's.

- The table also shows, on the same trials, the WER of the voice's codec resynthesis and of
  ``real 0 + NAR``: the target's own codebook 0 (a perfect AR) through the NAR and the codec as
  synthesis decodes (``EvalOptions.oracle_code0``).  What the AR can reach is bounded by the latter.
  ``wer_voice_marked``: the voices' own renderings with valle2's watermark embedded (every valle2
  output, the codec row's included, carries it; the voices' own renderings do not), the mark's
  share of the ratio.

Last line: ``wer_ratio=<> limit_hits=<%> train_hours=<>`` (and ``wer=``, ``wer_voice=``, ``wer_voice_marked=``, ``wer_oracle0=``
(real codebook 0 + NAR), ``loops=``, and the teacher-forced probe's ``acc_right_text=``, ``acc_wrong_text=``: codebook-0 accuracy with the right text and with
another sentence's, equal when the AR does not read; ``dtw_own=``, ``dtw_other=``, ``dtw_closer=``: free-running
codebook 0's DTW distance to the voice's own codes of the same and of another sentence, :func:`code0_reading`).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from tools import run_main
from valle2.checkpoint import load_model_bundle, save_model
from valle2.decoding import DecodingOptions
from valle2.evaluation.backends import load_asr, load_speaker_encoder
from valle2.evaluation.runner import EvalOptions, Evaluation
from valle2.evaluation.scoring import Scorer, summarize
from valle2.evaluation.testset import load_test_utterances
from valle2.recipe_synthetic import attest_test_voices, parse_voice, heldout_cuts_path
from valle2.safety.consent import file_sha256
from valle2.safety.deployment import Deployment
from valle2.synthesis import load_model
from valle2.train import bundle_from_checkpoint

DECODING = DecodingOptions(code0="ar", code_choice="sample", ras=True, top_p=0.8)


def evaluate(model, items, out: Path, limit: int | None, gate, references: bool, model_id: str, samples: int = 1) -> dict:
    """Run the benchmark's setting with ``model`` (:class:`valle2.synthesis.VallE2`) on ``items`` into ``out``,
    the best of ``samples`` outputs a trial (:class:`~valle2.evaluation.runner.EvalOptions`' ``n_samples``);
    returns ``{row: summary}`` and, per speaker, ``{"by_voice": {speaker: {row: summary}}}``."""
    options = EvalOptions(setting="reference", min_seconds=0.0, max_seconds=60.0, limit=limit, references=references,
                          oracle_code0=references, dnsmos=False, decoding=DECODING, n_samples=samples)
    result = Evaluation(model, out, options, Scorer(load_asr("pocketsphinx"), load_speaker_encoder("resemblyzer")),
                        gate, model_id).run(items, progress=True)
    by_voice: dict[str, dict] = {}
    for record in result.records:
        speaker = next(u.speaker for u in items if u.id == record["id"])
        for row, scores in record["rows"].items():
            by_voice.setdefault(speaker, {}).setdefault(row, []).append(scores)
    return {**result.summary, "by_voice": {s: {row: summarize(v) for row, v in rows.items()} for s, rows in by_voice.items()},
            "ids": [record["id"] for record in result.records]}


def marked_wer(items, ids: list[str]) -> float:
    """Pocketsphinx WER of the utterances ``ids`` of ``items`` with valle2's watermark embedded (a
    benchmark key: the mark's effect on the sound does not depend on the key)."""
    from valle2 import metrics
    from valle2.safety.watermark import embed

    key = b"ar_learns: the watermark's share"
    by_id = {u.id: u for u in items}
    refs, hyps = [], []
    for i in ids:
        wav, sr = by_id[i].load()
        refs.append(by_id[i].text)
        hyps.append(metrics.transcribe(embed(wav, sr, 0, key), sr))
    return metrics.wer(refs, hyps)


def curve(run: Path, items, out: Path, limit: int, every: int, gate, stages: tuple[str, ...] = ("train",)) -> list[dict]:
    """``{"stage", "step", "wer", "hit_limit", "loops", "n"}`` for every ``every``-th kept checkpoint
    of each of ``stages`` (folders under ``run``, in training order; a stage's steps continue from
    the last kept step of the one before).  A checkpoint scored before is read back from its records."""
    points, offset = [], 0
    for stage in stages:
        kept = sorted((run / stage / "checkpoints").glob("step-*.pt"))
        if not kept:
            raise SystemExit(f"no checkpoints in {run / stage / 'checkpoints'}: --curve-stages names training "
                             f"folders under --run (e.g. train)")
        for ckpt in kept[every - 1::every]:
            step = int(ckpt.stem.split("-")[1])
            done = out / stage / f"step-{step:08d}" / "results.json"
            s = json.loads(done.read_text())["summary"]["valle2"] if done.is_file() else None
            if s is None or s["n"] != limit:
                with tempfile.TemporaryDirectory() as tmp:
                    model_path = save_model(Path(tmp) / "model.pt", bundle_from_checkpoint(ckpt), half=True)
                    s = evaluate(load_model(model_path, gate=gate), items, done.parent, limit, gate, False,
                                 str(ckpt))["valle2"]
            points.append({"stage": stage, "step": offset + step, "wer": s["wer"], "hit_limit": s.get("hit_limit", 0),
                           "loops": s["loops"], "n": s["n"]})
            print(f"{stage} step {step} (step {offset + step} in all): WER {100 * s['wer']:.1f} %  "
                  f"limit hits {s.get('hit_limit', 0)}/{s['n']}  loops {s['loops']}", flush=True)
        offset += int(kept[-1].stem.split("-")[1])
    return points


@torch.no_grad()
def text_probe(bundle, items, said: list[torch.Tensor], n: int) -> tuple[float, float]:
    """Teacher-forced top-1 accuracy of codebook 0 over the target's frames, with the right text and
    with the target's text swapped for another test sentence's: ``(right, wrong)``.  Each of the
    first ``n`` utterances is the target after a prompt of the next one (cross mode, the prompt
    trimmed at the start to a multiple of G, as decoding does).  An AR that does not read scores
    the same on both.  ``bundle``: the model's :class:`~valle2.checkpoint.ModelBundle` as trained
    (fp32 weights, not synthesis's int8 ones); ``said``: the
    codec's codebook 0 of the first ``n + 2`` utterances."""
    g = bundle.dims.group_size
    texts = [torch.tensor(bundle.tokenizer.encode(u.text)) for u in items[: n + 2]]
    hits = {True: [], False: []}
    for i in range(n):
        (pt, pc), (tt, tc), wt = (texts[i + 1], said[i + 1]), (texts[i], said[i]), texts[i + 2]
        pc = pc[pc.shape[0] % g:]
        for right, text in ((True, tt), (False, wt)):
            ids = torch.cat([pt, text])
            logits, tgt, _ = bundle.ar.teacher_forced(ids[None], torch.tensor([ids.shape[0]]), [torch.cat([pc, tc])])
            first = pc.shape[0] // g   # the first group of the target
            pred, ref = logits[0, first:].argmax(-1), tgt[0, first:]
            keep = (ref >= 0) & (ref < bundle.dims.codebook_size)
            hits[right].append((pred[keep] == ref[keep]).float().mean().item())
    return float(np.mean(hits[True])), float(np.mean(hits[False]))


def code0_distance(vectors: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float:
    """DTW distance between codebook-0 sequences ``a [T1]`` and ``b [T2]`` over the codewords
    ``vectors [codebook_size, D]`` (Euclidean, :func:`librosa.sequence.dtw`), per step of the path;
    ids past the codebook (end of speech, padding) are left out.  0 for a sequence and any
    time-stretched copy of it."""
    import librosa

    a, b = a[a < len(vectors)], b[b < len(vectors)]
    cost, path = librosa.sequence.dtw(X=vectors[a].numpy().T, Y=vectors[b].numpy().T)
    return float(cost[-1, -1] / len(path))


@torch.no_grad()
def code0_reading(model, items, said: list[torch.Tensor], n: int) -> tuple[float, float, float]:
    """The AR's reading with the NAR and the recogniser out of the question: for each of the first
    ``n`` utterances (prompt: the one before it, cross mode, through the gate), codebook 0 is sampled
    free-running as the benchmark samples it, and its DTW distance (:func:`librosa.sequence.dtw`,
    Euclidean, per path step) over the codec's codebook-0 codeword vectors (``code0_vectors``; the
    offline codec's: envelope mel-cepstra) to the voice's own codes of the same sentence and to those
    of the next one is measured (:func:`code0_distance`).  The voices are deterministic synthesizers,
    so an AR that reads comes close to its own sentence.  ``model``: the loaded
    :class:`~valle2.synthesis.VallE2`; ``said``: the codec's codebook 0 of the first ``n + 2``
    utterances.  Returns ``(mean to own, mean to next, share closer to own)``."""
    vectors = model.codec.code0_vectors()
    if vectors is None:
        raise SystemExit(f"codec {model.bundle.codec['name']} has no codebook-0 vectors to measure distances in")
    own, other = [], []
    for i in range(1, n + 1):
        prompt, target = items[i - 1], items[i]
        gen = model.generate_codes([target.text], *prompt.load(), prompt.text, corpus_file=prompt.path,
                                   options=replace(DECODING, match_voice=False, seed=i))   # codebook 0 as the AR gave it
        code0 = gen.codes[0][0][0]
        own.append(code0_distance(vectors, code0, said[i]))
        other.append(code0_distance(vectors, code0, said[i + 1]))
    own_a, other_a = np.array(own), np.array(other)
    return float(own_a.mean()), float(other_a.mean()), float(np.mean(own_a < other_a))


def wer_ratio(valle2: dict, voice: dict) -> float:
    """valle2's WER over the voice's own (inf where the voice's own is 0: a few trials, all recognised)."""
    return valle2["wer"] / voice["wer"] if voice["wer"] > 0 else float("inf")


def curve_figure(points: list[dict], wer_voice: float, title: str):
    """Free-running WER against training steps, with the voice's own WER and the 1.5x target; a
    dotted line where each later training stage begins."""
    from valle2.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot([p["step"] for p in points], [100 * p["wer"] for p in points], "o-", label="valle2, free-running AR (RAS)")
    ax.axhline(100 * wer_voice, color="gray", ls=":", label="the voice's own rendering")
    ax.axhline(150 * wer_voice, color="tab:red", ls="--", label="target: 1.5x the voice's own")
    for before, p in zip(points, points[1:]):
        if p["stage"] != before["stage"]:
            ax.axvline(before["step"], color="black", ls=":", lw=0.8)
            ax.annotate(f"{p['stage']} from here", (before["step"], 5), xytext=(4, 0), textcoords="offset points", fontsize=8)
    ax.set(xlabel="training step", ylabel="pocketsphinx WER %", title=title, ylim=(0, None))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="a `valle2 recipe synthetic --out` folder")
    p.add_argument("--model", type=Path, default=None,
                   help="the model file, or a training checkpoint (default RUN/train/model.pt)")
    p.add_argument("--limit", type=int, default=None, help="test trials (default: every one)")
    p.add_argument("--curve", action="store_true", help="also draw WER against training steps from the kept checkpoints")
    p.add_argument("--curve-limit", type=int, default=40, help="trials per checkpoint on the curve")
    p.add_argument("--curve-every", type=int, default=4, help="use every N-th kept checkpoint")
    p.add_argument("--curve-stages", nargs="+", default=["train"],
                   help="training folders under --run whose checkpoints make the curve, in training order")
    p.add_argument("--curve-only", action="store_true", help="only the curve's points (e.g. while training runs)")
    p.add_argument("--figure", type=Path, default=None, help="where the curve PNG goes (default RUN/bench/curve.png)")
    p.add_argument("--samples", type=int, default=1,
                   help="outputs a trial, the best kept (the paper's best-of-5 reranking: 5); the curve samples once")
    p.add_argument("--probe", type=int, default=30, help="pairs in the teacher-forced right-vs-wrong-text probe")
    p.add_argument("--out", type=Path, default=None,
                   help="where the scored outputs go (default RUN/bench; one folder a model, since a rerun resumes)")
    p.add_argument("--home", type=Path, default=None, help="deployment whose gate the prompts pass (default: a temporary one)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    model_path = args.model or args.run / "train" / "model.pt"
    if not heldout_cuts_path(args.run).is_file() or not (args.curve_only or model_path.is_file()):
        print(f"no synthetic-recipe model at {model_path}: run `valle2 recipe synthetic --out {args.run}` first")
        return 2
    torch.set_num_threads(args.threads)
    home = args.home or Path(tempfile.mkdtemp(prefix="valle2_ar_learns_"))
    if not args.curve_only and "trainer" in torch.load(model_path, map_location="cpu", weights_only=False):   # a checkpoint
        model_path = save_model(Path(home) / "checkpoint_model.pt", bundle_from_checkpoint(model_path), half=True)
    recipe = json.loads((args.run / "recipe.json").read_text())
    voices = [parse_voice(v) for v in [*recipe["voices"], *([recipe["heldout_voice"]] if recipe["heldout_voice"] else [])]]
    items = load_test_utterances(cuts=heldout_cuts_path(args.run))
    from lhotse import CutSet

    attest_test_voices(CutSet.from_file(heldout_cuts_path(args.run)), voices, home)
    gate = Deployment.open(home).gate()
    bench = args.out or args.run / "bench"
    if args.curve:   # first, so that a run during training draws what the checkpoints so far show
        points = curve(args.run, items, bench / "curve", args.curve_limit, args.curve_every, gate, tuple(args.curve_stages))
        (bench / "curve.json").write_text(json.dumps(points, indent=1))
    if args.curve_only:
        return 0
    model = load_model(model_path, gate=gate)
    final = evaluate(model, items, bench / "final", args.limit, gate, True, file_sha256(model_path), args.samples)
    print(f"\n{'voice':<22} {'n':>4} {'voice WER %':>11} {'codec WER %':>11} {'real 0 + NAR WER %':>18} {'valle2 WER %':>12} "
          f"{'ratio':>6} {'limit hits':>10} {'loops':>5} {'SIM':>6}")
    heldout = parse_voice(recipe["heldout_voice"]).speaker if recipe["heldout_voice"] else None
    for speaker, rows in sorted(final["by_voice"].items()):
        v, gt, c, o = rows["valle2"], rows["ground_truth"], rows["codec"], rows["code0_oracle"]
        tag = " (held out)" if speaker == heldout else ""
        print(f"{speaker + tag:<22} {v['n']:>4} {100 * gt['wer']:>11.1f} {100 * c['wer']:>11.1f} {100 * o['wer']:>18.1f} {100 * v['wer']:>12.1f} "
              f"{wer_ratio(v, gt):>6.2f} {v.get('hit_limit', 0):>10} {v['loops']:>5} {v['sim_prompt']:>6.3f}")
    v, gt = final["valle2"], final["ground_truth"]
    ratio = wer_ratio(v, gt)
    voice_marked = marked_wer(items, final["ids"])
    print(f"the voices' own renderings of the same {len(final['ids'])} sentences, watermarked: WER {100 * voice_marked:.1f} % "
          f"(unmarked {100 * gt['wer']:.1f} %; every valle2 output, the codec row's included, carries the mark)")
    voice = [u for u in items if u.speaker == items[0].speaker]
    said = [model.codec.encode(*u.load())[0] for u in voice[: args.probe + 2]]   # codebook 0 of each, once
    right, wrong = text_probe(load_model_bundle(model_path), voice, said, args.probe)   # fp32: synthesis runs int8
    print(f"\nteacher-forced codebook-0 accuracy on the target ({args.probe} pairs of {items[0].speaker}): "
          f"right text {100 * right:.1f} %, another sentence's text {100 * wrong:.1f} % (an AR that does not read scores "
          f"the same on both)")
    own, other, closer = code0_reading(model, voice, said, args.probe)
    print(f"free-running codebook 0 ({args.probe} sentences of {items[0].speaker}), DTW distance over codebook-0 codewords: "
          f"to the voice's own codes of the same sentence {own:.3f}, of the next sentence {other:.3f}; closer to its own "
          f"sentence in {100 * closer:.0f} % (an AR that does not read: about 50 %, equal distances)")
    if args.curve:
        from valle2.plots import save_figure

        figure = args.figure or bench / "curve.png"
        save_figure(curve_figure(points, gt["wer"], f"synthetic task ({', '.join(recipe['voices'])}): held-out sentences"),
                    figure)
        print(f"wrote {figure}")
    hours = (model.bundle.meta.get("train_seconds") or 0.0) / 3600
    print(f"\nsamples={args.samples} wer={100 * v['wer']:.2f} wer_voice={100 * gt['wer']:.2f} wer_voice_marked={100 * voice_marked:.2f} wer_oracle0={100 * final['code0_oracle']['wer']:.2f} loops={v['loops']} "
          f"acc_right_text={100 * right:.1f} acc_wrong_text={100 * wrong:.1f} "
          f"dtw_own={own:.3f} dtw_other={other:.3f} dtw_closer={100 * closer:.0f} "
          f"wer_ratio={ratio:.2f} limit_hits={100 * v.get('hit_limit', 0) / max(1, v['n']):.1f} train_hours={hours:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
