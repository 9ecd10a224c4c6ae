"""Data preparation: tsv and lhotse-recipe manifests, resumable shards, bad audio, speaker split,
synthetic speakers.  Audio: the four CMU ARCTIC fixture clips (CMU ARCTIC licence, see
tests/fixtures/LICENSE.md) plus generated silence and garbage; no ../shared needed."""
import gzip
import json
import logging
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, Recording, SupervisionSegment

from conftest import overfit_clips
from valle2.audio import load_audio, save_audio
from valle2.codec import load_codec
from valle2.data import (
    SyntheticVoice,
    Utterance,
    cut_speaker,
    cut_text,
    load_shards,
    load_tokenizer,
    manifests_from_recipe,
    manifests_from_tsv,
    prepare,
    split_by_speaker,
    synthesize_corpus,
)
from valle2.data import synthetic as synthetic_module
from valle2.errors import CodecError, DataError

SECONDS = 0.8  # cuts are truncated to this in the encoding tests, to keep them fast


def write_data_dir(root, clips, extra_rows=()):
    """A folder shaped like ../shared/data: audio under arctic/, transcribed.tsv and untranscribed.tsv."""
    (root / "arctic").mkdir(parents=True)
    rows = []
    for c in clips:
        shutil.copy(c.path, root / "arctic" / c.path.name)
        rows.append((c.id, f"arctic/{c.path.name}", c.speaker, c.text))
    rows += list(extra_rows)
    with open(root / "transcribed.tsv", "w") as f:
        f.write("id\tpath\tspeaker\tseconds\ttext\n")
        f.writelines(f"{i}\t{p}\t{s}\t1.0\t{t}\n" for i, p, s, t in rows)
    with open(root / "untranscribed.tsv", "w") as f:
        f.write("id\tpath\tspeaker\tseconds\n")
        f.writelines(f"u_{i}\t{p}\t{s}\t1.0\n" for i, p, s, _ in rows)
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_data_dir(tmp_path_factory.mktemp("data"), overfit_clips())


@pytest.fixture(scope="module")
def short_cuts(data_dir):
    return CutSet.from_cuts([c.truncate(duration=SECONDS) for c in manifests_from_tsv(data_dir)])


@pytest.fixture(scope="module")
def codec():
    return load_codec("encodec", pretrained=False)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, short_cuts, codec):
    """The four short cuts prepared in this process, two per shard."""
    out = tmp_path_factory.mktemp("prepared")
    report = prepare(short_cuts, codec, None, out, num_workers=1, shard_size=2, vocab_size=64, progress=False)
    return out, report


class CountingCodec:
    """Wraps a codec and counts ``encode`` calls."""

    def __init__(self, codec):
        self.codec, self.calls = codec, 0

    def __getattr__(self, name):
        return getattr(self.codec, name)

    def encode(self, wav, sr):
        self.calls += 1
        return self.codec.encode(wav, sr)


def test_transcribed_tsv_gives_one_cut_per_row(data_dir):
    clips = overfit_clips()
    cuts = manifests_from_tsv(data_dir)
    assert sorted(cuts.ids) == sorted(c.id for c in clips)
    for clip in clips:
        cut = cuts[clip.id]
        wav, sr = load_audio(clip.path)
        assert cut.sampling_rate == sr == 16000
        assert cut.num_samples == len(wav)
        assert cut_text(cut) == clip.text
        assert cut_speaker(cut) == clip.speaker
        assert cut.load_audio().shape == (1, len(wav))


def test_untranscribed_tsv_keeps_speaker_without_text(data_dir):
    cuts = manifests_from_tsv(data_dir, transcribed=False)
    assert len(cuts) == 4
    for cut in cuts:
        assert cut_text(cut) is None and cut.supervisions[0].text is None
        assert cut_speaker(cut) in {"bdl", "slt"}


def test_tsv_leaves_out_unreadable_rows_and_checks_columns(tmp_path, caplog):
    clips = overfit_clips()[:2]
    (tmp_path / "arctic").mkdir()
    (tmp_path / "arctic" / "broken.flac").write_bytes(b"not audio at all" * 50)
    root = write_data_dir(tmp_path / "d", clips, [("broken", "../arctic/broken.flac", "bdl", "Broken."),
                                                  ("absent", "arctic/absent.flac", "bdl", "Absent.")])
    with caplog.at_level(logging.WARNING, logger="valle2.data"):
        cuts = manifests_from_tsv(root)
    assert sorted(cuts.ids) == sorted(c.id for c in clips)
    assert "broken" in caplog.text and "absent" in caplog.text
    (root / "transcribed.tsv").write_text("id\tpath\n")
    with pytest.raises(DataError, match="speaker, text"):
        manifests_from_tsv(root)
    with pytest.raises(DataError, match="no manifest"):
        manifests_from_tsv(tmp_path / "nowhere")


def write_libritts(corpus, clips):
    """A LibriTTS-shaped train-clean-100: SPK/CHAPTER/SPK_CHAPTER_UTT_SEG.wav at 24 kHz with its
    .normalized.txt / .original.txt, plus SPK_CHAPTER.trans.tsv and .book.tsv, and SPEAKERS.txt."""
    speaker_ids = {"bdl": "100", "slt": "200"}
    chapters = {}
    for n, clip in enumerate(clips):
        spk = speaker_ids[clip.speaker]
        folder = corpus / "train-clean-100" / spk / "5000"
        folder.mkdir(parents=True, exist_ok=True)
        utt = f"{spk}_5000_{n:06d}_000000"
        wav, _ = load_audio(clip.path, sr=24000)
        save_audio(folder / f"{utt}.wav", wav, 24000)
        (folder / f"{utt}.normalized.txt").write_text(clip.text)
        (folder / f"{utt}.original.txt").write_text(clip.text.upper())
        chapters.setdefault(folder, []).append((utt, clip.text.upper(), clip.text))
    for folder, rows in chapters.items():
        stem = f"{folder.parent.name}_{folder.name}"
        (folder / f"{stem}.trans.tsv").write_text("".join(f"{u}\t{o}\t{t}\n" for u, o, t in rows))
        (folder / f"{stem}.book.tsv").write_text("".join(f"{u}\t{o}\t{t}\ttrue\t21.5\n" for u, o, t in rows))
    (corpus / "SPEAKERS.txt").write_text(";ID |SEX| SUBSET |MINUTES| NAME\n100 | M | train-clean-100 | 1.0 | A\n"
                                         "200 | F | train-clean-100 | 1.0 | B\n")
    return {f"{speaker_ids[c.speaker]}_5000_{n:06d}_000000": c for n, c in enumerate(clips)}


@pytest.mark.parametrize("name, subdir", [("libritts", ""), ("librittsr", "LibriTTS_R")])
def test_libritts_layout_through_lhotse_recipe(tmp_path, name, subdir):
    expected = write_libritts(tmp_path / "corpus" / subdir, overfit_clips())
    cuts = manifests_from_recipe(name, tmp_path / "corpus", tmp_path / "manifests")
    assert sorted(cuts.ids) == sorted(expected)
    for cut in cuts:
        clip = expected[cut.id]
        assert cut.sampling_rate == 24000
        assert cut_text(cut) == clip.text
        assert cut_speaker(cut) == cut.id.split("_")[0]
        assert cut.supervisions[0].gender == ("M" if clip.speaker == "bdl" else "F")
        assert cut.load_audio().shape[1] == cut.num_samples
    assert (tmp_path / "manifests" / "libritts_recordings_train-clean-100.jsonl.gz").is_file()
    assert sorted(CutSet.from_file(tmp_path / "manifests" / f"cuts_{name}.jsonl.gz").ids) == sorted(expected)


def test_libriheavy_manifest_gets_text_and_audio_root(tmp_path):
    clip = overfit_clips()[0]
    rel = "download/librilight/small/100/book/chapter.flac"
    (tmp_path / rel).parent.mkdir(parents=True)
    shutil.copy(clip.path, tmp_path / rel)
    rec = Recording.from_file(tmp_path / rel, recording_id="small/100/book/chapter")
    rec.sources[0].source = rel  # Libriheavy ships paths relative to its folder
    cut = rec.to_cut().truncate(offset=0.2, duration=0.6)
    cut.id = "small/100/book/chapter_0"
    cut.supervisions = [SupervisionSegment(id=cut.id, recording_id=rec.id, start=0.0, duration=0.6, speaker="100",
                                           custom={"texts": ["Will we, ever?", "WILL WE EVER"]})]
    with gzip.open(tmp_path / "libriheavy_cuts_small.jsonl.gz", "wt") as f:
        f.write(json.dumps(cut.to_dict()) + "\n")
    cuts = manifests_from_recipe("libriheavy", tmp_path, tmp_path / "manifests")
    (got,) = list(cuts)
    assert cut_text(got) == "Will we, ever?" and cut_speaker(got) == "100"
    assert got.load_audio().shape == (1, int(0.6 * 16000))
    with pytest.raises(DataError, match="no Libriheavy downloader"):
        manifests_from_recipe("libriheavy", tmp_path, tmp_path / "m", download=True)
    with pytest.raises(DataError, match="unknown recipe"):
        manifests_from_recipe("vctk", tmp_path, tmp_path / "m")


def test_prepare_writes_shards_index_and_tokenizer(prepared, short_cuts, codec):
    out, report = prepared
    assert sorted(p.name for p in out.glob("shard-*.pt")) == ["shard-00000.pt", "shard-00001.pt"]
    assert report.encoded_shards == [0, 1] and report.reused_shards == [] and report.skipped == []
    index = json.loads((out / "index.json").read_text())
    assert index["complete"] and index["codec"] == json.loads(json.dumps(codec.describe()))
    assert [s["n_utterances"] for s in index["shards"]] == [2, 2]
    shard = torch.load(out / "shard-00000.pt", weights_only=True)
    assert shard["utterances"][0]["codes"].dtype == torch.int16
    assert shard["utterances"][0]["text_ids"].dtype == torch.int32

    data = load_shards(out, codec)
    tokenizer = load_tokenizer(out)
    assert len(data) == 4 and all(isinstance(u, Utterance) for u in data)
    for utt, cut in zip(data, short_cuts):
        assert utt.speaker == cut_speaker(cut)
        assert utt.text_ids.dtype == torch.long and utt.text_ids.tolist() == tokenizer.encode(cut_text(cut))
        assert utt.codes.dtype == torch.long
        assert utt.codes.shape == (codec.n_codebooks, codec.n_frames(round(SECONDS * codec.sample_rate)))
        assert int(utt.codes.min()) >= 0 and int(utt.codes.max()) < codec.codebook_size
    assert report.n_frames == sum(u.codes.shape[1] for u in data)


def test_prepared_data_refuses_another_codec(prepared, short_cuts):
    out, _ = prepared
    other = load_codec("encodec", pretrained=False, seed=1)
    with pytest.raises(CodecError, match="prepared with codec"):
        load_shards(out, other)
    with pytest.raises(CodecError, match="prepared with codec"):
        prepare(short_cuts, other, None, out, num_workers=1, shard_size=2, progress=False)


def test_resume_encodes_only_the_missing_shard(tmp_path, prepared, short_cuts, codec):
    out = tmp_path / "out"
    shutil.copytree(prepared[0], out)
    kept = out / "shard-00000.pt"
    mtime = kept.stat().st_mtime_ns
    (out / "shard-00001.pt").unlink()
    with pytest.raises(DataError, match="unreadable"):
        load_shards(out)
    counting = CountingCodec(codec)
    report = prepare(short_cuts, counting, None, out, num_workers=1, shard_size=2, progress=False)
    assert counting.calls == 2
    assert report.encoded_shards == [1] and report.reused_shards == [0] and report.n_utterances == 4
    assert kept.stat().st_mtime_ns == mtime
    again = CountingCodec(codec)
    prepare(short_cuts, again, None, out, num_workers=1, shard_size=2, progress=False)
    assert again.calls == 0
    for a, b in zip(load_shards(out), load_shards(prepared[0])):
        assert torch.equal(a.codes, b.codes) and torch.equal(a.text_ids, b.text_ids)
    with pytest.raises(DataError, match="other cuts"):
        prepare(CutSet.from_cuts(list(short_cuts)[:3]), codec, None, out, num_workers=1, shard_size=2, progress=False)


def test_bad_audio_is_skipped_with_its_reason(tmp_path, data_dir, short_cuts, codec, caplog):
    bad = tmp_path / "audio"
    bad.mkdir()
    sf.write(bad / "silent.flac", np.zeros(16000, dtype=np.float32), 16000)
    shutil.copy(data_dir / "arctic" / "arctic_bdl_a0005.flac", bad / "corrupt.flac")
    extra = []
    for name in ("silent", "corrupt"):
        rec = Recording.from_file(bad / f"{name}.flac", recording_id=name)
        cut = rec.to_cut()
        cut.supervisions = [SupervisionSegment(name, name, 0.0, rec.duration, text="Hello there.", speaker="bdl")]
        extra.append(cut)
    (bad / "corrupt.flac").write_bytes(b"\x00garbage" * 4000)  # damaged after the manifest was made
    untranscribed = list(manifests_from_tsv(data_dir, transcribed=False))[:1]
    cuts = CutSet.from_cuts(list(short_cuts)[:2] + extra + untranscribed)
    with caplog.at_level(logging.WARNING, logger="valle2.data"):
        report = prepare(cuts, codec, None, tmp_path / "out", num_workers=1, shard_size=3, progress=False)
    reasons = dict(report.skipped)
    assert set(reasons) == {"silent", "corrupt", untranscribed[0].id}
    assert "silent" in reasons["silent"]
    assert "unreadable audio" in reasons["corrupt"]
    assert "no transcript" in reasons[untranscribed[0].id]
    assert all(cut_id in caplog.text for cut_id in reasons)
    assert report.n_utterances == 2 and len(load_shards(tmp_path / "out")) == 2
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert sorted(s["id"] for shard in index["shards"] for s in shard["skipped"]) == sorted(reasons)
    with pytest.raises(DataError, match="every one"):
        prepare(CutSet.from_cuts(extra), codec, None, tmp_path / "all_bad", num_workers=1, progress=False)


def test_worker_processes_give_the_same_shards(tmp_path, prepared, short_cuts, codec):
    out = tmp_path / "parallel"
    report = prepare(short_cuts, codec, load_tokenizer(prepared[0]), out, num_workers=2, shard_size=2, progress=False)
    assert report.encoded_shards == [0, 1] and report.n_utterances == 4
    for a, b in zip(load_shards(out, codec), load_shards(prepared[0], codec)):
        assert torch.equal(a.codes, b.codes) and torch.equal(a.text_ids, b.text_ids) and a.speaker == b.speaker


def test_split_by_speaker_is_disjoint(data_dir):
    cuts = manifests_from_tsv(data_dir)
    train, valid = split_by_speaker(cuts, 1, seed=0)
    train_spk, valid_spk = {cut_speaker(c) for c in train}, {cut_speaker(c) for c in valid}
    assert len(valid_spk) == 1 and not train_spk & valid_spk and train_spk | valid_spk == {"bdl", "slt"}
    assert sorted([*train.ids, *valid.ids]) == sorted(cuts.ids)
    assert list(split_by_speaker(cuts, 1, seed=0)[1].ids) == list(valid.ids)
    train, valid = split_by_speaker(cuts, ["slt"])
    assert {cut_speaker(c) for c in valid} == {"slt"} and {cut_speaker(c) for c in train} == {"bdl"}
    for bad in (0, 2, ["nobody"], ["bdl", "slt"]):
        with pytest.raises(DataError):
            split_by_speaker(cuts, bad)


def test_synthetic_corpus_is_empty_without_engines(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(synthetic_module.shutil, "which", lambda name: None)
    with caplog.at_level(logging.WARNING, logger="valle2.data"):
        cuts = synthesize_corpus(["Hello there."], tmp_path)
    assert len(cuts) == 0
    assert "espeak-ng" in caplog.text and "no synthesis engine" in caplog.text
    assert not any(tmp_path.iterdir())


def test_synthetic_corpus_speaks_when_espeak_is_installed(tmp_path, caplog):
    voices = [SyntheticVoice("espeak-ng", "en-us+f2", 60, 170), SyntheticVoice("espeak-ng", "en+m3", 40, 140)]
    texts = ["Will we ever forget it.", "There was a change now."]
    with caplog.at_level(logging.WARNING, logger="valle2.data"):
        cuts = synthesize_corpus(texts, tmp_path, voices=voices)
    if shutil.which("espeak-ng") is None:
        assert len(cuts) == 0 and "espeak-ng not installed" in caplog.text
        return
    assert len(cuts) == 4 and {cut_speaker(c) for c in cuts} == {v.speaker for v in voices}
    assert sorted(cut_text(c) for c in cuts) == sorted(texts * 2)
    first = cuts[f"{voices[0].speaker}_00000"]
    wav, sr = sf.read(first.recording.sources[0].source)
    assert sr == 16000 and wav.ndim == 1 and 0.5 < len(wav) / sr < 5
    assert float(np.sqrt(np.mean(wav ** 2))) > 0.01
    assert not np.allclose(wav[: len(wav) // 2].std(), 0)
    different = cuts[f"{voices[1].speaker}_00000"].load_audio()[0]
    assert different.shape[0] != len(wav) or not np.allclose(different, wav)
    mtime = (tmp_path / voices[0].speaker / f"{voices[0].speaker}_00000.flac").stat().st_mtime_ns
    assert len(synthesize_corpus(texts, tmp_path, voices=voices)) == 4  # reuses the files already written
    assert (tmp_path / voices[0].speaker / f"{voices[0].speaker}_00000.flac").stat().st_mtime_ns == mtime


def test_festival_voices_speak_when_installed(tmp_path, caplog):
    voices = synthetic_module.festival_voices()
    if shutil.which("text2wave") is None:
        assert voices == []
        return
    assert {v.name for v in voices} >= {"ked_diphone", "cmu_us_slt_arctic_hts"}   # scripts/install_synthetic_voices.sh
    assert all(v.speaker == f"festival-{v.name}" for v in voices)
    cuts = synthesize_corpus(["There was a change now."], tmp_path, voices=voices[:1])
    assert len(cuts) == 1
    wav = cuts[0].load_audio()[0]
    assert 0.5 < wav.size / 16_000 < 5 and float(np.sqrt(np.mean(wav ** 2))) > 0.01
    with caplog.at_level(logging.WARNING, logger="valle2.data"):   # text2wave exits 0 for an unknown voice: no file
        assert len(synthesize_corpus(["Hello."], tmp_path / "bad", voices=[SyntheticVoice("festival", "no_such_voice")])) == 0
    assert "skipping" in caplog.text


def test_flite_voices_are_listed_from_the_binary():
    voices = synthetic_module.flite_voices()
    if shutil.which("flite") is None:
        assert voices == []
        return
    listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout.split(":", 1)[1].split()
    assert {v.name for v in voices} == set(listed) - {"awb_time"}
    assert all(v.engine == "flite" and v.speaker == f"flite-{v.name}" for v in voices)


def test_prepare_command_splits_and_prepares(tmp_path, data_dir, monkeypatch):
    import argparse

    import valle2.codec
    from valle2.commands import prepare as prepare_command

    monkeypatch.setattr(valle2.codec, "load_codec", lambda name: load_codec(name, pretrained=False))
    parser = argparse.ArgumentParser()
    prepare_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["prepare", "--data", str(data_dir), "--codec", "encodec", "--out", str(tmp_path),
                              "--workers", "1", "--valid-speakers", "slt", "--vocab-size", "64"])
    assert args.func(args) == 0
    train, valid = load_shards(tmp_path / "train"), load_shards(tmp_path / "valid")
    assert {u.speaker for u in train} == {"bdl"} and {u.speaker for u in valid} == {"slt"}
    assert len(train) == len(valid) == 2
    assert load_tokenizer(tmp_path / "valid").state_dict() == load_tokenizer(tmp_path / "train").state_dict()
    assert sorted(CutSet.from_file(tmp_path / "manifests" / "cuts_valid.jsonl.gz").ids) == ["arctic_slt_a0015",
                                                                                           "arctic_slt_a0018"]
    with pytest.raises(DataError, match="--corpus-dir"):
        args = parser.parse_args(["prepare", "--recipe", "libritts", "--out", str(tmp_path / "r")])
        args.func(args)
