"""The hashed dropout mask: keep rate, independence across calls and neighbours, the
flax.linen.Dropout contract."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unispeech_jax.models import dropout

N = (1000, 1000)


def _within(value, expected, p_var, n, sigmas=5.0):
    return abs(value - expected) < sigmas * np.sqrt(p_var / n)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_keep_rate_and_independence(keep):
    a = np.asarray(dropout.keep_mask(jax.random.key(0), N, keep))
    b = np.asarray(dropout.keep_mask(jax.random.key(1), N, keep))
    n = a.size
    assert _within(a.mean(), keep, keep * (1 - keep), n)
    both = keep * keep
    # Another call's mask, the right-hand neighbour and the neighbour below: independent.
    for pair in (a & b, a[:, 1:] & a[:, :-1], a[1:] & a[:-1]):
        assert _within(pair.mean(), both, both * (1 - both), pair.size), pair.mean()


def test_mask_depends_on_the_index_only():
    """Same key: the same mask whether computed whole or as a slice of a bigger array's
    leading rows (what a shard of a sharded array computes)."""
    whole = dropout.keep_mask(jax.random.key(3), (64, 50), 0.7)
    again = jax.jit(lambda k: dropout.keep_mask(k, (64, 50), 0.7))(jax.random.key(3))
    np.testing.assert_array_equal(whole, again)
    assert not np.array_equal(whole, dropout.keep_mask(jax.random.key(4), (64, 50), 0.7))


def test_masks_of_2_to_the_32_elements_or_more_are_built():
    """The attention probabilities of 1024 rows of 15.6 s (12 heads, 780 frames) have 7.5e9
    elements: the mask is traced (an ahead-of-time compile of a v5e-256 step needs it)."""
    shape = (1024, 12, 780, 780)
    out = jax.eval_shape(lambda k: dropout.keep_mask(k, shape, 0.9), jax.random.key(0))
    assert out.shape == shape and out.dtype == jnp.bool_
    with pytest.raises(ValueError, match="an axis of"):
        dropout.index_words((2**32, 2), 2**32)


def test_two_word_index_keeps_small_masks_and_splits_big_ones(monkeypatch):
    hi, lo = dropout.index_words((3, 4, 5), 2**32)
    np.testing.assert_array_equal(hi, 0)
    np.testing.assert_array_equal(lo, np.arange(60).reshape(3, 4, 5))
    hi, lo = dropout.index_words((6, 4, 5), 64)  # 20-element blocks: hi over 6 rows
    np.testing.assert_array_equal(hi, np.broadcast_to(np.arange(6)[:, None, None], (6, 4, 5)))
    np.testing.assert_array_equal(lo, np.broadcast_to(np.arange(20).reshape(4, 5), (6, 4, 5)))
    # Masks past the first word: rows of the same `lo` do not repeat, the keep rate holds.
    small = np.asarray(dropout.keep_mask(jax.random.key(7), (1000, 1000), 0.5))
    monkeypatch.setattr(dropout, "_WORD", 2000)
    split = np.asarray(dropout.keep_mask(jax.random.key(7), (1000, 1000), 0.5))
    np.testing.assert_array_equal(split[0], small[0])  # hi = 0: the one-word mask
    assert _within((split[1:] & split[:-1]).mean(), 0.25, 0.25 * 0.75, split[1:].size)
    assert _within(split.mean(), 0.5, 0.25, split.size)


def test_module_follows_the_flax_dropout_contract():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((256, 512)), jnp.float32)
    layer = dropout.Dropout(0.25)
    rngs = {"dropout": jax.random.key(5)}
    np.testing.assert_array_equal(layer.apply({}, x, deterministic=True, rngs=rngs), x)
    np.testing.assert_array_equal(dropout.Dropout(0.0).apply({}, x, deterministic=False), x)
    np.testing.assert_array_equal(
        dropout.Dropout(1.0).apply({}, x, deterministic=False, rngs=rngs), jnp.zeros_like(x)
    )
    y = np.asarray(layer.apply({}, x, deterministic=False, rngs=rngs))
    kept = y != 0
    np.testing.assert_allclose(y[kept], np.asarray(x)[kept] / 0.75, rtol=1e-6)
    assert _within(kept.mean(), 0.75, 0.75 * 0.25, kept.size)
    np.testing.assert_array_equal(y, layer.apply({}, x, deterministic=False, rngs=rngs))
    other = layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(6)})
    assert not np.array_equal(y, other)
    bf16 = layer.apply({}, x.astype(jnp.bfloat16), deterministic=False, rngs=rngs)
    assert bf16.dtype == jnp.bfloat16
