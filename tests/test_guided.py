"""The guided-attention training aid (valle2.guided): its penalty reads the diagonal, it trains the
attention towards it, and it is refused where it does not apply."""
import pytest
import torch

from valle2.config import OptimConfig
from valle2.errors import ConfigError
from valle2.guided import GuidedAttention, diagonal_penalty
from valle2.model import ARModel, ModelDims, pack
from valle2.train import Trainer


def dims(**kw):
    base = dict(n_text_vocab=50, codebook_size=64, d_model=32, n_heads=2, n_ar_layers=3, n_nar_layers=1,
                d_ff=64, dropout=0.0, group_size=2)
    return ModelDims(**{**base, **kw})


def test_penalty_is_low_on_the_diagonal_and_high_off_it():
    n_text, n_audio = 10, 20
    _, _, seg = pack(torch.zeros(1, n_text, dtype=torch.long), torch.tensor([n_text]),
                     torch.zeros(1, n_audio, 4), torch.tensor([n_audio]))
    s = seg.shape[1]
    diag, anti = torch.zeros(1, 1, s, s), torch.zeros(1, 1, s, s)
    for t in range(n_audio):
        diag[0, 0, n_text + t, t // 2] = 1.0                 # audio group t reads token t / 2
        anti[0, 0, n_text + t, n_text - 1 - t // 2] = 1.0    # ... the mirrored token
    assert diagonal_penalty([diag], seg, 0.2) < 0.05
    assert diagonal_penalty([anti], seg, 0.2) > 0.5


def test_the_loss_moves_the_guided_heads_towards_the_diagonal():
    torch.manual_seed(0)
    ar = ARModel(dims())
    guide = GuidedAttention(weight=5.0, sigma=0.2, heads=1)
    text, lens = torch.randint(1, 50, (2, 8)), torch.tensor([8, 6])
    codes = [torch.randint(0, 64, (24,)), torch.randint(0, 64, (18,))]
    opt = torch.optim.Adam(ar.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss, stats = ar.loss(text, lens, codes, guide=guide)
        first = stats["ar_guide"] if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert stats["ar_guide"] < 0.5 * first
    plain, plain_stats = ar.loss(text, lens, codes)
    assert "ar_guide" not in plain_stats and plain.item() < loss.item()  # the penalty is added, never hidden


def test_guided_attention_is_refused_where_it_does_not_apply():
    with pytest.raises(ValueError, match="sigma > 0"):
        OptimConfig(guided_attention=1.0, guided_attention_sigma=0.0)
    with pytest.raises(ValueError, match=">= 0"):
        OptimConfig(guided_attention=-1.0)
    assert OptimConfig().guide is None
    with pytest.raises(ConfigError, match="2 heads .* 1 heads"):
        Trainer(dims(n_heads=1), OptimConfig(guided_attention=1.0))
    with pytest.raises(ConfigError, match="train_ar=false"):
        Trainer(dims(), OptimConfig(guided_attention=1.0, train_ar=False))
