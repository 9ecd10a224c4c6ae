"""Watermark robustness, false positives on real speech, SNR and speed.

On ``--clips`` real clips (half LibriSpeech, half ARCTIC, spread over both lists) each attack is
applied to the marked and to the unmarked clip; per attack it prints the AUC of the detector
score (marked vs unmarked) and the bit accuracy of the payload decoded from the marked clip.
Attacks: the AudioSeal set (band-pass 500-5000 Hz, high-pass 1500 Hz, low-pass 500 Hz, boost x10
with clipping, duck x0.1, echo, pink noise, white noise at 20 dB SNR, speed 1.25, smoothing,
resampling, AAC 64k, MP3 32k) plus white noise at 10 dB SNR, Opus 16 kbps, 8 kHz mu-law
telephony, sox tempo 0.9 / 1.1, librosa pitch shifts of -1, -0.5, +0.5 and +1 semitone (issue
30), a 1 s crop and re-encoding by the neural codec (``load_codec("offline")``, or random-weight
EnCodec when the offline codec's weights are missing: the table says which).  ffmpeg and sox
come from ``scripts/install_audio_tools.sh``.

It also passes the marked and unmarked clips through each channel of ``valle2.data.channels`` (the
ones ``benchmarks/detector_eval.py`` applies to valle2's outputs for ``tpr_valle2``; settings drawn per
clip as there) and prints the share of marked clips detected and the highest unmarked score.  With
``--channel-clips N`` that pass runs instead on N clips held out from the detector's tuning: a third
LibriSpeech, a third ARCTIC (rows spread over each table, leaving out the rows the detector was tuned
on, :data:`TUNED_ROWS`) and a third ``real-extra/`` (Common Voice, VCC2016 and cathy, sources never
tuned on; the FSDD digits, 0.5 s each, are shorter than one 1 s watermark block and are left out).
``--channels-only`` runs that pass alone (no attacks, quality or false-positive pass); its last line is
``channel_min=<share> channel_unmarked_max=<score>``.
It also measures the mark's quality: SNR, and wideband PESQ (ITU-T P.862.2, the ``pesq`` package:
``pip install pesq``) of each marked clip against the unmarked one.
Then it runs the detector on every real clip of the shared data unmarked (false positives):
LibriSpeech, ARCTIC and all of ``real-extra/``; clips under 2 s also under 8 other keys.
Last line: ``mean_auc=<x> fp_real=<n> snr_db=<y> pesq=<median>``.

Usage: ``python -m benchmarks.watermark_robustness [--data ../shared/data] [--clips 20] [--skip-fp]
[--attacks a,b] [--fp-every N] [--channel-clips N] [--channels-only]``
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy import signal
from tqdm import tqdm

from valle2.audio import load_audio, resample
from valle2.safety import watermark as wm

from tools import DEFAULT_DATA, run_main, speech_data

SR = 16_000
KEY = bytes(range(32))
PAYLOAD = 0xA5C3


ISSUE_30 = ("white_noise_10db", "pitch_-1", "pitch_-0.5", "pitch_+0.5", "pitch_+1")   # attacks added 2026-12-07


def _sos(x, kind, freq, order=6):
    return signal.sosfilt(signal.butter(order, freq, kind, fs=SR, output="sos"), x).astype(np.float32)


def _pink(n, rng):
    spec = np.fft.rfft(rng.standard_normal(n))
    spec /= np.sqrt(np.maximum(np.arange(spec.size), 1))
    noise = np.fft.irfft(spec, n)
    return (noise / noise.std()).astype(np.float32)


def _ffmpeg(x, args, ext):
    with tempfile.TemporaryDirectory() as tmp:
        src, enc = Path(tmp) / "in.wav", Path(tmp) / f"enc.{ext}"
        sf.write(src, np.clip(x, -1, 1), SR, subtype="PCM_16")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *args, str(enc)], check=True)
        out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(enc), "-ac", "1", "-ar", str(SR), "-f", "wav", "pipe:1"],
                             check=True, capture_output=True).stdout
    return sf.read(io.BytesIO(out), dtype="float32")[0]


def _sox_tempo(x, factor):
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(src, np.clip(x, -1, 1), SR, subtype="PCM_16")
        subprocess.run(["sox", str(src), str(dst), "tempo", "-s", str(factor)], check=True)
        return sf.read(dst, dtype="float32")[0]


def _white(x, snr_db, rng):
    """White noise at ``snr_db`` below the clip's mean power."""
    return x + rng.standard_normal(x.size).astype(np.float32) * np.sqrt(np.mean(x ** 2) / 10 ** (snr_db / 10))


def _pitch(x, semitones):
    """librosa's pitch shift (phase-vocoder time stretch, then resampling back to the length)."""
    import librosa

    return librosa.effects.pitch_shift(x, sr=SR, n_steps=semitones).astype(np.float32)


def _telephony(x):
    y = resample(_sos(x, "bandpass", [300, 3400], 4), SR, 8000)
    mu = 255.0
    q = np.sign(y) * np.log1p(mu * np.abs(np.clip(y, -1, 1))) / np.log1p(mu)
    q = np.round(q * 127) / 127
    return resample((np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu).astype(np.float32), 8000, SR)


def _codec():
    from valle2.codec import load_codec
    from valle2.errors import CodecError

    try:
        return load_codec("offline"), "offline"
    except CodecError:
        return load_codec("encodec", pretrained=False), "encodec(random weights: offline codec missing)"


def attacks(rng) -> dict:
    """Name -> function(float32 [samples] at 16 kHz) -> float32 [samples'] at 16 kHz."""
    codec, codec_name = _codec()

    def recode(x):
        with torch.no_grad():
            y = codec.decode(codec.encode(resample(x, SR, codec.sample_rate), codec.sample_rate)).numpy()
        return resample(np.asarray(y, dtype=np.float32).reshape(-1), codec.sample_rate, SR)

    def crop(x):
        start = max(0, (x.size - SR) // 2)
        return x[start:start + SR]

    def echo(x):
        d = int(0.2 * SR)
        return (x + 0.4 * np.concatenate([np.zeros(d, np.float32), x[:-d]])) / 1.4

    return {
        "bandpass_500_5000": lambda x: _sos(x, "bandpass", [500, 5000]),
        "highpass_1500": lambda x: _sos(x, "highpass", 1500),
        "lowpass_500": lambda x: _sos(x, "lowpass", 500),
        "boost_x10": lambda x: np.clip(x * 10, -1, 1),
        "duck_x0.1": lambda x: x * 0.1,
        "echo": echo,
        "pink_noise": lambda x: x + 0.01 * _pink(x.size, rng),
        "white_noise_20db": lambda x: _white(x, 20, rng),
        "white_noise_10db": lambda x: _white(x, 10, rng),
        "speed_1.25": lambda x: resample(x, int(SR * 1.25), SR),
        "smoothing": lambda x: np.convolve(x, np.ones(6) / 6, mode="same").astype(np.float32),
        "resample_12k": lambda x: resample(resample(x, SR, 12_000), 12_000, SR),
        "aac_64k": lambda x: _ffmpeg(x, ["-c:a", "aac", "-b:a", "64k"], "m4a"),
        "mp3_32k": lambda x: _ffmpeg(x, ["-c:a", "libmp3lame", "-b:a", "32k"], "mp3"),
        "opus_16k": lambda x: _ffmpeg(x, ["-c:a", "libopus", "-b:a", "16k"], "ogg"),
        "telephony_8k": _telephony,
        "tempo_0.9": lambda x: _sox_tempo(x, 0.9),
        "tempo_1.1": lambda x: _sox_tempo(x, 1.1),
        "pitch_-1": lambda x: _pitch(x, -1.0),
        "pitch_-0.5": lambda x: _pitch(x, -0.5),
        "pitch_+0.5": lambda x: _pitch(x, 0.5),
        "pitch_+1": lambda x: _pitch(x, 1.0),
        "crop_1s": crop,
        f"codec_{codec_name.split('(')[0]}": recode,
    }, codec_name


TUNED_ROWS = {"untranscribed.tsv": 12, "transcribed.tsv": 113}
"""Rows i with i % m == 1 of each table are the clips the detector's whitening (2026-12-07) was tuned on;
``--channel-clips`` never picks them."""
EXTRA_SOURCES = ("cathy", "vcc2016", "commonvoice")


def held_out_clips(data: Path, n: int) -> list[tuple[str, str, Path]]:
    """``n`` clips (source, id, path) for the channel pass, none of them tuned on: a third LibriSpeech
    and a third ARCTIC, spread evenly over the rows of each table outside :data:`TUNED_ROWS`, and
    the rest spread evenly over the ``real-extra/`` clips of :data:`EXTRA_SOURCES`."""
    def spread(items: list, k: int) -> list:
        if k > len(items):
            raise SystemExit(f"--channel-clips asks for {k} clips of a source that has {len(items)}")
        return [items[int(i * len(items) / k)] for i in range(k)]

    picked = []
    for table, source, k in (("untranscribed.tsv", "librispeech", n // 3), ("transcribed.tsv", "arctic", n // 3)):
        pool = [r for i, r in enumerate(rows(data, table)) if i % TUNED_ROWS[table] != 1]
        picked += [(source, r["id"], data / r["path"]) for r in spread(pool, k)]
    extra = extra_clips(data)
    if not extra:
        raise SystemExit(f"--channel-clips needs {data / 'real-extra' / 'clips.tsv'} (see ../shared/data/README.md, real-extra/)")
    picked += spread([c for c in extra if c[0] in EXTRA_SOURCES], n - 2 * (n // 3))
    return picked


def extra_clips(data: Path) -> list[tuple[str, str, Path]]:
    """Every clip (source, id, path) of ``data``'s ``real-extra/clips.tsv``; none when it is missing."""
    extra = data / "real-extra" / "clips.tsv"
    if not extra.is_file():
        return []
    with open(extra) as f:
        return [(r["source"], r["path"], data / "real-extra" / r["path"])
                for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def channel_rates(clips: list[tuple[str, np.ndarray, np.ndarray]], sources: list[str] | None = None) -> tuple[float, float]:
    """Per channel of ``valle2.data.channels``, the share of marked clips detected (overall and per
    source when ``sources`` names each clip's) and the highest unmarked score; ``clips`` holds (id,
    unmarked, marked) float32 [samples] at 16 kHz.  Returns (lowest share, highest unmarked score)."""
    from valle2.data.channels import CHANNELS, apply

    groups = sorted(set(sources)) if sources else []
    print(f"{'channel':22s} {'detected':>8s} {'unmarked_max':>12s} {'missed (marked score)':s}"
          f"{''.join(f' {g:>11s}' for g in groups)}   (valle2.data.channels, settings drawn per clip; {len(clips)} clips)")
    lowest, worst_all = 1.0, -np.inf
    for name in CHANNELS:
        found, worst, missed = [], -np.inf, []
        for clip_id, x, y in clips:
            seed = int(hashlib.sha256(f"{clip_id}/{name}".encode()).hexdigest()[:8], 16)
            hit = wm.detect(apply(name, y, np.random.default_rng(seed)), SR, KEY)
            found.append(hit.present)
            if not hit.present:
                missed.append(f"{clip_id} ({hit.score:.2f})")
            worst = max(worst, wm.detect(apply(name, x, np.random.default_rng(seed)), SR, KEY).score)
        per = "".join(f" {np.mean([f for f, s in zip(found, sources) if s == g]):11.3f}" for g in groups)
        print(f"{name:22s} {np.mean(found):8.3f} {worst:12.2f} {per}  {', '.join(missed[:6])}")
        lowest, worst_all = min(lowest, float(np.mean(found))), max(worst_all, worst)
    return lowest, worst_all


def auc(pos: list[float], neg: list[float]) -> float:
    """Probability that a marked score beats an unmarked one (ties count half)."""
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(np.mean((p > n) + 0.5 * (p == n)))


SHORT_SECONDS = 2.0   # real clips shorter than this are also scored under SHORT_KEYS other keys:
SHORT_KEYS = 8        # the null's tail is heaviest on clips of about one block (wm.LOUD_SHORT_SECONDS)


def false_positive_pass(data: Path, tables: dict[str, list[dict]], every: int) -> int:
    """The detector on every ``every``-th real clip of ``tables`` (source -> rows: LibriSpeech, ARCTIC)
    and of ``real-extra/`` (all its sources, the 0.3-0.8 s FSDD digits too), unmarked, under KEY; clips
    shorter than SHORT_SECONDS also under SHORT_KEYS other keys.  Prints false positives per source
    and returns their count over all (clip, key) trials."""
    clips = [(source, r["id"], data / r["path"]) for source, table in tables.items() for r in table] + extra_clips(data)
    keys = [KEY] + [hashlib.sha256(f"false-positive key {k}".encode()).digest() for k in range(SHORT_KEYS)]
    per_source: dict[str, list[int]] = {}
    worst, total = [], 0.0
    for source, clip_id, path in tqdm(clips[::every], desc="false-positive pass", unit="clip", mininterval=30):
        x, _ = load_audio(path, sr=SR)
        total += x.size / SR
        counts = per_source.setdefault(source, [0, 0])
        for key in keys[: 1 + SHORT_KEYS * (x.size / SR < SHORT_SECONDS)]:
            found = wm.detect(x, SR, key)
            counts[0] += int(found.present)
            counts[1] += 1
            worst.append((round(found.score, 2), clip_id, round(x.size / SR, 2)))
    worst.sort(reverse=True)
    print(f"false positives over {len(clips[::every])} real clips ({total / 3600:.2f} h; those under {SHORT_SECONDS} s "
          f"also under {SHORT_KEYS} other keys), threshold {wm.THRESHOLD}: "
          + ", ".join(f"{s} {c[0]}/{c[1]}" for s, c in sorted(per_source.items())))
    print(f"highest unmarked scores {worst[:5]}")
    return sum(c[0] for c in per_source.values())


def rows(data: Path, name: str) -> list[dict]:
    with open(data / name) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def channel_pass(data: Path, n: int) -> None:
    """The channel pass on ``n`` held-out clips (:func:`held_out_clips`), each marked with ``embed``."""
    clips, sources, seconds = [], [], 0.0
    for source, clip_id, path in held_out_clips(data, n):
        x, _ = load_audio(path, sr=SR)
        clips.append((clip_id, x, wm.embed(x, SR, PAYLOAD, KEY)))
        sources.append(source)
        seconds += x.size / SR
    print(f"channel pass: {len(clips)} held-out clips, {seconds:.0f} s "
          f"({', '.join(f'{g} {sources.count(g)}' for g in sorted(set(sources)))})")
    lowest, worst = channel_rates(clips, sources)
    print(f"channel_min={lowest:.3f} channel_unmarked_max={worst:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the speech data folder (../shared/data)")
    ap.add_argument("--clips", type=int, default=20, help="marked clips, half LibriSpeech and half ARCTIC")
    ap.add_argument("--skip-fp", action="store_true", help="skip the false-positive pass over all real clips")
    ap.add_argument("--attacks", help="comma-separated attack names to run (default: all)")
    ap.add_argument("--fp-every", type=int, default=1, help="false-positive pass over every N-th real clip only")
    ap.add_argument("--channel-clips", type=int, default=0,
                    help="run the channel pass on this many held-out clips (a third each LibriSpeech, ARCTIC, real-extra/) "
                         "instead of the --clips ones")
    ap.add_argument("--channels-only", action="store_true", help="run the channel pass alone")
    args = ap.parse_args()
    speech_data(args.data)
    if args.channels_only:
        torch.set_num_threads(1)
        if shutil.which("ffmpeg") is None:
            raise SystemExit("ffmpeg is missing: run scripts/install_audio_tools.sh")
        channel_pass(args.data, args.channel_clips or args.clips)
        return
    try:
        from pesq import pesq
    except ImportError:
        raise SystemExit("the pesq package is missing: pip install pesq (or pip install -e '.[test]')") from None
    torch.set_num_threads(1)
    for tool in ("ffmpeg", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: run scripts/install_audio_tools.sh")
    rng = np.random.default_rng(0)
    lib, arc = rows(args.data, "untranscribed.tsv"), rows(args.data, "transcribed.tsv")
    half = args.clips // 2
    chosen = lib[:: max(1, len(lib) // half)][:half] + arc[:: max(1, len(arc) // (args.clips - half))][: args.clips - half]
    attack_fns, codec_name = attacks(rng)
    if args.attacks:
        unknown = set(args.attacks.split(",")) - set(attack_fns)
        if unknown:
            raise SystemExit(f"unknown attacks {sorted(unknown)}; known: {', '.join(attack_fns)}")
        attack_fns = {k: v for k, v in attack_fns.items() if k in args.attacks.split(",")}
    scores = {a: ([], [], []) for a in attack_fns}     # marked scores, unmarked scores, bit accuracies
    snr, quality, t_embed, t_detect, seconds, n_detect = [], [], 0.0, 0.0, 0.0, 0
    marked_clips = []
    for row in chosen:
        x, _ = load_audio(args.data / row["path"], sr=SR)
        t = time.perf_counter()
        y = wm.embed(x, SR, PAYLOAD, KEY)
        t_embed += time.perf_counter() - t
        seconds += x.size / SR
        snr.append(10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y - x).astype(np.float64) ** 2)))
        quality.append(pesq(SR, x, y, "wb"))
        marked_clips.append((row["id"], x, y))
        for name, fn in attack_fns.items():
            for marked, clip in ((True, y), (False, x)):
                a = fn(clip.copy())
                t = time.perf_counter()
                found = wm.detect(a, SR, KEY, always_decode=marked)
                t_detect += time.perf_counter() - t
                n_detect += 1
                scores[name][0 if marked else 1].append(found.score)
                if marked:
                    scores[name][2].append(np.mean([((found.payload ^ PAYLOAD) >> i) & 1 == 0 for i in range(16)]))
    print(f"{len(chosen)} clips, {seconds:.0f} s; codec attack uses {codec_name}")
    print(f"{'attack':22s} {'auc':>6s} {'bit_acc':>8s} {'marked_med':>10s} {'unmarked_max':>12s} {'detected':>8s}")
    aucs = []
    for name, (pos, neg, bits) in scores.items():
        aucs.append(auc(pos, neg))
        hit = np.mean(np.asarray(pos) >= wm.THRESHOLD)
        print(f"{name:22s} {aucs[-1]:6.3f} {np.mean(bits):8.3f} {np.median(pos):10.2f} {max(neg):12.2f} {hit:8.2f}")
    added = [a for a in scores if a in ISSUE_30]
    if added and len(added) < len(scores):
        print(f"mean AUC over the {len(scores) - len(added)} earlier attacks {np.mean([v for a, v in zip(scores, aucs) if a not in ISSUE_30]):.4f}, "
              f"over the {len(added)} added for issue 30 (pitch shift, 10 dB noise) {np.mean([v for a, v in zip(scores, aucs) if a in ISSUE_30]):.4f}")
    print(f"quality of the marked clips: SNR mean {np.mean(snr):.2f} dB, min {np.min(snr):.2f} dB; "
          f"wideband PESQ median {np.median(quality):.3f}, min {np.min(quality):.3f}")
    print(f"embed {t_embed / seconds:.4f} x real time, detect {t_detect / (seconds * n_detect / len(chosen) / 2):.4f} x real time"
          f" (per second of input, 1 CPU thread)")
    if args.channel_clips:
        channel_pass(args.data, args.channel_clips)
    else:
        channel_rates(marked_clips)
    fp = -1
    if not args.skip_fp:
        fp = false_positive_pass(args.data, {"librispeech": lib, "arctic": arc}, args.fp_every)
    print(f"mean_auc={np.mean(aucs):.4f} fp_real={fp} snr_db={np.mean(snr):.2f} pesq={np.median(quality):.3f}")


if __name__ == "__main__":
    run_main(main)
