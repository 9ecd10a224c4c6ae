"""Tables, figures and the Markdown report of evaluations and ablations."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..audio import atomic_write_bytes, load_audio
from ..plots import _pyplot, save_figure, spectrogram_figure
from ..synthesis import VallE2
from .attention import attention_figure, audio_text_attention
from .testset import Trial, prompt_audio

# The paper's reference numbers: VALL-E 2 (Chen et al., 2024, arXiv:2406.05370), Table 1,
# LibriSpeech test-clean, 4-10 s utterances, per setting and row.  They could not be checked
# against the paper where this was written (no access to it), and a wrong number is worse than
# none, so every value is None and prints as "n/a".  Fill them in from the paper's Table 1.
PAPER_TABLE1: dict[tuple[str, str], dict[str, float | None]] = {
    (setting, row): {"wer": None, "sim": None, "dnsmos": None}
    for setting in ("prefix3", "reference") for row in ("ground_truth", "codec", "valle2")
}
ROW_NAMES = {"ground_truth": "Ground truth", "codec": "Codec resynthesis", "code0_oracle": "Real codebook 0 + NAR",
             "valle2": "valle2 (this model)"}


def _fmt(value, digits: int = 3, scale: float = 1.0) -> str:
    return "n/a" if value is None else f"{value * scale:.{digits}f}"


def results_table(summaries: dict[str, dict[str, dict]]) -> str:
    """Markdown table of ``{setting: {row: summary}}`` (see :func:`scoring.summarize`) beside the
    paper's Table 1 numbers.  WER in percent."""
    lines = ["| setting | system | n | WER % | SIM to prompt | SIM to original | DNSMOS | length-limit hits "
             "| paper WER % | paper SIM | paper DNSMOS |", "|" + "---|" * 11]
    for setting, rows in summaries.items():
        for row, s in rows.items():
            paper = PAPER_TABLE1.get((setting, row), {})
            lines.append(f"| {setting} | {ROW_NAMES.get(row, row)} | {s['n']} | {_fmt(s['wer'], 2, 100)} | "
                         f"{_fmt(s['sim_prompt'])} | {_fmt(s['sim_original'])} | {_fmt(s['dnsmos'], 2)} | "
                         f"{s.get('hit_limit', '')} | {_fmt(paper.get('wer'), 2)} | {_fmt(paper.get('sim'))} | "
                         f"{_fmt(paper.get('dnsmos'), 2)} |")
    return "\n".join(lines)


def ras_table(rows: list[dict]) -> str:
    """Markdown table of the RAS ablation: one row per ``{ras, top_p, summary}``."""
    lines = ["| decoding | top-p | n | WER % | SIM to prompt | SIM to original | length-limit hits | repetition loops |",
             "|" + "---|" * 8]
    for r in rows:
        s = r["summary"]
        lines.append(f"| {'RAS' if r['ras'] else 'nucleus'} | {r['top_p']:g} | {s['n']} | {_fmt(s['wer'], 2, 100)} | "
                     f"{_fmt(s['sim_prompt'])} | {_fmt(s['sim_original'])} | {s.get('hit_limit', 0)} | {s.get('loops', 0)} |")
    return "\n".join(lines)


def ras_figure(rows: list[dict]):
    """WER, SIM and the share of outputs that loop (a repetition loop or the length limit) against
    top-p, with and without RAS (the paper's Figure 4).  Returns a Figure."""
    plt = _pyplot()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(14, 3.6))
    for ras, style in ((False, "o--"), (True, "s-")):
        pts = sorted((r["top_p"], r["summary"]) for r in rows if r["ras"] == ras)
        if not pts:
            continue
        label = "RAS" if ras else "nucleus sampling"
        a.plot([p for p, _ in pts], [100 * (s["wer"] or 0) for _, s in pts], style, label=label)
        b.plot([p for p, _ in pts], [s["sim_prompt"] or 0 for _, s in pts], style, label=label)
        c.plot([p for p, _ in pts], [100 * (s.get("loops", 0) + s.get("hit_limit", 0)) / max(1, s["n"]) for _, s in pts],
               style, label=label)
    a.set(xlabel="top-p", ylabel="WER %", title="WER vs top-p")
    b.set(xlabel="top-p", ylabel="SIM to prompt", title="SIM vs top-p")
    c.set(xlabel="top-p", ylabel="% of outputs", title="repetition loops + length-limit hits")
    for ax in (a, b, c):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def group_table(rows: list[dict]) -> str:
    """Markdown table of the group-size ablation: one row per ``{group_size, summary}``."""
    lines = ["| G | n | WER % | SIM to prompt | SIM to original | DNSMOS | length-limit hits | AR s / utterance "
             "| AR ms / frame |", "|" + "---|" * 9]
    for r in rows:
        s = r["summary"]
        per_utt = s.get("ar_seconds", 0.0) / s["n"] if s.get("n") else None
        lines.append(f"| {r['group_size']} | {s['n']} | {_fmt(s['wer'], 2, 100)} | {_fmt(s['sim_prompt'])} | "
                     f"{_fmt(s['sim_original'])} | {_fmt(s['dnsmos'], 2)} | {s.get('hit_limit', 0)} | {_fmt(per_utt, 2)} | "
                     f"{_fmt(s.get('ar_ms_per_frame'), 2)} |")
    return "\n".join(lines)


def group_figure(rows: list[dict]):
    """WER, SIM to prompt and AR decoding time per frame against G (the trend of the paper's
    Table 1), one point per ``{group_size, summary}``.  Returns a Figure."""
    plt = _pyplot()
    pts = sorted((r["group_size"], r["summary"]) for r in rows)
    gs = [g for g, _ in pts]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key, scale, label in ((axes[0], "wer", 100, "WER %"), (axes[1], "sim_prompt", 1, "SIM to prompt"),
                                  (axes[2], "ar_ms_per_frame", 1, "AR ms / frame")):
        ax.plot(gs, [np.nan if s.get(key) is None else s[key] * scale for _, s in pts], "o-")
        ax.set(xscale="log", xlabel="group size G", ylabel=label, title=f"{label} vs G")
        ax.set_xticks(gs, [str(g) for g in gs])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def trial_figures(model: VallE2, trial: Trial, setting_dir: Path, fig_dir: Path, layer: int = -1) -> list[Path]:
    """Spectrograms (prompt, output, reference) and the AR's audio-over-text attention in
    ``layer`` (default: the last) for one recorded trial.  Returns the PNG paths."""
    record = json.loads((setting_dir / "records" / f"{trial.id}.json").read_text())
    p_wav, p_sr, _, _ = prompt_audio(trial)
    out_wav, out_sr = load_audio(setting_dir / "audio" / f"{trial.id}.wav")
    ref_wav, ref_sr = trial.target.load()
    spec = spectrogram_figure({f"prompt ({trial.prompt.id})": (p_wav, p_sr), "output": (out_wav, out_sr),
                               f"reference ({trial.target.id})": (ref_wav, ref_sr)},
                              title=f"{trial.setting}: {trial.target.text[:80]}")
    spec_path = fig_dir / f"{trial.setting}_{trial.id}_spectrogram.png"
    save_figure(spec, spec_path)
    # No codes are kept (they would decode to unwatermarked speech): codebook 0 of the prompt, and
    # of the written (watermarked) output re-encoded by the codec; in continuation mode the output
    # starts with the prompt's resynthesis, which is cut off.
    prompt0 = model.encode_prompt(p_wav, p_sr)[0]
    out0 = model.codec.encode(out_wav, out_sr)[0]
    if record["mode"] == "continuation":
        out0 = out0[prompt0.shape[0]:]
    ids = model.text_ids(record["text"], record["prompt_text"], record["mode"])[0]
    layer = layer % len(model.ar.backbone.blocks)
    g = model.ar.dims.group_size
    prompt0 = prompt0[prompt0.shape[0] % g:]  # the groups decoding saw: prompt trimmed at the start,
    codes0 = torch.cat([prompt0, out0[: out0.shape[0] - out0.shape[0] % g]])  # no partial last group
    att = audio_text_attention(model.ar, ids, codes0, layer)
    n_prompt_groups = prompt0.shape[0] // g
    fig = attention_figure(att, n_prompt_groups, f"AR layer {layer}, mean over heads: audio queries over text keys ({trial.id})")
    att_path = fig_dir / f"{trial.setting}_{trial.id}_attention.png"
    save_figure(fig, att_path)
    return [spec_path, att_path]


def write_report(path: Path, title: str, sections: list[tuple[str, str]]) -> Path:
    """Write ``# title`` then ``## heading\\n\\nbody`` per section to ``path`` (atomically)."""
    text = f"# {title}\n\n" + "\n\n".join(f"## {h}\n\n{b.strip()}" for h, b in sections) + "\n"
    return atomic_write_bytes(path, text.encode())


def image_links(paths: list[Path], base: Path) -> str:
    """Markdown image links to ``paths``, relative to the report's folder ``base``."""
    return "\n\n".join(f"![{p.stem}]({p.relative_to(base).as_posix()})" for p in paths)


def png_ok(path: Path) -> bool:
    """Whether ``path`` is a PNG that decodes (signature and a non-empty image)."""
    data = Path(path).read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return False
    img = _pyplot().imread(path)
    return img.ndim == 3 and min(img.shape[:2]) > 0 and bool(np.isfinite(img).all())
