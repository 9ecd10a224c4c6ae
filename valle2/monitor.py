"""Training monitoring on rank 0: TensorBoard scalars, and a synthesized sample with its
spectrogram every ``run.sample_every`` steps.

The sample audio is speech in a real (training or validation) speaker's voice, and it leaves the
process in the TensorBoard event files, so it is watermarked like every output
(:func:`valle2.safety.gate.mark_output`: peak limited, then marked) with the deployment's key
(``$VALLE2_HOME``, or the key given), payload ``payload_for("training-monitor")``.  It needs no
consent record: the voice is the training data's, which the operator chose to train on."""
from __future__ import annotations

from pathlib import Path

import torch

from . import code0 as code0_sources
from .decoding import DecodingOptions, frame_bounds
from .plots import spectrogram_figure
from .synthesis import nar_codebooks


class Monitor:
    def __init__(self, out_dir: Path, cfg, train, valid, dims, watermark_key: bytes | None = None):
        """``watermark_key`` marks the sample audio; by default the deployment's at ``$VALLE2_HOME``
        (``~/.valle2``), read at the first sample."""
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(out_dir) / "tb"))
        self.cfg, self.dims = cfg, dims
        source = valid if valid is not None and valid.utterances else train
        self.example = source.utterances[0]
        self.train = train
        self._codec = None
        self._key = watermark_key

    @property
    def watermark_key(self) -> bytes:
        if self._key is None:
            from .safety.deployment import Deployment

            self._key = Deployment.open().watermark_key
        return self._key

    def mark(self, wav, sr: int):
        """``wav [samples]`` peak-limited and watermarked, as every valle2 output: float32 ``[samples]``."""
        from .safety.gate import MONITOR_LABEL, mark_output, payload_for

        return mark_output(wav, sr, payload_for(MONITOR_LABEL), self.watermark_key)

    def scalars(self, split: str, stats: dict, step: int) -> None:
        for k, v in stats.items():
            self.writer.add_scalar(f"{split}/{k}", v, step)
        self.writer.flush()

    @property
    def codec(self):
        if self._codec is None:
            self._codec = self.train.load_codec()
        return self._codec

    @torch.no_grad()
    def sample(self, ar, nar, code0, frames_per_token: float, step: int) -> None:
        """Continue the first 3 s of a held-out utterance with its own text, codebook 0 from the
        source the model would record (``code0``: its :class:`valle2.code0.Code0` or None, the AR);
        log audio and spectrograms."""
        ar.eval()
        nar.eval()
        u = self.example
        rate = self.codec.frame_rate
        p = min(int(3 * rate), u.codes.shape[1] // 2)
        device = next(ar.parameters()).device
        opts = DecodingOptions(seed=step)
        floor, limit = frame_bounds(u.text_ids.shape[0], frames_per_token, rate, opts, given_frames=p)
        text = u.text_ids.long().to(device)
        source = "ar" if code0 is None else code0.source
        gen = code0_sources.generate(ar, nar, code0, source, [text], [u.codes[:, :p].long().to(device)], [limit], opts,
                                     min_frames=[floor], ordinal=self.codec.ordinal_codebooks,
                                     code_vectors=self.codec.code0_vectors(),
                                     n_codebooks=nar_codebooks(self.codec, nar.dims)).codes[0]
        gen = self.codec.match_voice(self.codec.complete(gen), u.codes[:, :p].long())
        sr = self.codec.sample_rate
        out = self.mark(self.codec.decode(torch.cat([u.codes[:, :p].long(), gen], 1)).numpy(), sr)
        ref = self.mark(self.codec.decode(u.codes.long()).numpy(), sr)
        self.writer.add_audio("sample/generated", torch.from_numpy(out).unsqueeze(0), step, sr)
        self.writer.add_audio("sample/reference", torch.from_numpy(ref).unsqueeze(0), step, sr)
        fig = spectrogram_figure({"reference (codec resynthesis)": (ref, sr), f"generated, step {step} (3 s prompt + continuation)": (out, sr)})
        self.writer.add_figure("sample/spectrogram", fig, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
