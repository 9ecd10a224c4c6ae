"""Error messages as the command line shows them: the library's messages name Python arguments
(``prompt_text``, ``voice_id``, ``top_p``); under ``valle2 <command>`` each becomes the flag that
sets it (``--prompt-text``, ``--voice``, ``--top-p``).  :data:`FLAGS` maps them; every
:class:`~valle2.decoding.DecodingOptions` field with an underscore is its generated flag."""
from __future__ import annotations

import dataclasses
import re

from ..decoding import DecodingOptions, flag

FLAGS = {
    "prompt_text": "--prompt-text",
    "prompt_wav": "--prompt (or cut it with --prompt-seconds)",
    "corpus_file": "--prompt",
    "voice_id": "--voice",
    **{f.name: flag(f.name) for f in dataclasses.fields(DecodingOptions) if "_" in f.name},
}
_NAME = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, sorted(FLAGS, key=len, reverse=True))) + r")(?![\w-])")


def cli_message(message: str) -> str:
    """``message`` with each Python argument name of :data:`FLAGS` replaced by its flag."""
    return _NAME.sub(lambda m: FLAGS[m.group(1)], message)
