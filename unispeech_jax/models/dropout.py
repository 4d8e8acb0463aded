"""Dropout whose mask comes from a counter hash instead of `jax.random.bernoulli`.

On CPU, XLA runs threefry (what `jax.random` uses) at ~20 ns per element: a 0.1 dropout on
one [2, 400, 3072] activation took 35-77 ms against 2-4 ms for the same mask from the hash
below (measured on 2 cores), and a base-size training step draws tens of millions of mask
elements. Here each call draws two 32-bit seeds from its rng stream with threefry, and
element i keeps its value when fmix32(fmix32(i ^ seed0) + seed1) < keep_prob · 2^32 (MurmurHash3's
finaliser: a bijection on 32 bits with full avalanche). Masks are therefore independent
across calls and steps (new seeds), uniform to within 2^-32 in their keep rate, and a pure
function of the element's index in the global array, so they do not depend on the mesh.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def _fmix32(h):
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def keep_mask(key, shape, keep_prob: float):
    """bool [shape]: each element True with probability `keep_prob` (a Python float)."""
    if keep_prob >= 1.0:
        return jnp.ones(shape, bool)
    if math.prod(shape) >= 2**32:
        raise ValueError(
            f"dropout mask of {math.prod(shape)} elements: the index hash needs < 2**32"
        )
    seeds = jax.random.bits(key, (2,), jnp.uint32)
    # Row-major element index from per-axis iotas: elementwise, so it shards with the array.
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in range(len(shape) - 1, -1, -1):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
        stride *= shape[axis]
    bits = _fmix32(_fmix32(index ^ seeds[0]) + seeds[1])
    return bits < jnp.uint32(min(max(round(keep_prob * 2**32), 0), 2**32 - 1))


class Dropout(nn.Module):
    """`flax.linen.Dropout`'s contract (zero with probability `rate`, scale the rest by
    1 / (1 - rate); identity when deterministic or rate is 0; rng stream `rng_collection`),
    with the mask from `keep_mask`."""

    rate: float
    rng_collection: str = "dropout"

    @nn.compact
    def __call__(self, x, deterministic: bool):
        if deterministic or self.rate == 0.0:
            return x
        if self.rate >= 1.0:
            return jnp.zeros_like(x)
        keep_prob = 1.0 - self.rate
        keep = keep_mask(self.make_rng(self.rng_collection), x.shape, keep_prob)
        return jnp.where(keep, x / jnp.asarray(keep_prob, x.dtype), jnp.zeros((), x.dtype))
