"""Every benchmark and tool runs from the repository root as ``python -m benchmarks.<name>`` /
``python -m tools.<name>``: its ``--help`` works in a clean checkout, with no data and nothing built."""
import contextlib
import io
import runpy
import sys
from pathlib import Path

import pytest

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
