"""The README's examples run as written.

Every ```python and ```bash block of README.md runs, in the README's order, in one temporary
folder with a new deployment (``$VALLE2_HOME``), as a reader following it would run them: a
python block in a fresh interpreter, a bash block under ``bash -e``.  A block that needs what
this machine may lack says so on the line above it, ``<!-- needs: KIND[, KIND] -->``, with each
KIND one of :data:`NEEDS`; such a block is not run, and the run prints it with its reasons.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

NEEDS = {
    "gpu": "a GPU",
    "download": "downloads from the internet (pip packages, model weights, corpora)",
    "corpus": "a speech corpus on disk (../shared/data, LibriSpeech, files of your own)",
    "consent-recording": "a person's recorded consent (valle2 voice enroll) and the ids it gives (p_..., v_...)",
    "server": "a running `valle2 serve` and its API key",
    "time": "longer than this test's budget (minutes to hours)",
}

FENCE = re.compile(r"^```(\w*)$", re.M)
BLOCK = re.compile(r"(?:^<!-- needs: ([^>]*?) -->\n)?^```(python|bash)\n(.*?)^```$", re.M | re.S)


@dataclass
class Block:
    line: int          # of the opening fence, 1-based
    lang: str          # "python" or "bash"
    code: str
    needs: list[str]   # empty: the block runs


def readme_blocks(text: str) -> list[Block]:
    """The python and bash blocks of ``text``, with the needs their marker names."""
    blocks = []
    for m in BLOCK.finditer(text):
        needs = [n.strip() for n in m.group(1).split(",")] if m.group(1) else []
        blocks.append(Block(text.count("\n", 0, m.start(2)) + 1, m.group(2), m.group(3), needs))
    return blocks


def test_every_block_is_read_and_every_mark_names_a_known_need():
    text = README.read_text()
    blocks = readme_blocks(text)
    opened = [m for m in FENCE.finditer(text) if m.group(1)]
    assert [b.line for b in blocks] == [text.count("\n", 0, m.start()) + 1 for m in opened if m.group(1) in ("python", "bash")]
    unread = {m.group(1) for m in opened} & {"sh", "shell", "console", "zsh", "py", "python3", "pycon"}
    assert not unread, f"commands in blocks marked {unread}: mark them bash or python, which this test runs"
    assert text.count("<!-- needs:") == sum(1 for b in blocks if b.needs), "a needs mark not directly above a block"
    for b in blocks:
        assert set(b.needs) <= set(NEEDS), f"README line {b.line}: unknown need(s) {set(b.needs) - set(NEEDS)}"
    assert sum(1 for b in blocks if not b.needs) >= 5


def test_readme_examples_run_as_written(tmp_path, capsys):
    env = {**os.environ, "VALLE2_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    work = tmp_path / "work"
    work.mkdir()
    ran = 0
    for b in readme_blocks(README.read_text()):
        if b.needs:
            with capsys.disabled():
                print(f"\nREADME line {b.line} ({b.lang}) not run, it needs: " + "; ".join(NEEDS[n] for n in b.needs))
            continue
        argv = [sys.executable, "-c", b.code] if b.lang == "python" else ["bash", "-e", "-o", "pipefail", "-c", b.code]
        proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (f"README line {b.line} ({b.lang}) exited {proc.returncode}:\n{b.code}\n"
                                      f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}")
        ran += 1
    assert ran >= 5
