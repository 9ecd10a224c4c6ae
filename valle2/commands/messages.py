"""Error messages as the command line shows them: the library's messages name Python arguments
(``prompt_text``, ``voice_id``, ``top_p``); under ``valle2 <command>`` each becomes the flag that
sets it (``--prompt-text``, ``--voice``, ``--top-p``).  :data:`FLAGS` maps them anywhere (every
:class:`~valle2.decoding.DecodingOptions` field with an underscore is its generated flag); a
one-word name (``pace``, ``speed``) only where it opens the message as ``NAME must be``, so that
plain words stay words; :data:`PHRASES` replaces advice that only a Python caller can follow."""
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
WORDS = {f.name: flag(f.name) for f in dataclasses.fields(DecodingOptions)} | {"speed": "--speed", "mode": "--mode"}
PHRASES = {"split it with split_sentences()": "split it into sentences, and synthesize each"}
_NAME = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, sorted(FLAGS, key=len, reverse=True))) + r")(?![\w-])")


def cli_message(message: str) -> str:
    """``message`` with each Python argument name of :data:`FLAGS` replaced by its flag, a
    leading ``NAME must be`` of :data:`WORDS` by the flag's, and each of :data:`PHRASES`."""
    for phrase, said in PHRASES.items():
        message = message.replace(phrase, said)
    first = re.match(r"(\w+) must be\b", message)
    if first and first.group(1) in WORDS:
        message = WORDS[first.group(1)] + message[len(first.group(1)):]
    return _NAME.sub(lambda m: FLAGS[m.group(1)], message)
