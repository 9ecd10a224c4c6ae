"""Pluggable metric models: ASR for WER, speaker encoders for SIM.  WER itself (the one text
normaliser and the word-error count) is :func:`valle2.metrics.word_errors`.

Registries map a name to a loader: ``load_asr("pocketsphinx")``, ``load_speaker_encoder("resemblyzer")``.
The offline defaults (pocketsphinx, Resemblyzer) ship with their packages.  The paper's models
load lazily through their own packages and need their weights (a download, or a filled cache);
when the package or the weights are missing, loading raises :class:`BackendUnavailable` saying
what to install.

- ASR: ``pocketsphinx``; ``nemo`` (NeMo ``stt_en_conformer_transducer_large``, the paper's
  Conformer-Transducer); ``whisper`` (openai-whisper, else the transformers pipeline);
  ``hubert`` (``facebook/hubert-large-ls960-ft`` CTC, greedy).
- SIM: ``resemblyzer`` (GE2E); ``wavlm`` (transformers ``WavLMForXVector`` with
  ``microsoft/wavlm-base-plus-sv``; the paper used a WavLM-Large + ECAPA-TDNN checkpoint of
  UniSpeech, which needs UniSpeech's own model code and is not wired here).
"""
from __future__ import annotations

import importlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..errors import BackendUnavailable
from ..metrics import METRIC_RATE, _as_16k


class ASR(Protocol):
    name: str

    def transcribe(self, wav: np.ndarray, sr: int) -> str:
        """English transcript of mono ``[samples]`` at ``sr``."""


class SpeakerEncoder(Protocol):
    name: str

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Speaker embedding ``[D]`` of mono ``[samples]`` at ``sr``."""


def _require(module: str, install: str):
    """Import ``module`` or raise BackendUnavailable naming the pip package."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f"this metric backend needs the '{install}' package ({exc}); pip install {install}") from None


def _weights(what: str, load: Callable):
    """Run ``load()``; turn a failed download or cache miss into BackendUnavailable."""
    try:
        return load()
    except Exception as exc:  # hub clients raise OSError, ValueError, HTTP and their own errors
        raise BackendUnavailable(f"cannot load the weights of {what}: {exc}. They need a download (internet) or "
                                 "a filled cache (HF_HOME / ~/.cache)") from None


# ----------------------------------------------------------------------------------- ASR
@dataclass
class PocketsphinxASR:
    name: str = "pocketsphinx"

    def transcribe(self, wav, sr: int) -> str:
        from ..metrics import transcribe

        return transcribe(wav, sr)


class NemoASR:
    """NeMo Conformer-Transducer (the paper's ASR)."""

    def __init__(self, model: str = "stt_en_conformer_transducer_large"):
        _require("nemo", "nemo_toolkit[asr]")
        models = _require("nemo.collections.asr.models", "nemo_toolkit[asr]")
        self.name = f"nemo:{model}"
        self.model = _weights(model, lambda: models.ASRModel.from_pretrained(model, map_location="cpu").eval())

    def transcribe(self, wav, sr: int) -> str:
        from ..audio import save_audio

        with tempfile.TemporaryDirectory() as tmp:
            path = save_audio(Path(tmp) / "utt.wav", _as_16k(wav, sr), METRIC_RATE)
            out = self.model.transcribe([str(path)], batch_size=1)
        if isinstance(out, tuple):  # older transducer models return (best, all hypotheses)
            out = out[0]
        hyp = out[0]
        return str(getattr(hyp, "text", hyp))


class WhisperASR:
    """Whisper through openai-whisper when installed, else the transformers pipeline."""

    def __init__(self, model: str = "large-v3"):
        self.name = f"whisper:{model}"
        try:
            whisper = importlib.import_module("whisper")
        except ImportError:
            whisper = None
        if whisper is not None:
            self._model = _weights(f"whisper {model}", lambda: whisper.load_model(model, device="cpu"))
            self._run = lambda audio: self._model.transcribe(audio, language="en", fp16=False)["text"]
            return
        try:
            transformers = importlib.import_module("transformers")
        except ImportError:
            raise BackendUnavailable("the whisper backend needs 'openai-whisper' or 'transformers'; "
                                     "pip install openai-whisper") from None
        pipe = _weights(f"openai/whisper-{model}", lambda: transformers.pipeline(
            "automatic-speech-recognition", model=f"openai/whisper-{model}", device="cpu"))
        self._run = lambda audio: pipe({"raw": audio, "sampling_rate": METRIC_RATE},
                                       generate_kwargs={"language": "en", "task": "transcribe"})["text"]

    def transcribe(self, wav, sr: int) -> str:
        return str(self._run(_as_16k(wav, sr))).strip()


class HubertASR:
    """HuBERT-Large fine-tuned on LibriSpeech 960 h, CTC greedy decoding."""

    def __init__(self, model: str = "facebook/hubert-large-ls960-ft"):
        transformers = _require("transformers", "transformers")
        self.name = f"hubert:{model}"
        self.processor = _weights(model, lambda: transformers.Wav2Vec2Processor.from_pretrained(model))
        self.model = _weights(model, lambda: transformers.HubertForCTC.from_pretrained(model).eval())

    def transcribe(self, wav, sr: int) -> str:
        import torch

        inputs = self.processor(_as_16k(wav, sr), sampling_rate=METRIC_RATE, return_tensors="pt")
        with torch.inference_mode():
            ids = self.model(inputs.input_values).logits.argmax(-1)
        return self.processor.batch_decode(ids)[0].lower()


# ----------------------------------------------------------------------------------- SIM
@dataclass
class ResemblyzerEncoder:
    name: str = "resemblyzer"

    def embed(self, wav, sr: int) -> np.ndarray:
        from ..metrics import speaker_embedding

        return speaker_embedding(wav, sr)


class WavLMEncoder:
    """WavLM x-vector speaker verification model (transformers)."""

    def __init__(self, model: str = "microsoft/wavlm-base-plus-sv"):
        transformers = _require("transformers", "transformers")
        self.name = f"wavlm:{model}"
        self.extractor = _weights(model, lambda: transformers.AutoFeatureExtractor.from_pretrained(model))
        self.model = _weights(model, lambda: transformers.WavLMForXVector.from_pretrained(model).eval())

    def embed(self, wav, sr: int) -> np.ndarray:
        import torch

        inputs = self.extractor(_as_16k(wav, sr), sampling_rate=METRIC_RATE, return_tensors="pt")
        with torch.inference_mode():
            emb = self.model(**inputs).embeddings[0]
        return torch.nn.functional.normalize(emb, dim=-1).numpy().astype(np.float32)


ASR_BACKENDS: dict[str, Callable[[], ASR]] = {
    "pocketsphinx": PocketsphinxASR, "nemo": NemoASR, "whisper": WhisperASR, "hubert": HubertASR}
SIM_BACKENDS: dict[str, Callable[[], SpeakerEncoder]] = {"resemblyzer": ResemblyzerEncoder, "wavlm": WavLMEncoder}


def load_asr(name: str) -> ASR:
    """The ASR backend called ``name`` (see :data:`ASR_BACKENDS`)."""
    if name not in ASR_BACKENDS:
        raise BackendUnavailable(f"unknown ASR backend '{name}': choose one of {', '.join(ASR_BACKENDS)}")
    return ASR_BACKENDS[name]()


def load_speaker_encoder(name: str) -> SpeakerEncoder:
    """The speaker-similarity backend called ``name`` (see :data:`SIM_BACKENDS`)."""
    if name not in SIM_BACKENDS:
        raise BackendUnavailable(f"unknown SIM backend '{name}': choose one of {', '.join(SIM_BACKENDS)}")
    return SIM_BACKENDS[name]()
