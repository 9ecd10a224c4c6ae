"""The trainer: YAML configs, a run from prepared shards, exact resume, and DDP on two CPU ranks."""
import json
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from valle2.config import load_config
from valle2.errors import ConfigError
from valle2.train import run


def write_config(tmp_path, prepared, out_dir, **run_overrides):
    cfg = {"model": {"d_model": 64, "n_heads": 2, "n_ar_layers": 1, "n_nar_layers": 1, "d_ff": 128, "dropout": 0.1,
                     "group_size": 2},
           "optim": {"steps": 4, "lr": 1e-3, "warmup_steps": 2},
           "data": {"train": str(prepared), "valid": str(prepared), "max_duration": 4.0, "num_buckets": 2,
                    "concat_prob": 0.5},
           "run": {"out_dir": str(out_dir), "log_every": 1, "valid_every": 2, "sample_every": 4,
                   "checkpoint_every": 2, "device": "cpu", "threads": 1, **run_overrides}}
    path = tmp_path / f"{out_dir.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("text, message", [
    ("model: {d_model: 64, colour: red}\n", "unknown key.*colour"),
    ("optim: {lr: fast}\ndata: {train: x}\nrun: {out_dir: y}\n", "optim.lr must be a number"),
    ("model: {d_model: 64}\n", "data.train"),
    # training options that did not help are gone (docs/history/2026-12-07-training-options-removed.md)
    ("optim: {ar_history_dropout: 0.5}\ndata: {train: x}\n", "unknown key.*ar_history_dropout"),
    ("optim: {ar_soft_targets: 0.5}\ndata: {train: x}\n", "unknown key.*ar_soft_targets"),
    ("optim: {nar_code0_share: 1.0}\ndata: {train: x}\n", "nar_code0_share must be in"),
    ("model: {nar_codebooks: 1}\ndata: {train: x}\n", "nar_codebooks must be 0"),
    ("model: {nar_code0: true}\ndata: {train: x}\n", "nar_code0 needs aligned"),
    ("data: {train: x, text_vocab: 1}\n", "text_vocab must be 0"),
])
def test_bad_config_values_are_named(tmp_path, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(bad)


def test_run_refuses_a_codec_that_changed_since_preparation(tmp_path, prepared):
    """The codec rebuilt from a prepared folder's description must be the one that made its codes."""
    from valle2.data import load_prepared
    from valle2.errors import CodecError

    assert load_prepared(prepared).load_codec().describe()["fingerprint"] == json.loads(
        (prepared / "index.json").read_text())["codec"]["fingerprint"]
    stale = tmp_path / "stale"
    shutil.copytree(prepared, stale)
    index = json.loads((stale / "index.json").read_text())
    index["codec"]["fingerprint"] = "0" * 16  # as if the codec's assets changed after preparation
    (stale / "index.json").write_text(json.dumps(index))
    with pytest.raises(CodecError, match="prepared with codec .* prepare the data again"):
        load_prepared(stale).load_codec()
    cfg = load_config(write_config(tmp_path, stale, tmp_path / "out"), ["model.nar_codebooks=3"])
    with pytest.raises(CodecError, match="prepare the data again"):
        run(cfg)


def test_a_run_trains_a_nar_of_the_codebooks_asked_for(tmp_path, prepared, monkeypatch):
    from valle2.checkpoint import load_model_bundle
    from valle2.codec.encodec import EncodecCodec

    with pytest.raises(ConfigError, match="nar_codebooks 9 exceeds the codec's 8 codebooks"):
        run(load_config(write_config(tmp_path, prepared, tmp_path / "n9"), ["model.nar_codebooks=9"]))
    with pytest.raises(ConfigError, match="nar_codebooks is 3, but codec 'encodec' completes codes from no fewer than 8"):
        run(load_config(write_config(tmp_path, prepared, tmp_path / "n3"), ["model.nar_codebooks=3"]))
    # a codec that completes codes from 3 codebooks (as the offline codec does): the NAR learns 1 and 2 only
    monkeypatch.setattr(EncodecCodec, "required_codebooks", property(lambda self: 3))
    monkeypatch.setattr(EncodecCodec, "_complete", lambda self, c: torch.cat([c, c[-1:].repeat(8 - len(c), 1)]))
    bundle = load_model_bundle(run(load_config(write_config(tmp_path, prepared, tmp_path / "n3"), ["model.nar_codebooks=3"])))
    assert bundle.dims.nar_predicts == 3 and bundle.nar.head.shape[0] == 2


def test_shipped_configs_load():
    paper = load_config("configs/paper.yaml")
    assert (paper.model.d_model, paper.model.n_heads, paper.model.n_ar_layers, paper.model.d_ff) == (1024, 16, 12, 4096)
    assert paper.model.group_size == 2
    demo = load_config("configs/demo.yaml", ["optim.steps=7", "optim.lr=2e-3"])
    assert demo.optim.steps == 7 and demo.run.device == "cpu"
    assert demo.optim.lr == 0.002   # YAML 1.1 reads 2e-3 as a string; a float setting takes it


def test_run_writes_model_checkpoints_and_tensorboard(tmp_path, prepared):
    import valle2

    out = tmp_path / "run"
    model_path = run(load_config(write_config(tmp_path, prepared, out)))
    assert model_path.is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000002.pt", "step-00000004.pt"]
    events = list((out / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tb"), size_guidance={"images": 0, "audio": 0}).Reload()
    tags = acc.Tags()
    assert {"train/ar_loss", "train/nar_loss", "valid/ar_top10", "valid/nar_loss", "train/tokens_per_s"} <= set(tags["scalars"])
    assert "sample/spectrogram" in tags["images"] and "sample/generated" in tags["audio"]
    from valle2.audio import load_audio
    from valle2.safety import detect
    from valle2.safety.deployment import Deployment
    from valle2.safety.gate import MONITOR_LABEL, payload_for

    key = Deployment.open().watermark_key              # the session's deployment ($VALLE2_HOME)
    for tag in ("sample/generated", "sample/reference"):   # decoded speech leaves in the event files: marked
        wav, sr = load_audio(acc.Audio(tag)[-1].encoded_audio_string)
        found = detect(wav, sr, key)
        assert found.present and found.payload == payload_for(MONITOR_LABEL) and abs(wav).max() <= 0.892
    model = valle2.load_model(model_path, codec=valle2.load_codec("encodec", pretrained=False))
    assert model.bundle.dims.group_size == 2


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(sys.platform != "linux", reason="malloc_trim and /proc/self/status are glibc/Linux facilities")
def test_release_free_memory_returns_a_fragmented_heap_to_the_os():
    from valle2.train import release_free_memory

    # many small blocks (below glibc's mmap threshold) freed all but every 64th: the heap keeps its pages
    blocks = [bytearray(16_000) for _ in range(20_000)]
    keep = blocks[::64]
    del blocks
    before = _rss_kib()
    assert release_free_memory() is True
    assert _rss_kib() < before - 100_000      # > 100 MB of the ~320 MB freed goes back
    assert len(keep) == 313


def test_cpu_training_trims_the_heap_at_each_log_step(tmp_path, prepared, monkeypatch):
    import valle2.train as train_module

    calls = []
    monkeypatch.setattr(train_module, "release_free_memory", lambda: calls.append(1) or True)
    run(load_config(write_config(tmp_path, prepared, tmp_path / "trim", log_every=2, sample_every=100)))
    assert len(calls) == 2       # steps 2 and 4 of 4


def test_concat_same_speaker_joins_text_and_codes_of_one_speaker():
    import random

    from valle2.train import Utterance, concat_same_speaker

    data = [Utterance(torch.tensor([i + 1] * (i + 1)), torch.full((8, 3 + i), i), spk) for i, spk in enumerate("aabc")]
    pool = {"a": [0, 1], "b": [2], "c": [3]}
    out = concat_same_speaker(data, pool, data, 1.0, random.Random(0))
    assert out[2] is data[2] and out[3] is data[3]  # one utterance of its speaker: left alone
    assert out[0].text_ids.tolist() == [1, 2, 2] and torch.equal(out[0].codes, torch.cat([data[0].codes, data[1].codes], 1))
    assert out[1].text_ids.tolist() == [2, 2, 1] and torch.equal(out[1].codes, torch.cat([data[1].codes, data[0].codes], 1))
    assert out[0].speaker == "a"
    assert concat_same_speaker(data, pool, data, 0.0, random.Random(0)) == data
    # with groups of 2, the first utterance (3 frames) loses its first frame, as a decoding prompt does:
    # the second starts on a group boundary
    grouped = concat_same_speaker(data, pool, data, 1.0, random.Random(0), group_size=2)
    assert torch.equal(grouped[0].codes, torch.cat([data[0].codes[:, 1:], data[1].codes], 1))
    assert torch.equal(grouped[1].codes, torch.cat([data[1].codes, data[0].codes], 1))  # 4 frames: kept whole


def test_resume_is_exact(tmp_path, prepared):
    straight = tmp_path / "straight"
    run(load_config(write_config(tmp_path, prepared, straight)))
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    # a crash after step 2: only the step-2 checkpoint survives
    shutil.copy(straight / "checkpoints" / "step-00000002.pt", resumed / "last.pt")
    run(load_config(write_config(tmp_path, prepared, resumed)))
    a = json.loads((straight / "final_state.json").read_text())["rank_weight_digests"]
    b = json.loads((resumed / "final_state.json").read_text())["rank_weight_digests"]
    assert a == b
    sa = torch.load(straight / "last.pt", weights_only=False)["trainer"]["opt"]["state"]
    sb = torch.load(resumed / "last.pt", weights_only=False)["trainer"]["opt"]["state"]
    assert all(torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa)
    # the training time adds up over the runs that led here: the step-2 checkpoint's, then the resumed run's
    before = torch.load(straight / "checkpoints" / "step-00000002.pt", weights_only=False)["train_seconds"]
    after = torch.load(resumed / "last.pt", weights_only=False)["train_seconds"]
    assert 0 < before < after
    from valle2.checkpoint import load_model_bundle
    from valle2.train import bundle_from_checkpoint

    assert load_model_bundle(resumed / "model.pt").meta["train_seconds"] >= after
    assert bundle_from_checkpoint(resumed / "last.pt").meta["train_seconds"] == after


def test_torchrun_ddp_two_ranks_stay_identical(tmp_path, prepared):
    out = tmp_path / "ddp"
    cfg = write_config(tmp_path, prepared, out, sample_every=1000)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
                           "-m", "valle2", "train", "--config", str(cfg)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((out / "final_state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == 4
    digests = state["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]


def test_a_fine_tune_adds_codebook_0_without_the_ar_and_synthesis_takes_it_from_the_recorded_source(
        tmp_path, prepared, clips):
    """``run.init_from`` starts a run from a model file; ``model.nar_code0`` adds codebook 0 without
    the AR (valle2.code0: the stage-0 network starts fresh, the NAR's layers are the file's);
    ``optim.train_ar: false`` keeps the AR as it was; the run fits durations and the context table
    and records "table" as the model's codebook-0 source.  Synthesis then takes codebook 0 from the
    table (no AR runs), from the stage-0 network with ``code0="nar"``, or from the AR with
    ``code0="ar"``; the model without them records and uses the AR."""
    import soundfile as sf

    import valle2
    from valle2.checkpoint import load_model_bundle
    from valle2.errors import DecodingError, ModelError

    base_path = run(load_config(write_config(tmp_path, prepared, tmp_path / "base"), ["model.aligned=true"]))
    base = load_model_bundle(base_path)
    over = ["model.aligned=true", "model.nar_code0=true", "optim.train_ar=false", f"run.init_from={base_path}",
            "optim.nar_code0_share=0.9"]
    path = run(load_config(write_config(tmp_path, prepared, tmp_path / "ft"), over))
    ft = load_model_bundle(path)
    assert ft.dims.nar_code0 and ft.nar.head.shape[0] == 7 and ft.code0.network.head.shape == (1024, 64)
    assert ft.code0_source == "table" and base.code0_source == "ar" and base.code0 is None
    assert torch.load(path, weights_only=True)["version"] == 2
    ar_same = all(torch.equal(v, ft.ar.state_dict()[k]) for k, v in base.ar.state_dict().items())
    assert ar_same and torch.equal(ft.ar.log_emission, base.ar.log_emission)
    assert ft.code0.token_frames.min() >= 1 and ft.code0.token_frames.std() > 0   # measured, not the initial ones
    assert ft.meta["init_from"] == str(base_path) and ft.meta["steps"] == 4
    assert ft.code0.table.n_voices == len(ft.meta["context_voices"]) >= 1 and len(ft.code0.table.ctx_keys) > 0
    # a model file whose sizes differ, or that is no model, is refused by name
    with pytest.raises(ConfigError, match="run.init_from: the ar of .* does not fit this model"):
        run(load_config(write_config(tmp_path, prepared, tmp_path / "wide"), over + ["model.d_model=128"]))
    with pytest.raises(ModelError, match="model file not found"):
        run(load_config(write_config(tmp_path, prepared, tmp_path / "none"), over[:-2] + [f"run.init_from={tmp_path / 'x.pt'}"]))

    codec = valle2.load_codec("encodec", pretrained=False)
    wav, sr = sf.read(clips[0].path, dtype="float32")

    def codes(model, **options):
        return model.generate_codes([clips[1].text], wav, sr, clips[0].text, corpus_file=clips[0].path,
                                    options=valle2.DecodingOptions(**options))

    for bundle_path, want_ar in ((path, False), (base_path, True)):
        gen = codes(valle2.load_model(bundle_path, codec=codec), seed=0)
        assert (gen.ar_seconds > 0) == want_ar and gen.codes[0][0].shape[0] == 8
    model = valle2.load_model(path, codec=codec)
    again = codes(model, seed=1)
    assert torch.equal(again.codes[0][0], codes(model).codes[0][0]) and again.source == "table"
    by_ar = codes(model, seed=0, code0="ar")
    assert by_ar.ar_seconds > 0 and by_ar.source == "ar"
    by_table, by_nar = codes(model, code0="table"), codes(model, code0="nar")
    assert torch.equal(by_table.codes[0][0], again.codes[0][0]) and by_nar.ar_seconds == 0
    assert by_nar.codes[0][0].shape == by_table.codes[0][0].shape
    slow = codes(model, pace=2.0)
    assert slow.codes[0][0].shape[1] > 1.5 * by_table.codes[0][0].shape[1]   # each token lasts twice as long
    for source in ("table", "nar"):
        with pytest.raises(DecodingError, match=f"--code-choice( sample)? does not apply: .*--code0 {source}"):
            codes(model, code_choice="sample", code0=source)
    with pytest.raises(DecodingError, match="--top-p does not apply: this model's codebook 0 comes from the context table"):
        codes(model, top_p=0.9)
    base_model = valle2.load_model(base_path, codec=codec)
    for source in ("nar", "table"):
        with pytest.raises(DecodingError, match=f"--code0 {source} needs a model trained with model.nar_code0"):
            codes(base_model, code0=source)
    with pytest.raises(DecodingError, match="--pace does not apply: this model's codebook 0 comes from the AR"):
        codes(base_model, pace=2.0)
