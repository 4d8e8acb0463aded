"""Span masking statistics and distractor sampling."""

import functools
from math import comb

import jax
import jax.numpy as jnp
import numpy as np

from unispeech_jax.models.masking import channel_mask, sample_negatives, span_mask


def _valid(lengths, size):
    return np.arange(size)[None, :] < np.asarray(lengths)[:, None]


def _runs(row):
    """Lengths of the maximal runs of True in a 1-D bool array."""
    padded = np.concatenate([[0], row.astype(int), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return edges[1::2] - edges[::2]


def _expected_masked(n, prob, length, min_masks):
    """Exact expected number of masked frames of a row of n valid frames (brute force)."""
    starts = n - length + 1
    if starts <= 0:
        return 0.0
    x = prob * n / length
    low, frac = int(np.floor(x)), x - np.floor(x)
    total = 0.0
    for k, weight in ((low, 1 - frac), (low + 1, frac)):
        k = min(max(k, min_masks), starts)
        for t in range(n):  # starts covering t: s in [t - length + 1, t] within [0, starts)
            w = min(t, starts - 1) - max(0, t - length + 1) + 1
            total += weight * (1 - comb(starts - w, k) / comb(starts, k))
    return total


def test_fraction_matches_exact_expectation():
    prob, length, min_masks, size = 0.5, 10, 2, 120
    lengths = np.tile([120, 75, 33], 400)
    mask = jax.jit(span_mask, static_argnums=(2, 3, 4))(
        jax.random.key(0), jnp.asarray(_valid(lengths, size)), prob, length, min_masks
    )
    counts = np.asarray(mask).sum(1)
    for n in (120, 75, 33):
        got = counts[lengths == n]
        want = _expected_masked(n, prob, length, min_masks)
        sigma = got.std() / np.sqrt(got.size) + 1e-9
        assert abs(got.mean() - want) < 4 * sigma + 0.05, (n, got.mean(), want)
    # Overlap makes the fraction smaller than prob, but not by much at this rate.
    assert 0.3 < counts[lengths == 120].mean() / 120 < prob


def test_padding_never_masked_and_spans_are_full_length():
    lengths = np.array([64, 40, 25, 12, 9, 0])
    valid = _valid(lengths, 64)
    fn = jax.jit(functools.partial(span_mask, prob=0.3, length=10, min_masks=2))
    for seed in range(20):
        mask = np.asarray(fn(jax.random.key(seed), jnp.asarray(valid)))
        assert not np.any(mask & ~valid)
        for row, n in zip(mask, lengths):
            if n < 10:  # shorter than one span: documented to stay unmasked
                assert not row.any()
                continue
            runs = _runs(row)
            assert len(runs) >= 1 and np.all(runs >= 10)


def test_min_masks_spans_exactly_when_prob_is_zero():
    valid = jnp.ones((300, 50), bool)
    mask = np.asarray(span_mask(jax.random.key(1), valid, 0.0, 5, 2))
    counts = mask.sum(1)
    assert np.all((counts > 5) & (counts <= 10))  # two distinct starts, maybe overlapping
    separate = [r for r in map(_runs, mask) if len(r) == 2]
    assert separate and all(np.all(r == 5) for r in separate)
    merged = [r for r in map(_runs, mask) if len(r) == 1]
    assert all(5 < r[0] <= 10 for r in merged)  # adjacent spans touch at 10


def test_starts_cover_the_whole_valid_range():
    # With one span per row, every allowed start [0, n - length] must occur.
    valid = jnp.asarray(_valid([30] * 2000, 40))
    mask = np.asarray(span_mask(jax.random.key(2), valid, 0.0, 10, 1))
    starts = mask.argmax(1)
    assert set(starts.tolist()) == set(range(21))
    assert mask[:, 30:].sum() == 0


def test_channel_mask_shape_and_min_masks():
    mask = np.asarray(
        jax.jit(channel_mask, static_argnums=(1, 2, 3, 4, 5))(jax.random.key(0), 4, 64, 0.1, 8, 1)
    )
    assert mask.shape == (4, 64)
    assert np.all(mask.sum(1) >= 8)
    assert not np.asarray(channel_mask(jax.random.key(0), 2, 16, 0.0, 40)).any()  # 40 > dim


def test_negatives_never_self_padding_or_non_candidates():
    rng = np.random.default_rng(0)
    size, k = 50, 20
    valid = _valid([50, 37, 20, 10], size)
    candidates = valid & (rng.random((4, size)) < 0.5)
    fn = jax.jit(functools.partial(sample_negatives, num_negatives=k))
    idx = np.asarray(fn(jax.random.key(0), jnp.asarray(candidates)))
    assert idx.shape == (4, size, k) and idx.dtype == np.int32
    for b in range(4):
        for t in range(size):
            if candidates[b].sum() - candidates[b, t] == 0:
                continue
            assert np.all(candidates[b][idx[b, t]]), (b, t)
            assert np.all(idx[b, t] != t)


def test_negatives_roughly_uniform():
    candidates = np.zeros((1, 30), bool)
    candidates[0, [2, 5, 6, 11, 20, 27]] = True
    idx = np.asarray(sample_negatives(jax.random.key(1), jnp.asarray(candidates), 6000))
    # Frame 6 is a candidate: the 5 others, 1200 expected each (std ~31).
    counts = np.bincount(idx[0, 6], minlength=30)
    assert counts[6] == 0
    np.testing.assert_allclose(counts[[2, 5, 11, 20, 27]], 1200, rtol=0.12)
    # Frame 0 is not a candidate: all 6 candidates, 1000 expected each.
    counts = np.bincount(idx[0, 0], minlength=30)
    np.testing.assert_allclose(counts[[2, 5, 6, 11, 20, 27]], 1000, rtol=0.12)


def test_negatives_degenerate_rows_point_to_self():
    candidates = np.zeros((2, 8), bool)
    candidates[0, 3] = True  # one candidate: nothing else to draw for it
    idx = np.asarray(sample_negatives(jax.random.key(0), jnp.asarray(candidates), 4))
    np.testing.assert_array_equal(idx[0, 3], 3)
    assert np.all(idx[0, [0, 1, 2, 4, 5, 6, 7]] == 3)  # the only candidate for the others
    np.testing.assert_array_equal(idx[1], np.repeat(np.arange(8)[:, None], 4, 1))
