"""The demo recipe's deterministic pieces: held-out lists and transcript attachment."""
import shutil

from lhotse import CutSet

from valle2.data import manifests_from_tsv
from valle2.recipe import asr_transcripts, heldout_split, with_text


def fake_data(tmp_path, clips):
    rows = ["id\tpath\tspeaker\tseconds\ttext"]
    urows = ["id\tpath\tspeaker\tseconds"]
    for i, c in enumerate(clips):
        shutil.copy(c.path, tmp_path / c.path.name)
        rows.append(f"{c.id}\t{c.path.name}\t{c.speaker}\t2.0\t{c.text}")
        urows.append(f"ls_{i}\t{c.path.name}\tls{i}\t2.0")
    (tmp_path / "transcribed.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "untranscribed.tsv").write_text("\n".join(urows) + "\n")
    return tmp_path


def test_heldout_split_is_deterministic_and_disjoint(tmp_path, clips):
    data = fake_data(tmp_path, clips)
    a = heldout_split(data, n_sentences=2, n_speakers=2, seed=0)
    assert a == heldout_split(data, n_sentences=2, n_speakers=2, seed=0)
    assert len(a["sentences"]) == 2 and set(a["sentences"]) <= {c.id.rsplit("_", 1)[1] for c in clips}
    assert len(a["speakers"]) == 2 and all(s.startswith("ls") for s in a["speakers"])


def test_with_text_keeps_only_usable_transcripts(tmp_path, clips):
    data = fake_data(tmp_path, clips)
    cuts = manifests_from_tsv(data, transcribed=False)
    texts = {"ls_0": "chapter one this is rachel", "ls_1": "too short", "ls_2": ""}
    out = with_text(cuts, texts)
    assert isinstance(out, CutSet) and [c.id for c in out] == ["ls_0"]
    assert out[0].supervisions[0].text == "chapter one this is rachel"
    assert out[0].supervisions[0].speaker == "ls0"


def test_asr_transcripts_in_parallel_match_one_process_and_resume_from_the_cache(tmp_path, clips):
    cuts = manifests_from_tsv(fake_data(tmp_path, clips), transcribed=False)
    one = asr_transcripts(cuts, tmp_path / "one.tsv", workers=1)
    assert set(one) == {c.id for c in cuts} and sum(len(t.split()) for t in one.values()) >= len(cuts)
    assert asr_transcripts(cuts, tmp_path / "two.tsv", workers=2) == one
    partial = tmp_path / "partial.tsv"
    partial.write_text("id\ttext\nls_0\tkept from the cache\n")
    resumed = asr_transcripts(cuts, partial, workers=2)
    assert resumed == {**one, "ls_0": "kept from the cache"}
    assert "kept from the cache" in partial.read_text() and len(partial.read_text().splitlines()) == len(cuts) + 1


def test_the_code0_fine_tune_is_a_valid_config_of_its_own(tmp_path):
    """Step 6 of the recipe: the demo config with the fine-tune's overrides loads, and the
    fine-tune's settings win over the user's --set values."""
    from pathlib import Path

    from valle2.config import load_config
    from valle2.recipe import DemoRecipe, code0_overrides

    r = DemoRecipe(data=tmp_path, out=tmp_path / "out", code0_steps=700, overrides=("optim.steps=9", "run.threads=1"))
    cfg = load_config(Path("configs/demo.yaml"), code0_overrides(r, tmp_path / "prepared", tmp_path / "m.pt"))
    assert cfg.model.nar_code0 and cfg.model.aligned and not cfg.optim.train_ar
    assert cfg.optim.steps == 700 and cfg.run.threads == 1 and cfg.run.init_from == str(tmp_path / "m.pt")
    assert cfg.data.train == str(tmp_path / "prepared" / "train") and cfg.run.out_dir == str(tmp_path / "out" / "code0")


def test_timed_records_each_step_and_prints_it(capsys):
    from valle2.recipe import timed

    times = {}
    with timed("preparation", times):
        sum(range(10_000))
    assert list(times) == ["preparation"] and times["preparation"] >= 0.0
    assert "recipe: preparation took" in capsys.readouterr().out
