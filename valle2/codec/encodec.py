"""EnCodec 24 kHz at 6 kbps (8 codebooks x 1024, 75 frames/s), the VALL-E 2 paper's codec.

Runs through ``transformers.EncodecModel`` (the ``encodec`` pip package imports torchaudio,
which does not load beside current CPU torch).  ``pretrained=True`` loads the published
``facebook/encodec_24khz`` weights from the Hugging Face cache or hub; ``pretrained=False``
builds the same architecture with random weights drawn from ``seed``, for tests on machines
without the weights (the same seed gives the same codec, so a model trained on its codes can be
loaded again).
"""
from __future__ import annotations

import torch

from ..errors import CodecError
from .base import Codec

HF_ID = "facebook/encodec_24khz"


class EncodecCodec(Codec):
    name = "encodec"
    sample_rate = 24_000
    frame_rate = 75.0
    n_codebooks = 8
    codebook_size = 1024
    bandwidth = 6.0

    def __init__(self, pretrained: bool = True, model_id: str = HF_ID, seed: int = 0, device: str = "cpu"):
        from transformers import EncodecConfig, EncodecModel

        self._options = {"pretrained": pretrained, "model_id": model_id, "seed": seed}
        if pretrained:
            try:
                self.model = EncodecModel.from_pretrained(model_id)
            except (OSError, ValueError) as exc:
                raise CodecError(
                    f"could not load EnCodec weights '{model_id}' ({exc.__class__.__name__}). Download them once with "
                    f"`huggingface-cli download {model_id}` on a machine with internet, or use load_codec('offline')."
                ) from exc
        else:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                self.model = EncodecModel(EncodecConfig())
        self.model.eval().to(device)
        self.device = device

    def load_options(self) -> dict:
        return dict(self._options)

    def fingerprint(self) -> str:
        o = self._options
        return o["model_id"] if o["pretrained"] else f"random-init-seed{o['seed']}"

    def code0_vectors(self) -> torch.Tensor:
        """The first residual quantiser's codewords: latent frames ``[1024, 128]``."""
        return self.model.quantizer.layers[0].codebook.embed.detach().float().cpu()

    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        out = self.model.encode(wav.view(1, 1, -1).to(self.device), bandwidth=self.bandwidth)
        return out.audio_codes[0, 0].cpu()  # [n_chunks=1, B=1, n_q, T] -> [n_q, T]

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        out = self.model.decode(codes.view(1, 1, *codes.shape).to(self.device), [None])
        return out.audio_values.view(-1).cpu()

    def encode_batch(self, wavs: list, sr: int) -> list[torch.Tensor]:
        """Encode several waveforms in one padded forward pass; returns ``[n_codebooks, T_i]`` each."""
        from ..audio import resample, validate_waveform

        prepared = [validate_waveform(w, sr) for w in wavs]
        prepared = [torch.from_numpy(resample(w, sr, self.sample_rate)) for w in prepared]
        lengths = [len(w) for w in prepared]
        batch = torch.nn.utils.rnn.pad_sequence(prepared, batch_first=True).unsqueeze(1).to(self.device)
        with torch.inference_mode():
            codes = self.model.encode(batch, bandwidth=self.bandwidth).audio_codes[0].cpu()  # [B, n_q, T]
        return [codes[i, :, : self.n_frames(n)].long() for i, n in enumerate(lengths)]
