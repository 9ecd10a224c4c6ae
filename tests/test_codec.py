"""Codec backends: the shipped offline codec and EnCodec (random weights), on real fixture clips.

Fixtures in tests/fixtures/codec (see tests/fixtures/LICENSE.md): two held-out ARCTIC prompts
(bdl, slt) and two LibriSpeech clips cut to 3 s, 16 kHz FLAC.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from valle2.audio import load_audio, resample
from valle2.codec import load_codec
from valle2.codec.offline import OfflineCodec, analyse, rvq_decode
from valle2.errors import AudioError, CodecError

CLIPS = sorted((Path(__file__).parent / "fixtures" / "codec").glob("*.flac"))


@pytest.fixture(scope="module")
def offline():
    torch.set_num_threads(1)
    return load_codec("offline")


@pytest.fixture(scope="module")
def encodec():
    return load_codec("encodec", pretrained=False)


@pytest.fixture(scope="module")
def wavs():
    assert len(CLIPS) == 4, "expected four fixture clips in tests/fixtures/codec"
    return [load_audio(p) for p in CLIPS]


def log_mel(wav: np.ndarray, sr: int = 16_000, n_fft: int = 512, hop: int = 128, n_mels: int = 64) -> np.ndarray:
    """Log-mel spectrogram in dB, ``[frames, n_mels]`` (triangular filters on the HTK mel scale)."""
    spec = torch.stft(torch.as_tensor(wav), n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs().pow(2)
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    pts = 700 * (10 ** (np.linspace(mel(60), mel(sr / 2), n_mels + 2) / 2595) - 1)
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    fb = np.stack([np.clip(np.minimum((freqs - a) / (b - a), (c - freqs) / (c - b)), 0, None)
                   for a, b, c in zip(pts[:-2], pts[1:-1], pts[2:])])
    return 10 * np.log10(fb @ spec.numpy() + 1e-8).T


def mel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute log-mel difference in dB over the frames both clips share."""
    ma, mb = log_mel(a), log_mel(b)
    n = min(len(ma), len(mb))
    return float(np.mean(np.abs(ma[:n] - mb[:n])))


# ------------------------------------------------------------------------------- offline codec
def test_offline_layout(offline):
    assert isinstance(offline, OfflineCodec)
    assert offline.n_codebooks == 8 and offline.codebook_size <= 1024
    assert offline.frame_rate <= 75 and offline.sample_rate == 16_000
    assert offline.describe()["name"] == "offline"
    assert offline.ordinal_codebooks == {offline.config.f0_book: 10}   # F0 codes are an ordered grid


def test_offline_round_trip(offline, wavs):
    for wav, sr in wavs:
        codes = offline.encode(wav, sr)
        assert codes.dtype == torch.long and codes.dim() == 2
        assert codes.shape == (8, offline.n_frames(len(wav)))
        assert 0 <= int(codes.min()) and int(codes.max()) < offline.codebook_size
        out = offline.decode(codes)
        assert out.dtype == torch.float32 and out.dim() == 1
        assert abs(len(out) - codes.shape[1] * offline.sample_rate / offline.frame_rate) <= offline.sample_rate / offline.frame_rate
        assert torch.isfinite(out).all()
        assert torch.equal(codes, offline.encode(wav, sr)), "encoding must be deterministic"


def test_offline_odd_lengths_and_rates(offline, wavs):
    wav, sr = wavs[0]
    for n in (160, 255, 256, 257, 4000, 4096):
        codes = offline.encode(wav[:n], sr)
        assert codes.shape == (8, offline.n_frames(n))
    wav24 = resample(wav, sr, 24_000)
    codes = offline.encode(wav24, 24_000)
    assert codes.shape == (8, offline.n_frames(len(resample(wav24, 24_000, 16_000))))


def test_offline_resynthesis_is_close(offline, wavs):
    """Resynthesis must be far closer to the original than decoded random or time-shuffled codes."""
    gen = torch.Generator().manual_seed(0)
    for wav, sr in wavs:
        codes = offline.encode(wav, sr)
        resyn = offline.decode(codes).numpy()
        random_codes = torch.randint(0, offline.codebook_size, codes.shape, generator=gen)
        shuffled = codes[:, torch.randperm(codes.shape[1], generator=gen)]
        d = mel_distance(wav, resyn)
        d_random = mel_distance(wav, offline.decode(random_codes).numpy())
        d_shuffled = mel_distance(wav, offline.decode(shuffled).numpy())
        assert d < 0.5 * d_random and d < 0.6 * d_shuffled, (d, d_random, d_shuffled)
        assert d < 6.0, f"log-mel distance {d:.2f} dB is too large for a resynthesis"


def test_offline_postfilter_sharpens_the_envelope_and_keeps_the_level(offline, wavs):
    from valle2.codec.offline import synthesise

    for wav, sr in wavs:
        feats = offline.dequantise(offline.encode(wav, sr))
        plain, sharp = synthesise(feats, offline.config, postfilter=0.0), synthesise(feats, offline.config)
        level_db = 10 * np.log10(np.mean(sharp.astype(np.float64) ** 2) / np.mean(plain.astype(np.float64) ** 2))
        assert abs(level_db) < 1.0, level_db
        # more contrast between spectral peaks and valleys: a wider spread of log-mel values in each frame
        assert log_mel(sharp).std(axis=1).mean() > log_mel(plain).std(axis=1).mean()


def test_postnet_training_brings_decoding_closer(offline, wavs, tmp_path):
    """A small post-net trained by tools.train_offline_postnet's loss on WORLD pairs of the
    fixture clips moves the codec's output towards the originals, and loads beside a codec copy."""
    from tools.train_offline_postnet import batch, loss_fn
    from valle2.codec.offline import synthesise
    from valle2.codec.postnet import PostnetConfig, SpectralPostnet

    torch.manual_seed(0)
    pairs = []
    for wav, sr in wavs:
        plain = synthesise(offline.dequantise(offline.encode(wav, sr)), offline.config)[: len(wav)]
        pairs.append((torch.from_numpy(plain), torch.from_numpy(wav)))
    net = SpectralPostnet(PostnetConfig(channels=64, dilations=(1, 2)))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        world, orig = batch(pairs, 4, 63 * 128, gen)
        loss = loss_fn(net, world, orig, consistent=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:5]), (losses[:5], losses[-10:])
    path = offline.save(tmp_path / "codec.npz")
    assert OfflineCodec.load(path).postnet is None, "no post-net file beside the codebooks: plain WORLD"
    net.eval().save(tmp_path / "offline_postnet.pt")
    codec = OfflineCodec.load(path)
    assert codec.postnet is not None and OfflineCodec.load(path, postnet=False).postnet is None
    assert codec.decoder_fingerprint().startswith(codec.fingerprint() + "-")
    for (wav, sr), (plain, _) in zip(wavs, pairs):
        post = codec.decode(codec.encode(wav, sr)).numpy()
        assert abs(len(post) - len(wav)) < 256
        assert mel_distance(wav, post) < mel_distance(wav, plain.numpy())


def test_postnet_starts_as_identity_and_round_trips(wavs, tmp_path):
    from valle2.codec.postnet import SpectralPostnet

    torch.manual_seed(0)
    net = SpectralPostnet().eval()
    wav = torch.from_numpy(wavs[0][0])
    out = net.enhance(wav)
    assert out.shape == wav.shape
    assert float((out - wav).abs().max()) < 1e-3, "a fresh post-net predicts zero gain: the STFT round trip is exact"
    with torch.no_grad():
        net.out.bias.fill_(np.log(0.5))  # -6 dB everywhere
    half = net.enhance(wav)
    assert abs(float(half.pow(2).mean() / wav.pow(2).mean()) - 0.25) < 0.02
    copy = SpectralPostnet.load(net.save(tmp_path / "pn.pt"))
    assert copy.fingerprint() == net.fingerprint()
    assert float((copy.enhance(wav) - half).abs().max()) < 1e-3, "float16 storage keeps the output"


def test_postnet_corrupt_or_missing_file(offline, tmp_path):
    from valle2.codec.postnet import SpectralPostnet

    path = offline.save(tmp_path / "codec.npz")
    (tmp_path / "offline_postnet.pt").write_bytes(b"garbage")
    with pytest.raises(CodecError, match="post-net .* corrupt"):
        OfflineCodec.load(path)
    with pytest.raises(CodecError, match="not found"):
        SpectralPostnet.load(tmp_path / "missing.pt")


def test_offline_missing_or_corrupt_asset(tmp_path):
    with pytest.raises(CodecError, match="not found"):
        OfflineCodec.load(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(CodecError, match="corrupt"):
        OfflineCodec.load(bad)


def test_offline_save_load_identical(offline, wavs, tmp_path):
    path = offline.save(tmp_path / "copy.npz")
    copy = load_codec("offline", path=path)
    wav, sr = wavs[1]
    assert torch.equal(copy.encode(wav, sr), offline.encode(wav, sr))


# ------------------------------------------------------------------------------------ encodec
def test_encodec_shapes_and_batch(encodec, wavs):
    assert (encodec.sample_rate, encodec.frame_rate, encodec.n_codebooks) == (24_000, 75.0, 8)
    items = [resample(w, sr, 24_000) for w, sr in wavs[:2]]
    single = [encodec.encode(w, 24_000) for w in items]
    for w, codes in zip(items, single):
        assert codes.dtype == torch.long
        assert codes.shape == (8, int(np.ceil(len(w) * 75 / 24_000)))
        out = encodec.decode(codes)
        assert abs(len(out) - codes.shape[1] * 320) <= 320 and torch.isfinite(out).all()
    batch = encodec.encode_batch(items, 24_000)
    for a, b in zip(single, batch):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", ["offline", "encodec"])
def test_bad_audio(name, offline, encodec):
    codec = offline if name == "offline" else encodec
    with pytest.raises(AudioError, match="empty or too short"):
        codec.encode(np.zeros(0, dtype=np.float32), 16_000)
    with pytest.raises(AudioError, match="silent"):
        codec.encode(np.zeros(16_000, dtype=np.float32), 16_000)
    nan = np.full(16_000, 0.1, dtype=np.float32)
    nan[100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        codec.encode(nan, 16_000)


@pytest.mark.parametrize("name", ["offline", "encodec"])
def test_bad_codes(name, offline, encodec):
    codec = offline if name == "offline" else encodec
    ok = torch.zeros(8, 10, dtype=torch.long)
    with pytest.raises(CodecError, match="2-D"):
        codec.decode(ok[0])
    with pytest.raises(CodecError, match="codebooks"):
        codec.decode(ok[:7])
    with pytest.raises(CodecError, match="empty"):
        codec.decode(ok[:, :0])
    with pytest.raises(CodecError, match="integers"):
        codec.decode(ok.float())
    for bad in (codec.codebook_size, -1):
        codes = ok.clone()
        codes[3, 4] = bad
        with pytest.raises(CodecError, match="must lie in"):
            codec.decode(codes)


def test_offline_match_voice_takes_the_references_pitch_level_and_timbre(offline, wavs):
    cfg = offline.config
    own, other = (offline.encode(*w) for w in wavs[:2])  # two different speakers
    matched = offline.match_voice(own, other)
    assert matched.shape == own.shape
    f_own, f_ref, f_new = (offline.dequantise(c) for c in (own, other, matched))

    def mean_log_f0(f):
        return np.log(f.f0[f.f0 > 0]).mean()

    assert np.array_equal(f_new.f0 > 0, f_own.f0 > 0)  # voicing kept
    assert abs(mean_log_f0(f_new) - mean_log_f0(f_ref)) < 0.01  # about 17 cents; codes step about 5
    assert abs(mean_log_f0(f_own) - mean_log_f0(f_ref)) > 0.1  # the clips really differ in pitch
    gap_before = np.linalg.norm(f_own.envelope[:, 1:].mean(0) - f_ref.envelope[:, 1:].mean(0))
    gap_after = np.linalg.norm(f_new.envelope[:, 1:].mean(0) - f_ref.envelope[:, 1:].mean(0))
    assert gap_after < 0.5 * gap_before
    np.testing.assert_allclose(f_new.envelope[:, 0], f_own.envelope[:, 0], atol=0.5)  # energy contour kept
    assert torch.equal(matched[cfg.aperiodicity_book], own[cfg.aperiodicity_book])
    same = offline.match_voice(own, own)  # matching a voice to itself changes little (the envelope is re-quantised)
    assert torch.equal(same[cfg.f0_book], own[cfg.f0_book])
    moved = mel_distance(offline.decode(matched).numpy(), offline.decode(own).numpy())  # 5.6 dB measured
    assert mel_distance(offline.decode(same).numpy(), offline.decode(own).numpy()) < 0.2 * moved  # 0.43 dB measured


def test_match_voice_checks_codes_and_leaves_encodec_codes_alone(offline, encodec):
    codes = torch.randint(0, 1024, (8, 12))
    assert torch.equal(encodec.match_voice(codes, codes[:, :5]), codes)
    for codec in (offline, encodec):
        with pytest.raises(CodecError, match="codebooks"):
            codec.match_voice(codes[:7], codes)
        with pytest.raises(CodecError, match="empty"):
            codec.match_voice(codes, codes[:, :0])


def test_offline_normalised_stage1_codes_the_phone_not_the_speaker_mean(offline, wavs):
    """With ``stage1_normalised``, codebook 0 ignores a shift of the utterance's mean timbre
    (coefficients 1..) and uses only the first ``stage1_size`` codewords; the later stages code
    the envelope minus the stage-1 codeword, so the shift reaches the decoded envelope."""
    from dataclasses import replace

    cfg = replace(offline.config, stage1_normalised=True, stage1_size=256)
    books = offline.envelope_codebooks.copy()
    books[0, 256:] = 0.0  # rows past stage1_size are never chosen
    codec = OfflineCodec(cfg, books, offline.aperiodicity_codebook)
    feats, other = (analyse(resample(w, sr, cfg.sample_rate), cfg) for w, sr in wavs[:2])  # two speakers
    mean = lambda env: env[env[:, 0] >= np.percentile(env[:, 0], 30)].mean(0)  # noqa: E731
    shift = np.concatenate([[0.0], (mean(other.envelope) - mean(feats.envelope))[1:]])  # the other's timbre
    codes = codec.encode_envelope(feats.envelope)
    shifted = codec.encode_envelope(feats.envelope + shift)
    assert codes.shape == (len(cfg.envelope_books), len(feats.envelope)) and int(codes[0].max()) < 256
    assert np.array_equal(codes[0], shifted[0])  # stage 1 unchanged by the speaker mean
    moved = (rvq_decode(shifted, books) - rvq_decode(codes, books))[:, 1:].mean(0)
    cos = moved @ shift[1:] / (np.linalg.norm(moved) * np.linalg.norm(shift[1:]))
    assert cos > 0.8 and np.linalg.norm(moved) > 0.3 * np.linalg.norm(shift[1:]), (cos, moved, shift)  # the later stages move the decoded mean toward it
    plain = OfflineCodec(replace(cfg, stage1_normalised=False), books, offline.aperiodicity_codebook)
    assert not np.array_equal(plain.encode_envelope(feats.envelope + shift)[0], codes[0])
    with pytest.raises(CodecError, match="stage1_size"):
        OfflineCodec(replace(cfg, stage1_size=0), books, offline.aperiodicity_codebook)


def test_code0_vectors_are_what_codebook_0_quantises(offline, encodec, wavs):
    """``code0_vectors()`` (decoding's posterior-mean choice) lives in the space codebook 0 is the
    nearest codeword in: the offline codec's mel-cepstral envelope, EnCodec's encoder latent."""
    wav = wavs[0][0][: 16_000]
    feats = analyse(wav, offline.config)
    v = offline.code0_vectors()
    assert v.shape == (offline.config.stage1_size, offline.config.envelope_dims)
    nearest = torch.cdist(torch.from_numpy(feats.envelope).float(), v).argmin(-1)
    assert torch.equal(nearest, offline.quantise(feats)[0])
    wav24 = torch.from_numpy(resample(wav, 16_000, 24_000)).float()
    with torch.no_grad():
        latent = encodec.model.encoder(wav24.view(1, 1, -1))[0].T                       # [T, 128]
    v = encodec.code0_vectors()
    assert v.shape == (1024, 128)
    assert (torch.cdist(latent, v).argmin(-1) == encodec.encode(wav24.numpy(), 24_000)[0]).float().mean() > 0.99


def test_offline_codec_completes_the_envelope_residual_with_none(offline, encodec, wavs):
    """Synthesis has the NAR predict envelope stage 1, F0 and aperiodicity only; the codec fills
    the later envelope stages with a zero residual.  EnCodec predicts all its codebooks."""
    codes = offline.encode(*wavs[0])
    assert (offline.required_codebooks, offline.predicted_codebooks) == (3, 5)
    assert encodec.required_codebooks == encodec.predicted_codebooks == encodec.n_codebooks
    full = offline.complete(codes[:3])
    assert full.shape == codes.shape and torch.equal(full[:3], codes[:3])
    feats, plain = offline.dequantise(full), offline.dequantise(codes)
    stage1 = offline.envelope_codebooks[0][codes[0].numpy()]
    assert np.abs(feats.envelope - stage1).max() < np.abs(plain.envelope - stage1).max()   # less detail than the real codes
    assert np.abs(feats.envelope - stage1).mean() < 0.1 * np.abs(stage1).mean()
    assert torch.equal(offline.complete(codes[:5])[:5], codes[:5])
    assert offline.complete(codes) is codes
    assert offline.decode(full).shape == offline.decode(codes).shape
    with pytest.raises(CodecError, match="completes codes of 3 to 8 codebooks"):
        offline.complete(codes[:2])
    with pytest.raises(CodecError, match="completes codes of 8 to 8"):
        encodec.complete(codes[:3])
