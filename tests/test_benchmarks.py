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
