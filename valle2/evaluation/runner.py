"""Run one evaluation setting: synthesize every trial, score it, keep per-utterance records.

Layout of an output folder (one per setting)::

    plan.json            the options the records were made with (a rerun must match)
    records/<id>.json    one per trial, written atomically; a rerun skips trials that have one
    audio/<id>.wav       the chosen (watermarked) output
    audio/<id>.codec.wav the watermarked codec resynthesis of the target (reference row)
    audio/<id>.oracle.wav the watermarked decoding of the target's own codebook 0 through the NAR
                         (with ``oracle_code0``)
    results.json         corpus summaries of the rows "valle2", "ground_truth", "codec", "code0_oracle"

Nothing unwatermarked that decodes to speech is written: no codes are kept (they would decode to
the output without its watermark); the report's attention figure re-encodes the watermarked
output (:func:`valle2.evaluation.report.trial_figures`).

Each trial: the prompt passes the consent gate (research attestation of its source file) in
:meth:`valle2.synthesis.VallE2.generate_codes`, the model samples ``n_samples`` outputs in one batch, each is scored (WER against the target text,
SIM against the prompt); the best by ``(min(SIM, 0.3), -WER)`` is watermarked by the gate and
scored again, with DNSMOS, SIM against the original, as it is written.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..audio import atomic_write_bytes, save_audio
from ..decoding import DecodingOptions
from ..errors import ConsentError, Valle2Error
from ..safety import ConsentGate
from ..synthesis import VallE2
from .scoring import Scorer, best_of, summarize
from .testset import SETTINGS, EvalUtterance, Trial, build_trials, prompt_audio, select_test_set

ROWS = ("ground_truth", "codec", "code0_oracle", "valle2")


@dataclass
class EvalOptions:
    """What one evaluation run does.

    ``min_seconds``/``max_seconds`` is the test-set rule (the paper's 4-10 s); ``limit`` keeps
    the first trials only; ``references`` adds the ground-truth and codec-resynthesis rows;
    ``oracle_code0`` adds the row "code0_oracle": the target's own codebook 0 (a perfect AR) through
    the NAR and the codec as synthesis decodes (:meth:`VallE2.nar_codes`), the share of the error
    that is not the AR's; ``dnsmos`` scores the final outputs with DNSMOS P.808 (slow on CPU)."""

    setting: str = "prefix3"
    n_samples: int = 1
    min_seconds: float = 4.0
    max_seconds: float = 10.0
    prefix_seconds: float = 3.0
    limit: int | None = None
    references: bool = True
    oracle_code0: bool = False
    dnsmos: bool = True
    decoding: DecodingOptions = field(default_factory=DecodingOptions)

    def __post_init__(self):
        if self.setting not in SETTINGS:
            raise Valle2Error(f"unknown setting '{self.setting}': choose one of {', '.join(SETTINGS)}")
        if self.n_samples < 1:
            raise Valle2Error(f"n_samples must be at least 1, got {self.n_samples}")

    def plan(self) -> dict:
        """The options that change a record (``limit`` does not)."""
        d = asdict(self)
        d.pop("limit")
        return d


@dataclass
class EvalResult:
    """Per-trial records and the corpus summary of each row."""

    records: list[dict]
    summary: dict[str, dict]
    refused: int
    failed: int


def _write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def _check_plan(out: Path, plan: dict) -> None:
    path = out / "plan.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != plan:
            diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
            raise Valle2Error(f"'{out}' holds records made with other options ({', '.join(diff)} differ): "
                              "use another output folder")
    else:
        _write_json(path, plan)


def select_trials(items: list[EvalUtterance], options: EvalOptions) -> list[Trial]:
    """The trials of the test set drawn from ``items``: the duration rule, then the setting's
    pairing, then ``options.limit``."""
    o = options
    trials = build_trials(select_test_set(items, o.min_seconds, o.max_seconds), o.setting, o.prefix_seconds)
    return trials[: o.limit] if o.limit is not None else trials


class Evaluation:
    """One setting's evaluation of ``model`` into ``out``, through ``gate``, scored by ``scorer``."""

    def __init__(self, model: VallE2, out: str | Path, options: EvalOptions, scorer: Scorer, gate: ConsentGate,
                 model_id: str = ""):
        if gate is not model.gate:  # the trial's authorization comes from the model's gate and goes back to it
            raise Valle2Error("the evaluation's gate must be the model's: load the model with load_model(..., gate=gate)")
        self.model, self.out, self.options, self.scorer, self.gate = model, Path(out), options, scorer, gate
        self.plan = {**options.plan(), "model": model_id, "asr": scorer.asr.name, "sim": scorer.encoder.name}

    def run(self, items: list[EvalUtterance], progress: bool = True) -> EvalResult:
        """Evaluate every trial (skipping those already recorded) and write ``results.json``."""
        self.out.mkdir(parents=True, exist_ok=True)
        _check_plan(self.out, self.plan)
        records = []
        for trial in tqdm(select_trials(items, self.options), desc=f"evaluate {self.options.setting}", unit="utt", disable=not progress):
            path = self.out / "records" / f"{trial.id}.json"
            if path.is_file():
                records.append(json.loads(path.read_text()))
                continue
            try:
                record = self.run_trial(trial)
            except ConsentError as exc:
                record = {"id": trial.id, "refused": str(exc)}
            except Valle2Error as exc:  # a bad utterance (unreadable audio, unspeakable text) must not stop the run
                records.append({"id": trial.id, "error": str(exc)})
                continue
            _write_json(path, record)
            records.append(record)
        done = [r for r in records if "rows" in r]
        summary = {row: summarize([r["rows"][row] for r in done if row in r["rows"]])
                   for row in ROWS if any(row in r["rows"] for r in done)}
        result = EvalResult(records, summary, sum("refused" in r for r in records), sum("error" in r for r in records))
        _write_json(self.out / "results.json", {"setting": self.options.setting, "plan": self.plan, "summary": summary,
                                                "trials": len(records), "refused": result.refused, "failed": result.failed})
        return result

    def run_trial(self, trial: Trial) -> dict:
        """Synthesize, rerank, watermark and score one trial; returns its record."""
        model, o, sc = self.model, self.options, self.scorer
        text = trial.target.text
        p_wav, p_sr, p_text, p_source = prompt_audio(trial)
        if p_source == "asr":
            p_text = sc.asr.transcribe(p_wav, p_sr)
        dec = model.generate_codes([text], p_wav, p_sr, p_text, corpus_file=trial.prompt.path, mode=trial.mode,
                                   options=o.decoding, n_samples=o.n_samples,
                                   n_outputs=2 if o.oracle_code0 else 1)  # only the best is kept (and the oracle's)
        target, t_sr = trial.target.load()
        p_emb, t_emb = sc.embed(p_wav, p_sr), sc.embed(target, t_sr)
        codes, hit_limit = dec.codes[0], dec.hit_limit[0]
        sr = model.sample_rate
        wavs = [model.waveform(dec, c, trial.mode == "continuation") for c in codes]
        candidates = []
        if o.n_samples > 1:
            for w in wavs:
                s = sc.score(w, sr, text, p_emb, None)
                candidates.append({"wer": s.wer, "sim_prompt": s.sim_prompt, "hypothesis": s.hypothesis})
        best = best_of([(c["sim_prompt"], c["wer"]) for c in candidates]) if candidates else 0
        final = self.gate.finalize(wavs[best], sr, dec.authorization, text)
        save_audio(self.out / "audio" / f"{trial.id}.wav", final, sr)
        row = sc.score(final, sr, text, p_emb, t_emb, with_mos=o.dnsmos).to_dict()
        row.update(hit_limit=hit_limit[best], ar_seconds=dec.ar_seconds, nar_seconds=dec.nar_seconds,
                   frames=int(codes[best].shape[1]) * o.n_samples, seconds=final.size / sr)
        rows = {"valle2": row}
        target_codes = model.codec.encode(target, t_sr) if o.references or o.oracle_code0 else None   # [n_q, T]
        if o.references:
            rows["ground_truth"] = sc.score(target, t_sr, text, p_emb, None, with_mos=o.dnsmos).to_dict()
            rows["codec"] = self._codec_row(trial, target, t_sr, target_codes, p_emb, t_emb)
        if o.oracle_code0:
            rows["code0_oracle"] = self._oracle_row(trial, dec, p_text, target_codes, p_emb, t_emb)
        return {"id": trial.id, "setting": trial.setting, "mode": trial.mode, "text": text, "prompt_id": trial.prompt.id,
                "prompt_seconds": round(p_wav.size / p_sr, 3), "prompt_text": p_text, "prompt_text_source": p_source,
                "best": best, "candidates": candidates, "hit_limit_all": hit_limit, "rows": rows}

    def _oracle_row(self, trial: Trial, dec, p_text: str | None, target_codes: torch.Tensor, p_emb, t_emb) -> dict:
        """The "code0_oracle" row: the target's own codebook 0 (of ``target_codes [n_q, T]``) through the
        NAR (:meth:`VallE2.nar_codes`), decoded, watermarked under the trial's authorization and scored."""
        model, text = self.model, trial.target.text
        codes = model.nar_codes(dec, text, p_text, target_codes[0], trial.mode, self.options.decoding)
        wav = self.gate.finalize(model.waveform(dec, codes, trial.mode == "continuation"), model.sample_rate,
                                 dec.authorization, text)
        save_audio(self.out / "audio" / f"{trial.id}.oracle.wav", wav, model.sample_rate)
        return self.scorer.score(wav, model.sample_rate, text, p_emb, t_emb, with_mos=self.options.dnsmos).to_dict()

    def _codec_row(self, trial: Trial, target: np.ndarray, t_sr: int, target_codes: torch.Tensor, p_emb, t_emb) -> dict:
        """The codec-resynthesis reference row: the target's codes ``[n_q, T]`` decoded, watermarked, scored."""
        auth = self.gate.authorize(None, target, t_sr, corpus_file=trial.target.path)
        codec = self.model.codec
        resyn = codec.decode(target_codes).numpy()
        resyn = self.gate.finalize(resyn, codec.sample_rate, auth, trial.target.text)
        save_audio(self.out / "audio" / f"{trial.id}.codec.wav", resyn, codec.sample_rate)
        return self.scorer.score(resyn, codec.sample_rate, trial.target.text, p_emb, t_emb,
                                 with_mos=self.options.dnsmos).to_dict()
