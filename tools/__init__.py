"""Tools that build the shipped assets: the offline codec's quantisers and post-net, the detector.

Run each from the repository root as a module, ``python -m tools.<name> --help``; benchmarks import
from here the same way (``from tools.train_offline_codec import held_out``).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, NoReturn

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""The speech data folder read by default: ``shared/data`` beside the checkout (``../shared/data``
from the repository root).  Its README describes ``transcribed.tsv``, ``untranscribed.tsv`` and
``real-extra/``."""

REAL_EXTRA_LICENCES = {
    "commonvoice": "CC0 1.0 (Mozilla Common Voice English v6.1)",
    "vcc2016": "ODC-By-1.0 (VCC2016 training data; attribution: the Voice Conversion Challenge 2016 organisers)",
}
"""The corpus licence of each ``real-extra/`` source that benchmarks attest as a research corpus
(from that folder's README)."""


def speech_data(folder: Path) -> Path:
    """``folder`` when it holds the data tables; otherwise exit with one line saying what to pass."""
    for table in ("transcribed.tsv", "untranscribed.tsv"):
        if not (Path(folder) / table).is_file():
            raise SystemExit(f"no {table} in '{folder}': pass --data FOLDER, the speech data folder "
                             "(transcribed.tsv and untranscribed.tsv, 16 kHz FLAC; see docs/demo_model.md, 'Data')")
    return Path(folder)


def run_main(main: Callable[[], int | None]) -> NoReturn:
    """Run a benchmark's or tool's ``main`` as its command: a valle2 error (a missing or bad model
    or data file, a bad option) ends it with one line, ``error: ...``, and exit status 2."""
    from valle2.errors import Valle2Error

    try:
        code = main()
    except Valle2Error as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code or 0)
