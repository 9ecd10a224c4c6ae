"""The recording and transmission channels the detector is trained and validated with."""
import numpy as np
import pytest

from valle2.audio import load_audio
from valle2.data import channels
from valle2.errors import AudioError
from valle2.recipe import packaged_clips

SR = channels.SR


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(packaged_clips()[0]["path"], sr=SR)[0]


def band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum() / spec.sum())


@pytest.mark.parametrize("name", list(channels.CHANNELS))
def test_channel_keeps_length_and_is_seeded(speech, name):
    y1 = channels.apply(name, speech, np.random.default_rng(3))
    y2 = channels.apply(name, speech, np.random.default_rng(3))
    assert y1.shape == speech.shape and y1.dtype == np.float32
    assert np.all(np.isfinite(y1))
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(y1, speech, atol=1e-4), f"{name} left the audio unchanged"


def test_telephone_removes_the_upper_band(speech):
    y = channels.telephone(speech, np.random.default_rng(0))
    assert band_energy(speech, 4200, 8000) > 1e-3
    assert band_energy(y, 4200, 8000) < 1e-4


def test_noise_snr_in_range(speech):
    for seed in range(5):
        y = channels.noise(speech, np.random.default_rng(seed))
        snr = 10 * np.log10(np.sum(speech.astype(np.float64) ** 2) / np.sum((y - speech).astype(np.float64) ** 2))
        assert 4.9 <= snr <= 30.1


def test_codec_roundtrip_is_aligned_and_close(speech):
    for codec in channels.CODEC_CHANNELS:
        y = channels.ffmpeg_roundtrip(speech, codec, 64)
        corr = np.corrcoef(y, speech)[0, 1]
        assert corr > 0.9, f"{codec} at 64 kbit/s: correlation {corr:.3f} with the input (misaligned?)"


def test_batched_codec_matches_per_clip_lengths(speech):
    clips = [speech[: 16000], speech[8000: 40000], speech]
    out = channels.apply_batched("mp3", clips, np.random.default_rng(0))
    assert [o.size for o in out] == [c.size for c in clips]
    for o, c in zip(out, clips):
        assert np.corrcoef(o, c)[0, 1] > 0.8


def test_unknown_channel_and_missing_ffmpeg(speech, monkeypatch):
    with pytest.raises(ValueError, match="unknown channel 'radio'"):
        channels.apply("radio", speech, np.random.default_rng(0))
    monkeypatch.setattr(channels.shutil, "which", lambda _: None)
    with pytest.raises(AudioError, match="install_audio_tools.sh"):
        channels.apply("opus", speech, np.random.default_rng(0))
