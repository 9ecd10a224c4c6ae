"""Every benchmark and tool runs from the repository root as ``python -m benchmarks.<name>`` /
``python -m tools.<name>``: its ``--help`` works in a clean checkout, with no data and nothing built;
and a benchmark's own measure is checked on inputs whose answer is known."""
import contextlib
import io
import runpy
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(f"{p.parent.name}.{p.stem}" for folder in ("benchmarks", "tools")
                 for p in (ROOT / folder).glob("*.py") if p.stem != "__init__")


def test_every_benchmark_and_tool_is_listed():
    assert "benchmarks.demo_quality" in MODULES and "tools.train_offline_codec" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_help_runs_as_a_module(name, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    monkeypatch.delitem(sys.modules, name, raising=False)  # imported by another benchmark: run it afresh, as -m does
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        runpy.run_module(name, run_name="__main__", alter_sys=True)
    assert exit_.value.code == 0
    assert out.getvalue().startswith("usage: ")


def test_a_missing_data_folder_is_named_in_one_line(tmp_path, capsys):
    from tools import speech_data

    with pytest.raises(SystemExit, match=rf"no transcribed.tsv in '{tmp_path}': pass --data FOLDER"):
        speech_data(tmp_path)
    (tmp_path / "transcribed.tsv").write_text("id\tpath\tspeaker\tseconds\ttext\n")
    with pytest.raises(SystemExit, match="no untranscribed.tsv"):
        speech_data(tmp_path)
    (tmp_path / "untranscribed.tsv").write_text("id\tpath\tspeaker\tseconds\n")
    assert speech_data(tmp_path) == tmp_path


def test_code0_distance_ignores_pace_and_end_of_speech_and_tells_sentences_apart():
    from benchmarks.ar_learns import code0_distance

    gen = torch.Generator().manual_seed(0)
    vectors = torch.randn(64, 8, generator=gen)
    said = torch.randint(0, 64, (40,), generator=gen)
    slower = torch.cat([said.repeat_interleave(2), torch.tensor([64, 64])])   # half the pace, then end of speech
    other = torch.randint(0, 64, (40,), generator=gen)
    assert code0_distance(vectors, slower, said) == pytest.approx(0.0, abs=1e-6)
    assert code0_distance(vectors, other, said) > 2.0     # two random codewords: about sqrt(2 * 8) = 4 apart


def test_the_learning_curve_continues_steps_across_training_stages(tmp_path, monkeypatch):
    """``ar_learns --curve-stages train joint``: the joint run's step 250 is step 1,000 in all when
    the first stage kept checkpoints to 750; every other checkpoint with ``every=2``; a checkpoint
    scored before is read back, not decoded again; a stage with no checkpoints is named."""
    import json

    from benchmarks import ar_learns

    for stage, steps in (("train", (250, 500, 750)), ("joint", (250, 500))):
        (tmp_path / stage / "checkpoints").mkdir(parents=True)
        for s in steps:
            (tmp_path / stage / "checkpoints" / f"step-{s:08d}.pt").write_bytes(b"")
    decoded = []

    def evaluate(model, items, out, limit, gate, references, model_id):
        decoded.append(model_id)
        summary = {"valle2": {"wer": 1.0 / len(decoded), "hit_limit": 0, "loops": 0, "n": limit}}
        out.mkdir(parents=True)
        (out / "results.json").write_text(json.dumps({"summary": summary}))
        return summary

    monkeypatch.setattr(ar_learns, "evaluate", evaluate)
    monkeypatch.setattr(ar_learns, "bundle_from_checkpoint", lambda path: path)
    monkeypatch.setattr(ar_learns, "save_model", lambda path, bundle, half: path)
    monkeypatch.setattr(ar_learns, "load_model", lambda path, gate: path)
    points = ar_learns.curve(tmp_path, [], tmp_path / "bench", 4, 1, None, ("train", "joint"))
    assert [(p["stage"], p["step"]) for p in points] == [("train", 250), ("train", 500), ("train", 750),
                                                          ("joint", 1000), ("joint", 1250)]
    assert len(decoded) == 5
    again = ar_learns.curve(tmp_path, [], tmp_path / "bench", 4, 2, None, ("train", "joint"))
    assert [(p["step"], p["wer"]) for p in again] == [(500, 0.5), (1250, 0.2)] and len(decoded) == 5
    with pytest.raises(SystemExit, match="no checkpoints in .*nar/checkpoints"):
        ar_learns.curve(tmp_path, [], tmp_path / "bench", 4, 1, None, ("train", "nar"))
