"""CTC greedy decoding and error rates on small hand-checked cases."""

import jax.numpy as jnp
import numpy as np

from unispeech_jax.decoding import collapse_ctc, ctc_greedy
from unispeech_jax.metrics import error_rate, per_from_ids


def _one_hot_logits(paths, classes=5):
    return np.eye(classes, dtype=np.float32)[np.asarray(paths)] * 3.0


def test_collapse_merges_repeats_then_drops_blanks():
    assert collapse_ctc([0, 1, 1, 0, 1, 2, 2, 0, 0, 3]) == [1, 1, 2, 3]
    assert collapse_ctc([]) == [] and collapse_ctc([0, 0]) == []
    assert collapse_ctc([4, 4, 2], blank_id=4) == [2]


def test_ctc_greedy_respects_valid_length():
    paths = [[1, 1, 0, 2, 2, 3], [0, 4, 4, 4, 0, 1], [3, 3, 3, 3, 3, 3]]
    valid = np.arange(6)[None, :] < np.array([[6], [4], [0]])
    for logits in (_one_hot_logits(paths), jnp.asarray(_one_hot_logits(paths))):
        assert ctc_greedy(logits, valid) == [[1, 2, 3], [4], []]


def test_error_rate_counts_substitutions_insertions_deletions():
    # 1 substitution + 1 insertion, then 1 deletion: 3 errors over 5 reference tokens.
    assert error_rate(["a b c", "d e"], ["a x c y", "d"]) == 3 / 5
    assert error_rate(["a b"], ["a b"]) == 0.0


def test_error_rate_empty_references():
    assert error_rate(["", "a b"], ["", "a b"]) == 0.0
    assert error_rate(["", "a b"], ["x y", "a b"]) == 1.0  # 2 insertions / 2 ref tokens
    assert error_rate([""], ["x y"]) == 2.0  # denominator floored at one token
    assert error_rate([""], [""]) == 0.0
    assert error_rate([], []) == 0.0


def test_per_from_ids_drops_word_boundaries_and_padding():
    symbols = ["<blank>", "<unk>", "h", "ə", "l", "oʊ", "|"]
    ref = [[2, 3, 4, 5, 6, 0, 0]]  # h ə l oʊ | + padding
    hyp = [[2, 4, 5, 6]]  # one deletion
    assert per_from_ids(ref, hyp, symbols) == 1 / 4
    assert per_from_ids(ref, hyp, dict(enumerate(symbols)), ignore=()) == 1 / 5
