"""Text + a short prompt recording -> speech in the prompt's voice.

Two prompting modes, as in the paper's evaluation:

- ``"cross"`` (reference utterance as prompt): the prompt is a whole utterance with its
  transcript ``prompt_text``; the model reads ``prompt_text + text`` and continues the prompt's
  audio with ``text``.
- ``"continuation"`` (3 s prefix as prompt): ``text`` is the transcript of a whole utterance and
  the prompt is its first seconds; the model continues it.  ``prompt_text`` is not needed.

Every synthesis passes the deployment's consent gate (:mod:`valle2.safety`): the prompt must be
covered by a consent record (``voice_id``) or come from a file of an attested research corpus
(``corpus_file``; a shipped voice's name as ``voice_id``, ``"demo"``, stands for its attested
clip, which is also the prompt when none is given: :mod:`valle2.names`), its speaker must match
as a whole and in every 1.6 s window, and every output is peak-limited to -1 dBFS, watermarked
and logged before it is returned.  The gate binds these
methods; :meth:`VallE2.generate_codes` authorizes the prompt and hands back codes with the
authorization that ``gate.finalize`` needs for each output decoded from them.  The networks and
``codec.decode`` themselves are not gated (README, "What the gate does not cover").
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from . import code0
from .audio import AudioFile, change_speed, check_speed, validate_waveform
from .checkpoint import ModelBundle, load_model_bundle
from .code0.adapter import VoiceAdapter
from .codec import Codec, load_codec
from .decoding import DecodingOptions, frame_bounds, nar_generate
from .errors import AudioError, ConsentError, DecodingError, ModelError, TextError
from .memo import ContentMemo
from .names import is_shipped_voice, model_file, shipped_voice
from .safety import Authorization, ConsentGate
from .text import split_sentences

MODES = ("cross", "continuation")
SENTENCE_PAUSE_SECONDS = 0.25  # the silence between the sentences of one text (VallE2.synthesize)


@dataclass
class Generation:
    """What :meth:`VallE2.generate_codes` returns.

    ``codes[i][s]``: LongTensor ``[n_codebooks, T]`` of text i, sample s (prompt excluded; the
    codebooks the NAR left out completed by the codec; voice matched to the prompt unless the
    options say otherwise); ``hit_limit[i][s]``: decoding stopped at its length limit, not at EOS;
    wall seconds of each model; ``prompt_codes [n_codebooks, P]``; ``source``: where codebook 0
    came from (``"ar"``, ``"nar"``, ``"table"``); ``authorization``: the gate's, which
    ``gate.finalize`` takes for each output decoded from these codes."""

    codes: list[list[torch.Tensor]]
    hit_limit: list[list[bool]]
    ar_seconds: float
    nar_seconds: float
    prompt_codes: torch.Tensor
    source: str
    authorization: Authorization


MAX_PROMPT_SECONDS = 30.0
# A continuation prompt may last at most this share of its whole text's expected length.  Chosen on
# CMU ARCTIC (dev, 2,264 utterances): it refuses 88.5 % of whole utterances given as their own
# prompt, and 1.2 % of 3 s prefixes of the 169 utterances of 4 s or more; held out, 98.3 % of cathy's
# whole utterances and all 100 of Common Voice's, but also 25 % of Common Voice's 3 s prefixes, whose
# leading silence counts.  Reproduce with: python -m benchmarks.continuation_room
CONTINUATION_MAX_SHARE = 0.85


def nar_codebooks(codec: Codec, dims, requested: int | None = None) -> int:
    """How many codebooks the NAR fills (codebook 0 counted) before ``codec.complete``: ``requested``
    (``DecodingOptions.nar_codebooks``), by default the codec's ``predicted_codebooks`` as far as
    the NAR (``dims.nar_predicts``) goes.  DecodingError outside what the codec completes from and
    what the NAR predicts."""
    n = requested or min(codec.predicted_codebooks, dims.nar_predicts)
    if not codec.required_codebooks <= n <= dims.nar_predicts:
        raise DecodingError(f"nar_codebooks must be between {codec.required_codebooks} (what codec '{codec.name}' "
                           f"completes from) and {dims.nar_predicts} (what the NAR predicts), got {n}")
    return n


class VallE2:
    """A loaded model with its codec and text tokenizer."""

    def __init__(self, bundle: ModelBundle, codec: Codec, gate: ConsentGate):
        want = bundle.codec
        have = codec.describe()
        for key in ("name", "n_codebooks", "codebook_size", "frame_rate", "fingerprint"):
            if want.get(key, "") != have[key]:
                raise ModelError(f"model was trained with codec {want}, but codec {have} was given ({key} differs)")
        if codec.required_codebooks > bundle.dims.nar_predicts:
            raise ModelError(f"codec '{codec.name}' needs {codec.required_codebooks} codebooks predicted, the model's "
                             f"NAR predicts {bundle.dims.nar_predicts}")
        self.bundle, self.codec, self.gate = bundle, codec, gate
        self.ar, self.nar, self.tokenizer = bundle.ar, bundle.nar, bundle.tokenizer
        self._memo = ContentMemo(16)  # codes of recent prompts: a served voice is encoded once

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    def encode_prompt(self, wav, sr: int) -> torch.Tensor:
        """Prompt waveform ``[samples]`` -> codes ``LongTensor[n_codebooks, P]`` (memoised per content)."""
        return self._memo(self.codec.encode, validate_waveform(wav, sr, max_seconds=MAX_PROMPT_SECONDS), sr).clone()

    def text_ids(self, text: str, prompt_text: str | None, mode: str) -> tuple[torch.Tensor, int, int]:
        """Token ids ``[L]`` of what the model reads for ``text`` (in "cross" mode the prompt's
        transcript ``prompt_text`` first), with (#target tokens, #prompt tokens); TextError or
        DecodingError naming what is wrong."""
        if mode not in MODES:
            raise DecodingError(f"mode must be one of {MODES}, got '{mode}'")
        if mode == "continuation":
            ids = self.tokenizer.encode(text)
            return torch.tensor(ids), len(ids), 0
        if not prompt_text or not prompt_text.strip():
            raise TextError("cross-sentence prompting needs the prompt's transcript (prompt_text)")
        p_ids = self.tokenizer.encode(prompt_text)
        t_ids = self.tokenizer.encode(text)
        return torch.tensor(p_ids + t_ids), len(t_ids), len(p_ids)

    @property
    def code0_source(self) -> str:
        """Where this model's codebook 0 comes from, as its file records it: ``"ar"`` (the AR, as
        the paper), ``"nar"`` (the NAR's stage 0) or ``"table"`` (the context table)."""
        return self.bundle.code0_source

    def voice_adapter(self, voice_id: str | None) -> VoiceAdapter | None:
        """Voice ``voice_id``'s adapter (``valle2 voice adapt``, :mod:`valle2.adapt`) from the gate's
        registry, its signature checked and, for an enrolled voice, its record verified now; None
        when the voice has none."""
        if voice_id is None or is_shipped_voice(voice_id):
            return None
        stored = self.gate.registry.adapter(voice_id)
        return VoiceAdapter.from_bytes(stored[1]) if stored is not None else None

    def consent_source(self, prompt_wav, prompt_sr: int | None, prompt_text: str | None, voice_id: str | None,
                       corpus_file, mode: str) -> tuple:
        """``(prompt_wav, prompt_sr, prompt_text, voice_id, corpus_file)`` as the gate takes them.

        A shipped voice's name as ``voice_id`` (:func:`valle2.names.shipped_voice`) becomes its
        attested clip as ``corpus_file``, its attestation imported into the gate's registry once
        its signature checks; with no ``prompt_wav`` the clip is the prompt and, in "cross" mode,
        its transcript ``prompt_text``.  A given prompt must then match the clip's speaker.  An
        adapted voice (:meth:`voice_adapter`) brings its chosen recording the same way (a research
        voice's ``r_...`` id becomes that attested file as ``corpus_file``).
        Anything else passes through unchanged; AudioError when no prompt is given and no
        shipped or adapted voice named."""
        adapter = self.voice_adapter(voice_id)
        if adapter is not None:
            if corpus_file is not None:
                raise ConsentError(f"voice_id={voice_id!r} is an adapted voice: it brings its own recording; "
                                   "leave corpus_file out")
            clip = AudioFile(adapter.prompt_name, adapter.prompt_data)
            if prompt_wav is None:
                prompt_wav, prompt_sr = clip.load()
                prompt_text = prompt_text or (adapter.prompt_text if mode == "cross" else None)
            return (prompt_wav, prompt_sr, prompt_text) + ((voice_id, None) if adapter.kind == "consent" else (None, clip))
        if not is_shipped_voice(voice_id):
            if prompt_wav is None or prompt_sr is None:
                raise AudioError("no prompt: give prompt_wav and prompt_sr, or a shipped voice's name as voice_id "
                                 "(voice_id='demo'), or an adapted voice's id (`valle2 voice adapt`)")
            return prompt_wav, prompt_sr, prompt_text, voice_id, corpus_file
        if corpus_file is not None:
            raise ConsentError(f"voice_id={voice_id!r} is a shipped voice: it brings its own attested clip; "
                               "leave corpus_file out")
        voice = shipped_voice(voice_id)
        self.gate.registry.import_attestation_file(voice.attestation)
        clip = AudioFile.read(voice.clip)   # read once: the gate hashes the bytes that are decoded
        if prompt_wav is None:
            prompt_wav, prompt_sr = clip.load()
            prompt_text = prompt_text or (voice.text if mode == "cross" else None)
        return prompt_wav, prompt_sr, prompt_text, None, clip

    def check_continuation_room(self, prompt_seconds: float, n_tokens: list[int]) -> None:
        """AudioError when a continuation prompt of ``prompt_seconds`` leaves no room for the rest
        of a text of ``n_tokens`` tokens: it lasts ``CONTINUATION_MAX_SHARE`` or more of the whole
        text's expected length (its tokens times the model's mean frames per token)."""
        expected = min(n_tokens) * self.bundle.frames_per_token / self.codec.frame_rate
        if prompt_seconds >= CONTINUATION_MAX_SHARE * expected:
            raise AudioError(f"continuation mode: the prompt ({prompt_seconds:.1f} s) lasts {prompt_seconds / expected:.0%} "
                             f"of the {expected:.1f} s the whole text is expected to take, so it leaves no room for the "
                             "rest of the text (continuation prompts are the first seconds of the utterance whose whole "
                             "transcript is the text): give a shorter prompt_wav, about 3 s as the paper, without "
                             "leading silence, or use cross mode with the prompt's transcript as prompt_text")

    def generate_codes(self, texts: list[str], prompt_wav=None, prompt_sr: int | None = None,
                       prompt_text: str | None = None, *,
                       voice_id: str | None = None, corpus_file=None, mode: str = "cross",
                       options: DecodingOptions | None = None, n_samples: int = 1, n_outputs: int | None = None,
                       progress: bool = False, adapter: VoiceAdapter | None = None) -> Generation:
        """Codes for each of ``texts``, ``n_samples`` samples each, decoded in one batch, once the
        gate has authorized the prompt (consent arguments as :meth:`synthesize_batch`) for
        ``n_outputs`` outputs (default one a sample).  No audio: decode what you keep and pass
        each output through ``self.gate.finalize(wav, sr, generation.authorization, text)``.
        DecodingError for an option that does not apply to the codebook-0 source in use
        (:func:`valle2.code0.choose_source`).  An adapted voice (:meth:`voice_adapter`) drafts
        codebook 0 from its own context table and matches the voice to its recordings' codes;
        ``adapter`` gives one in place of the stored one (``valle2 voice adapt`` tries candidates
        with it; the prompt is gated all the same)."""
        adapter = adapter if adapter is not None else self.voice_adapter(voice_id)
        prompt_wav, prompt_sr, prompt_text, voice_id, corpus_file = self.consent_source(
            prompt_wav, prompt_sr, prompt_text, voice_id, corpus_file, mode)
        options = options or DecodingOptions()
        source = code0.choose_source(options, self.code0_source, self.bundle.code0)
        read = [self.text_ids(text, prompt_text, mode) for text in texts]  # bad text is refused before the gate
        if mode == "continuation":
            self.check_continuation_room(validate_waveform(prompt_wav, prompt_sr).size / prompt_sr, [n for _, n, _ in read])
        n_outputs = len(texts) * n_samples if n_outputs is None else n_outputs
        auth = self.gate.authorize(voice_id, prompt_wav, prompt_sr, corpus_file, n_outputs=n_outputs)
        prompt_codes = self.encode_prompt(prompt_wav, prompt_sr)
        ids, limits, floors, given_text = [], [], [], []
        for t, n_target, n_prompt in read:
            p = prompt_codes.shape[1]
            fpt = p / n_prompt if n_prompt else self.bundle.frames_per_token
            floor, limit = frame_bounds(n_target, fpt, self.codec.frame_rate, options,
                                        given_frames=p if mode == "continuation" else 0)
            ids += [t] * n_samples
            limits += [limit] * n_samples
            floors += [floor] * n_samples
            given_text += [n_prompt if mode == "cross" else None] * n_samples  # continuation: the text starts with the prompt's
        bar = tqdm(total=max(limits), desc="AR decoding", unit="frame", leave=False,
                   disable=not progress or source != "ar")  # no AR runs: nothing to show
        g = self.bundle.dims.group_size
        gen = code0.generate(self.ar, self.nar, self.bundle.code0, source, ids, [prompt_codes] * len(ids), limits, options,
                             progress=lambda s: bar.update(min(g, bar.total - bar.n)), min_frames=floors,
                             ordinal=self.codec.ordinal_codebooks, prompt_text_lens=given_text,
                             code_vectors=self.codec.code0_vectors(),
                             n_codebooks=nar_codebooks(self.codec, self.bundle.dims, options.nar_codebooks),
                             table=adapter.context_table(self.bundle.dims.n_text_vocab) if adapter else None)
        bar.close()
        codes = [self.codec.complete(c) for c in gen.codes]
        if options.match_voice:
            reference = adapter.reference if adapter is not None else prompt_codes
            codes = [self.codec.match_voice(c, reference) for c in codes]
        per_text = range(0, len(ids), n_samples)
        return Generation([codes[i:i + n_samples] for i in per_text], [gen.hit_limit[i:i + n_samples] for i in per_text],
                          gen.ar_seconds, gen.nar_seconds, prompt_codes, source, auth)

    @torch.inference_mode()
    def nar_codes(self, gen: Generation, text: str, prompt_text: str | None, code0: torch.Tensor,
                  mode: str = "cross", options: DecodingOptions | None = None) -> torch.Tensor:
        """The NAR's codes for a codebook 0 given from outside, e.g. a recording's own (what a
        perfect AR would give): ``code0 [T]`` -> ``LongTensor [n_codebooks, T]``, completed and voice
        matched as :meth:`generate_codes` does.  ``gen``, a generation of the same prompt, carries
        the prompt's codes and the gate's authorization (decode and ``gate.finalize`` as for its
        own codes); ``text``, ``prompt_text`` and ``mode`` as there.  For evaluation: how much of
        an output's error the NAR and the codec make, with the AR taken out of the question."""
        options = options or DecodingOptions()
        ids, _, _ = self.text_ids(text, prompt_text, mode)
        n = nar_codebooks(self.codec, self.bundle.dims, options.nar_codebooks)
        codes = nar_generate(self.nar, [ids], [gen.prompt_codes.T], [code0.long()],
                             ordinal=self.codec.ordinal_codebooks, n_codebooks=n)[0]
        codes = self.codec.complete(codes)
        return self.codec.match_voice(codes, gen.prompt_codes) if options.match_voice else codes

    def synthesize_batch(self, texts: list[str], prompt_wav=None, prompt_sr: int | None = None,
                         prompt_text: str | None = None, *,
                         voice_id: str | None = None, corpus_file=None, mode: str = "cross",
                         options: DecodingOptions | None = None, n_samples: int = 1, include_prompt: bool = False,
                         speed: float = 1.0, progress: bool = False) -> list[list[np.ndarray]]:
        """Speak each of ``texts`` in the prompt's voice, ``n_samples`` times, decoded in one batch.

        The prompt must be covered by the consent record ``voice_id`` or come from the attested
        research corpus file ``corpus_file`` (a path, or a :class:`valle2.audio.AudioFile` already
        read, e.g. the one ``prompt_wav`` was decoded from: the gate hashes and decodes those same
        bytes), else :class:`valle2.safety.ConsentError`.  ``voice_id="demo"`` (a shipped voice,
        :meth:`consent_source`) needs no prompt: its attested clip and transcript are the prompt.  Returns
        ``out[i][s]``: watermarked float32 ``[samples]`` at :attr:`sample_rate`.
        ``include_prompt`` prepends the prompt's own resynthesis (how the paper scores the
        continuation setting).  ``speed`` (0.25-4) changes the tempo, pitch kept, before the
        watermark goes on, so that the mark is as strong at any speed.
        """
        check_speed(speed)
        gen = self.generate_codes(texts, prompt_wav, prompt_sr, prompt_text, voice_id=voice_id, corpus_file=corpus_file,
                                  mode=mode, options=options, n_samples=n_samples, progress=progress)
        out = []
        for text, samples in zip(texts, gen.codes):
            wavs = []
            for c in samples:
                wav = change_speed(self.waveform(gen, c, include_prompt), self.sample_rate, speed)
                wavs.append(self.gate.finalize(wav, self.sample_rate, gen.authorization, text))
            out.append(wavs)
        return out

    def waveform(self, gen: Generation, codes: torch.Tensor, include_prompt: bool) -> np.ndarray:
        """One output of ``gen`` decoded, before speed and watermark: ``codes [n_codebooks, T]``,
        the prompt's own codes first with ``include_prompt`` (continuation) -> float32 ``[samples]``.
        Not gated: write it out only through ``gate.finalize`` under ``gen.authorization``."""
        if include_prompt:
            codes = torch.cat([gen.prompt_codes, codes], dim=1)
        return self.codec.decode(codes).numpy().astype(np.float32, copy=False)

    def synthesize(self, text: str, prompt_wav=None, prompt_sr: int | None = None, prompt_text: str | None = None, *,
                   voice_id: str | None = None, corpus_file=None, mode: str = "cross",
                   options: DecodingOptions | None = None, include_prompt: bool = False, speed: float = 1.0,
                   progress: bool = False) -> tuple[np.ndarray, int]:
        """Speak ``text`` in the prompt's voice; returns ``(watermarked wav float32 [samples], sample_rate)``.

        In cross mode a text of several sentences (:func:`valle2.text.split_sentences`) is spoken
        sentence by sentence, all from the same prompt (one voice, decoded in one batch), joined by
        :data:`SENTENCE_PAUSE_SECONDS` of silence and watermarked as one recording.  Continuation
        mode reads ``text`` as one sequence: it goes on from the prompt's own transcript.
        See :meth:`synthesize_batch` for the consent arguments, ``include_prompt`` and ``speed``.
        """
        sentences = split_sentences(text) if mode == "cross" and isinstance(text, str) else []
        if len(sentences) <= 1:
            wav = self.synthesize_batch([text], prompt_wav, prompt_sr, prompt_text, voice_id=voice_id,
                                        corpus_file=corpus_file, mode=mode, options=options,
                                        include_prompt=include_prompt, speed=speed, progress=progress)[0][0]
            return wav, self.sample_rate
        check_speed(speed)
        gen = self.generate_codes(sentences, prompt_wav, prompt_sr, prompt_text, voice_id=voice_id,
                                  corpus_file=corpus_file, mode=mode, options=options, progress=progress)
        pause = np.zeros(int(round(SENTENCE_PAUSE_SECONDS * self.sample_rate)), dtype=np.float32)
        spoken = [self.waveform(gen, samples[0], include_prompt and i == 0) for i, samples in enumerate(gen.codes)]
        wav = change_speed(np.concatenate([part for w in spoken for part in (pause, w)][1:]), self.sample_rate, speed)
        return self.gate.finalize(wav, self.sample_rate, gen.authorization, text), self.sample_rate


def quantize_int8(module: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation, in place, of every ``nn.Linear`` of ``module`` (weights int8,
    activations quantised per call): CPU inference only, faster at the same quality
    (``docs/demo_model.md``).

    PyTorch 2.13 (pinned in pyproject) deprecates ``torch.ao.quantization`` and its quantized
    tensor constructors in favour of the separate torchao package, and warns on every call.  The
    warnings are filtered here, at their one source, and not moved to torchao: it is not a
    dependency, and its int8 kernels would change the int8 outputs that ``load_model`` gives by
    default on the CPU.  The filter covers this call only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)
        return torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def load_model(path, codec: Codec | None = None, gate: ConsentGate | None = None, device: str = "cpu",
               int8: bool | None = None) -> VallE2:
    """Load a valle2 model: a shipped model's name (``"demo"``, :func:`valle2.names.model_file`)
    or a model file's path.

    The codec named in it is loaded unless one is given; the gate defaults to the deployment at
    ``$VALLE2_HOME`` (``~/.valle2``), see :class:`valle2.safety.deployment.Deployment`.  ``int8``
    runs the AR and NAR with int8 linear layers (:func:`quantize_int8`; CPU only); the default
    None means int8 on the CPU (same quality, faster: ``docs/demo_model.md``), fp32 elsewhere.
    """
    from .safety.deployment import Deployment

    on_cpu = torch.device(device).type == "cpu"
    int8 = on_cpu if int8 is None else int8
    if int8 and not on_cpu:
        raise ModelError(f"int8 inference runs on the CPU only, not on '{device}'")
    bundle = load_model_bundle(model_file(path), device)
    codec = codec if codec is not None else load_codec(bundle.codec["name"], **bundle.codec.get("options", {}))
    model = VallE2(bundle, codec, gate if gate is not None else Deployment.open().gate())
    if int8:
        model.ar, model.nar = quantize_int8(model.ar.float()), quantize_int8(model.nar.float())
    return model


__all__ = ["VallE2", "load_model", "DecodingOptions", "MODES"]
