"""Audio loading, resampling and the errors for bad input."""
import numpy as np
import pytest

from valle2.audio import change_speed, encode_audio, load_audio, resample, save_audio, validate_waveform
from valle2.errors import AudioError


def tone(sr=16000, seconds=1.0, hz=220.0):
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_formats_round_trip(tmp_path, fmt):
    wav = tone(24000)
    path = save_audio(tmp_path / f"x.{fmt}", wav, 24000)
    out, sr = load_audio(path, sr=16000)
    assert sr == 16000 and out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - 16000) < 2000  # mp3/ogg add codec delay
    assert 0.15 < np.sqrt(np.mean(out**2)) < 0.26  # tone RMS 0.21 survives


def test_stereo_is_mixed_to_mono(tmp_path):
    import soundfile as sf
    st = np.stack([tone(), tone(hz=440)], axis=1)
    sf.write(tmp_path / "st.wav", st, 16000)
    out, _ = load_audio(tmp_path / "st.wav")
    np.testing.assert_allclose(out, st.mean(1), atol=1e-4)


def test_resample_preserves_tone_length():
    out = resample(tone(16000), 16000, 24000)
    assert len(out) == 24000
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 24000 / len(out) - 220) < 2


@pytest.mark.parametrize("wav, sr, message", [
    (np.zeros(0, np.float32), 16000, "empty"),
    (np.zeros(16000, np.float32), 16000, "silent"),
    (np.full(16000, np.nan, np.float32), 16000, "NaN"),
    (tone(), 100, "sample rate"),
    (np.ones((3, 3, 3)), 16000, "dimensions"),
    (np.array(["a"] * 1000), 16000, "numeric"),
])
def test_bad_waveforms(wav, sr, message):
    with pytest.raises(AudioError, match=message):
        validate_waveform(wav, sr)


def test_too_long():
    with pytest.raises(AudioError, match="limit"):
        validate_waveform(tone(8000, 5.0), 8000, max_seconds=2.0)


def test_bad_files(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really a wav file" * 10)
    with pytest.raises(AudioError, match="cannot read"):
        load_audio(tmp_path / "junk.wav")
    good = encode_audio(tone(), 16000, "wav")
    (tmp_path / "cut.wav").write_bytes(good[:30])
    with pytest.raises(AudioError):
        load_audio(tmp_path / "cut.wav")


def test_unknown_output_format():
    with pytest.raises(AudioError, match="unknown audio format"):
        encode_audio(tone(), 16000, "xyz")


def _peak_hz(wav, sr):
    spec = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return np.argmax(spec) * sr / len(wav)


@pytest.mark.parametrize("speed", [0.5, 1.5, 2.0])
def test_change_speed_keeps_pitch(speed):
    wav = tone(seconds=2.0, hz=220.0)
    out = change_speed(wav, 16000, speed)
    assert len(out) == round(len(wav) / speed) and out.dtype == np.float32
    assert abs(_peak_hz(out, 16000) - 220.0) < 5.0  # a resampling speed change would move it to 220 * speed
    assert 0.1 < np.sqrt(np.mean(out**2)) < 0.3


def test_change_speed_range():
    wav = tone()
    np.testing.assert_array_equal(change_speed(wav, 16000, 1.0), wav)
    for bad in (0.1, 4.5, float("nan")):
        with pytest.raises(AudioError, match="speed must be between"):
            change_speed(wav, 16000, bad)
