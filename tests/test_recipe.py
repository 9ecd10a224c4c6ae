"""The demo recipe's deterministic pieces: held-out lists and transcript attachment."""
import shutil

from lhotse import CutSet

from valle2.data import manifests_from_tsv
from valle2.recipe import heldout_split, with_text


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
