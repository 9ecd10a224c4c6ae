"""The ablations that made VALL-E 2: Repetition Aware Sampling against top-p (the paper's
Figure 4) and the group size G of Grouped Code Modeling (the trend of the paper's Table 1)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..audio import atomic_write_bytes
from ..plots import save_figure
from ..safety import ConsentGate
from ..synthesis import VallE2, load_model
from .report import group_figure, group_table, ras_figure, ras_table, write_report
from ..safety.consent import file_sha256
from .runner import EvalOptions, Evaluation
from .scoring import Scorer, summarize
from .testset import EvalUtterance


def _valle2_row(result) -> dict:
    return result.summary.get("valle2") or summarize([])


def ablate_ras(model: VallE2, items: list[EvalUtterance], out: str | Path, top_ps: list[float], options: EvalOptions,
               scorer: Scorer, gate: ConsentGate, model_id: str = "", progress: bool = True) -> list[dict]:
    """Evaluate ``options.setting`` at each top-p, with plain nucleus sampling and with RAS
    (codebook 0 sampled by the AR, ``code0="ar"`` and ``code_choice="sample"``, as the paper; one sample per utterance, no reference rows, no DNSMOS).  Writes ``results.json``, ``table.md``,
    ``ras_wer_sim_vs_top_p.png`` and ``report.md`` to ``out``; returns one row per run:
    ``{"ras", "top_p", "summary"}`` (the summary counts the utterances that hit the length limit)."""
    out = Path(out)
    rows = []
    for ras in (False, True):
        for p in top_ps:
            o = replace(options, n_samples=1, references=False, dnsmos=False,
                        decoding=replace(options.decoding, top_p=float(p), ras=ras, code_choice="sample", code0="ar"))
            run_dir = out / f"{'ras' if ras else 'nucleus'}_top_p-{p:g}"
            result = Evaluation(model, run_dir, o, scorer, gate, model_id).run(items, progress)
            rows.append({"ras": ras, "top_p": float(p), "summary": _valle2_row(result)})
    table = ras_table(rows)
    atomic_write_bytes(out / "results.json", json.dumps({"setting": options.setting, "rows": rows}, indent=2).encode())
    atomic_write_bytes(out / "table.md", (table + "\n").encode())
    fig_path = out / "ras_wer_sim_vs_top_p.png"
    save_figure(ras_figure(rows), fig_path)
    write_report(out / "report.md", "Repetition Aware Sampling against top-p", [
        (f"WER and SIM ({options.setting})", table),
        ("Curves", f"![WER and SIM against top-p]({fig_path.name})"),
        ("Notes", "One sample per utterance. *length-limit hits* counts utterances whose AR decoding stopped at "
                  "its frame limit instead of emitting EOS (the paper's infinite-loop count).")])
    return rows


def group_config_overrides(prepared: Path, run_dir: Path, group_size: int, steps: int | None) -> list[str]:
    """``section.key=value`` overrides that train group size ``group_size`` on ``prepared`` (a
    prepared folder, or one holding ``train/`` and optionally ``valid/``) into ``run_dir``."""
    train, valid = prepared, None
    if (prepared / "train" / "index.json").is_file():
        train = prepared / "train"
        valid = prepared / "valid" if (prepared / "valid" / "index.json").is_file() else None
    overrides = [f"model.group_size={group_size}", f"run.out_dir={run_dir}", f"data.train={train}",
                 f"data.valid={valid if valid is not None else 'null'}"]
    return overrides + ([f"optim.steps={steps}"] if steps is not None else [])


def ablate_group(prepared: str | Path, config: str | Path, out: str | Path, groups: list[int], steps: int | None,
                 items: list[EvalUtterance], options: EvalOptions, scorer: Scorer, gate: ConsentGate,
                 overrides: list[str] | None = None, progress: bool = True) -> list[dict]:
    """Train one model per group size (``valle2.train.run`` with ``config``, then ``overrides``
    (``section.key=value``), then :func:`group_config_overrides`; a finished
    ``G<g>/train/model.pt`` is reused), evaluate each on ``items`` and write ``results.json``,
    ``table.md``, ``group_wer_sim_time_vs_g.png`` and ``report.md`` to ``out``.  Returns
    ``{"group_size", "model", "summary"}`` per G; the summary has AR wall seconds and ms/frame."""
    from ..config import load_config
    from ..train import run

    out, prepared = Path(out), Path(prepared)
    rows = []
    for g in groups:
        run_dir = out / f"G{g}" / "train"
        model_path = run_dir / "model.pt"
        if not model_path.is_file():
            model_path = run(load_config(config, list(overrides or []) + group_config_overrides(prepared, run_dir, g, steps)))
        result = Evaluation(load_model(model_path, gate=gate), out / f"G{g}" / "eval", options, scorer, gate,
                            file_sha256(model_path)).run(items, progress)
        rows.append({"group_size": g, "model": str(model_path), "summary": _valle2_row(result)})
    table = group_table(rows)
    atomic_write_bytes(out / "results.json", json.dumps({"setting": options.setting, "rows": rows}, indent=2).encode())
    atomic_write_bytes(out / "table.md", (table + "\n").encode())
    fig_path = out / "group_wer_sim_time_vs_g.png"
    save_figure(group_figure(rows), fig_path)
    write_report(out / "report.md", "Group size G of Grouped Code Modeling", [
        (f"WER, SIM, DNSMOS and AR decoding time ({options.setting})", table),
        ("Curves", f"![WER, SIM and AR time against G]({fig_path.name})"),
        ("Notes", f"Each model trained with `{config}` and the same steps; AR time is wall time of the AR pass "
                  f"for {options.n_samples} sample(s) per utterance on this machine.")])
    return rows
