"""``valle2 recipe synthetic`` end to end at toy scale: sentences split once, flite reads them, the
test files are attested as a proved synthetic-voice corpus, the offline codec codes them, the paper's
AR and NAR train, and a rerun resumes instead of starting again."""
import json

import pytest

from valle2.checkpoint import load_model_bundle
from valle2.errors import DataError
from valle2.recipe_synthetic import SyntheticRecipe, parse_voice, run_synthetic, heldout_cuts_path

TOY = ("model.d_model=32", "model.n_heads=2", "model.n_ar_layers=1", "model.n_nar_layers=1", "model.d_ff=64",
       "run.valid_every=2", "run.sample_every=1000", "run.checkpoint_every=2", "optim.warmup_steps=1")


def test_the_recipe_trains_the_papers_ar_on_flite_and_resumes(tmp_path):
    from valle2.safety.deployment import Deployment

    r = SyntheticRecipe(out=tmp_path / "run", texts=12, test_sentences=3, valid_sentences=2, steps=2, workers=1,
                        overrides=TOY, home=tmp_path / "home")
    model_path = run_synthetic(r)
    bundle = load_model_bundle(model_path)
    assert bundle.code0_source == "ar" and not bundle.dims.aligned and bundle.dims.group_size == 2
    assert bundle.meta["recipe"]["voices"] == ["flite:kal16"] and bundle.meta["train_seconds"] > 0
    split = json.loads((r.out / "sentences.json").read_text())
    assert len(split["test"]) == 3 and len(split["train"]) == 12 and not set(split["test"]) & set(split["train"])
    from lhotse import CutSet

    test = CutSet.from_file(heldout_cuts_path(r.out))
    registry = Deployment.open(r.home).registry
    assert registry.corpus_for_file(test[0].recording.sources[0].source).synthetic_voice == "flite:kal16"
    r.steps = 4   # a rerun with more steps trains on from the last checkpoint, on the same sentences
    bundle = load_model_bundle(run_synthetic(r))
    assert bundle.meta["steps"] == 4 and json.loads((r.out / "sentences.json").read_text()) == split


@pytest.mark.parametrize("spec", ["kal16", "flute:kal16", "flite:"])
def test_a_voice_is_engine_colon_name(spec):
    with pytest.raises(DataError, match="ENGINE:NAME"):
        parse_voice(spec)


def test_the_held_out_voice_is_never_a_training_voice():
    with pytest.raises(DataError, match="also a training voice"):
        SyntheticRecipe(voices=("flite:kal16",), heldout_voice="flite:kal16")
