"""Text + a short prompt recording -> speech in the prompt's voice.

Two prompting modes, as in the paper's evaluation:

- ``"cross"`` (reference utterance as prompt): the prompt is a whole utterance with its
  transcript ``prompt_text``; the model reads ``prompt_text + text`` and continues the prompt's
  audio with ``text``.
- ``"continuation"`` (3 s prefix as prompt): ``text`` is the transcript of a whole utterance and
  the prompt is its first seconds; the model continues it.  ``prompt_text`` is not needed.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import ModelBundle, load_model_bundle
from .codec import Codec, load_codec
from .decoding import DecodingOptions, ar_generate, frame_limit, nar_generate
from .errors import ModelError, TextError
from .audio import validate_waveform

MODES = ("cross", "continuation")
MAX_PROMPT_SECONDS = 30.0


class VallE2:
    """A loaded model with its codec and text tokenizer."""

    def __init__(self, bundle: ModelBundle, codec: Codec):
        want = bundle.codec
        have = codec.describe()
        for key in ("name", "n_codebooks", "codebook_size", "frame_rate"):
            if want.get(key) != have[key]:
                raise ModelError(f"model was trained with codec {want}, but codec {have} was given ({key} differs)")
        self.bundle, self.codec = bundle, codec
        self.ar, self.nar, self.tokenizer = bundle.ar, bundle.nar, bundle.tokenizer

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    def encode_prompt(self, wav, sr: int) -> torch.Tensor:
        """Prompt waveform ``[samples]`` -> codes ``LongTensor[n_codebooks, P]``."""
        return self.codec.encode(validate_waveform(wav, sr, max_seconds=MAX_PROMPT_SECONDS), sr)

    def _text_ids(self, text: str, prompt_text: str | None, mode: str) -> tuple[torch.Tensor, int, int]:
        """Token ids of what the model reads, with (#target tokens, #prompt tokens)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got '{mode}'")
        if mode == "continuation":
            ids = self.tokenizer.encode(text)
            return torch.tensor(ids), len(ids), 0
        if not prompt_text or not prompt_text.strip():
            raise TextError("cross-sentence prompting needs the prompt's transcript (prompt_text)")
        p_ids = self.tokenizer.encode(prompt_text)
        t_ids = self.tokenizer.encode(text)
        return torch.tensor(p_ids + t_ids), len(t_ids), len(p_ids)

    def generate_codes(self, texts: list[str], prompt_codes: torch.Tensor, prompt_text: str | None = None,
                       mode: str = "cross", options: DecodingOptions | None = None, n_samples: int = 1,
                       progress: bool = False) -> list[list[torch.Tensor]]:
        """Codes ``[n_codebooks, T]`` for each text, ``n_samples`` samples each, in one batch.

        prompt_codes ``[n_codebooks, P]``.  Returns ``out[i][s]`` for text i, sample s (prompt
        excluded).
        """
        options = options or DecodingOptions()
        ids, limits = [], []
        for text in texts:
            t, n_target, n_prompt = self._text_ids(text, prompt_text, mode)
            p = prompt_codes.shape[1]
            fpt = p / n_prompt if n_prompt else self.bundle.frames_per_token
            limit = frame_limit(n_target, fpt, self.codec.frame_rate, options)
            if mode == "continuation":
                limit = max(1, limit - p)
            ids += [t] * n_samples
            limits += [limit] * n_samples
        prompts0 = [prompt_codes[0]] * len(ids)
        bar = tqdm(total=max(limits), desc="AR decoding", unit="frame", disable=not progress, leave=False)
        g = self.bundle.dims.group_size
        res = ar_generate(self.ar, ids, prompts0, limits, options, progress=lambda s: bar.update(min(g, bar.total - bar.n)))
        bar.close()
        codes0 = [c if c.numel() else prompt_codes.new_zeros(1) for c in res.codes]
        full = nar_generate(self.nar, ids, [prompt_codes.T] * len(ids), codes0)
        return [full[i * n_samples:(i + 1) * n_samples] for i in range(len(texts))]

    def synthesize(self, text: str, prompt_wav, prompt_sr: int, prompt_text: str | None = None, mode: str = "cross",
                   options: DecodingOptions | None = None, include_prompt: bool = False,
                   progress: bool = False) -> tuple[np.ndarray, int]:
        """Speak ``text`` in the prompt's voice.  Returns ``(wav float32 [samples], sample_rate)``.

        ``include_prompt`` prepends the prompt's own resynthesis (how the paper scores the
        continuation setting).
        """
        prompt_codes = self.encode_prompt(prompt_wav, prompt_sr)
        codes = self.generate_codes([text], prompt_codes, prompt_text, mode, options, 1, progress)[0][0]
        if include_prompt:
            codes = torch.cat([prompt_codes, codes], dim=1)
        return self.codec.decode(codes).numpy(), self.sample_rate


def load_model(path, codec: Codec | None = None, device: str = "cpu") -> VallE2:
    """Load a valle2 model file; the codec named in it is loaded unless one is given."""
    bundle = load_model_bundle(path, device)
    return VallE2(bundle, codec if codec is not None else load_codec(bundle.codec["name"], **bundle.codec.get("options", {})))


__all__ = ["VallE2", "load_model", "DecodingOptions", "MODES"]
