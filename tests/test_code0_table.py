"""The context table: codebook 0 drafted from context-dependent phone statistics (valle2.code0.table)."""
import numpy as np
import pytest
import torch

from valle2.code0.table import N_PLACES, ContextTable, frame_contexts

N_VOCAB = 6
VECTORS = torch.eye(16) * 4.0  # 16 codewords far apart: the nearest code of a mean is its majority


def test_frame_contexts_read_neighbours_and_place():
    text, index = np.array([3, 1, 4]), np.array([0, 0, 0, 1, 2, 2, 2, 2, 2, 2])
    ctx, tp = frame_contexts(text, index, N_VOCAB)
    places = [0, 1, 2, 0, 0, 0, 1, 1, 2, 2]
    assert tp.tolist() == [t * N_PLACES + p for t, p in zip([3, 3, 3, 1, 4, 4, 4, 4, 4, 4], places)]
    prev, nxt = [6, 6, 6, 3, 1, 1, 1, 1, 1, 1], [1, 1, 1, 4, 6, 6, 6, 6, 6, 6]  # the text's edges read as N_VOCAB
    tok = [3, 3, 3, 1, 4, 4, 4, 4, 4, 4]
    want = [((p * (N_VOCAB + 1) + n) * N_VOCAB + t) * N_PLACES + pl for p, n, t, pl in zip(prev, nxt, tok, places)]
    assert ctx.tolist() == want


def utterance(speaker: str, text: list[int], frames: int = 4):
    """Each token lasts ``frames`` frames; its code is the token id plus 8 for speaker "b", and its
    last frame, when it precedes token 2, is code 15 (a context effect)."""
    index = torch.arange(len(text)).repeat_interleave(frames)
    codes = torch.tensor(text)[index] + (8 if speaker == "b" else 0)
    for k in range(len(text) - 1):
        if text[k + 1] == 2:
            codes[(k + 1) * frames - 1] = 15
    return speaker, torch.tensor(text), codes, index


def test_fit_and_draft_reproduce_codes_by_context_and_back_off():
    table = ContextTable(N_VOCAB)
    items = [utterance(s, t) for s in "ab" for t in ([1, 2, 3], [3, 2, 1], [1, 3, 4]) for _ in range(5)]
    items.append(utterance("c", [5, 1], frames=2))
    voices = table.fit(items, VECTORS, min_voice_frames=40, min_count=5)
    assert voices == ["a", "b"] and table.n_voices == 2                # c has too few frames to be a voice
    for v, s in ((0, "a"), (1, "b")):
        _, text, codes, index = utterance(s, [1, 2, 3])
        assert torch.equal(table.draft(v, text, index), codes)         # context effects included
    # an unseen context backs off to the token's place, an unseen token to the voice's mean
    draft = table.draft(0, torch.tensor([4, 1, 5]), torch.tensor([0, 0, 1, 1, 2, 2]))
    assert draft[:4].tolist() == [4, 4, 1, 1] and draft[4] == draft[5] == table.voice_codes[0]
    # too few frames for any voice: one voice, the pool of every speaker
    small = ContextTable(N_VOCAB)
    assert small.fit(items[:3], VECTORS, min_voice_frames=10_000) == ["*"] and small.n_voices == 1
    with pytest.raises(ValueError, match="2 voice\\(s\\); voice 2 does not exist"):
        table.draft(2, torch.tensor([1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="no \\(text, codes\\) pairs"):
        ContextTable(N_VOCAB).fit([], VECTORS, min_voice_frames=1)


def test_choose_voice_picks_the_speaker_whose_draft_matches_the_prompt():
    table = ContextTable(N_VOCAB)
    table.fit([utterance(s, [1, 2, 3]) for s in "ab" for _ in range(5)], VECTORS, min_voice_frames=20)
    for want, s in ((0, "a"), (1, "b")):
        _, text, codes, index = utterance(s, [3, 2, 1])
        assert table.choose_voice(text, codes, index, VECTORS) == want


def test_the_table_travels_in_a_state_dict_whatever_its_size():
    table = ContextTable(N_VOCAB)
    table.fit([utterance(s, [1, 2, 3]) for s in "ab" for _ in range(5)], VECTORS, min_voice_frames=20)
    loaded = ContextTable(N_VOCAB)
    loaded.load_state_dict(table.state_dict())
    assert loaded.n_voices == 2 and all(torch.equal(a, b) for a, b in zip(loaded.buffers(), table.buffers()))
    _, text, codes, index = utterance("a", [2, 1])
    assert torch.equal(loaded.draft(0, text, index), table.draft(0, text, index))
    empty = ContextTable(N_VOCAB)
    empty.load_state_dict({})  # a model file from before the table: no voices
    assert empty.n_voices == 0
    with pytest.raises(ValueError, match="has 0 voice\\(s\\).*model.nar_code0"):
        empty.draft(0, text, index)
