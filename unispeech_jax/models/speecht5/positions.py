"""SpeechT5 position encodings: the fixed fairseq and ESPnet sinusoid tables and the
Shaw-style relative-position key embedding of the encoder."""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp

from unispeech_jax.models import dropout, layers


def fairseq_sinusoidal(positions, dim: int, padding_idx: int):
    """fairseq/Speech2Text sinusoids for int [B,T] position ids → float32 [B,T,dim].

    Row p is [sin(p·f_0..f_{h-1}), cos(p·f_0..f_{h-1})] with h = dim//2 and
    f_k = exp(−k·ln(10000)/(h − 1)); an odd dim gets a zero last column; the padding id maps
    to zeros.
    """
    half = dim // 2
    freqs = jnp.exp(jnp.arange(half, dtype=jnp.float32) * -(math.log(10000.0) / (half - 1)))
    angles = positions.astype(jnp.float32)[..., None] * freqs
    emb = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, [(0, 0)] * (emb.ndim - 1) + [(0, 1)])
    return jnp.where((positions == padding_idx)[..., None], 0.0, emb)


def padded_position_ids(valid, padding_idx: int, offset=0):
    """fairseq position ids: the n-th real step (1-based) → padding_idx + offset + n; padding →
    padding_idx. valid bool [B,T]; offset: steps already decoded (int or traced scalar)."""
    valid = valid.astype(jnp.int32)
    return (jnp.cumsum(valid, axis=1) + offset) * valid + padding_idx


def scaled_position_table(start, length: int, dim: int):
    """ESPnet table rows start … start+length−1 → float32 [length, dim] (sin even, cos odd
    columns, frequency exp(−2k·ln(10000)/dim)); `start` may be traced."""
    position = (start + jnp.arange(length)).astype(jnp.float32)[:, None]
    div = jnp.exp(jnp.arange(0, dim, 2, dtype=jnp.float32) * -(math.log(10000.0) / dim))
    table = jnp.zeros((length, dim), jnp.float32)
    table = table.at[:, 0::2].set(jnp.sin(position * div))
    return table.at[:, 1::2].set(jnp.cos(position * div)[:, : dim // 2])


def relative_position_ids(q_len: int, k_len: int, max_distance: int):
    """int [q_len, k_len] rows of the relative table: clip(i − j, −M, M − 1) + M."""
    distance = jnp.arange(q_len)[:, None] - jnp.arange(k_len)[None, :]
    return jnp.clip(distance, -max_distance, max_distance - 1) + max_distance


class RelativePositionalEncoding(nn.Module):
    """Shaw et al. key embeddings E [2M, d_h] gathered per (query, key) pair → [T, T, d_h]."""

    head_dim: int
    max_distance: int

    @nn.compact
    def __call__(self, length: int):
        table = self.param(
            "pe_k",
            layers._part(nn.initializers.normal(1.0), ("relpos", "head_dim")),
            (2 * self.max_distance, self.head_dim),
        )
        return jnp.take(table, relative_position_ids(length, length, self.max_distance), axis=0)


class ScaledPositionalEncoding(nn.Module):
    """x + alpha · table[offset:offset+T] → dropout, on [B,T,D] (learned scalar alpha)."""

    dropout: float

    @nn.compact
    def __call__(self, x, offset=0, deterministic: bool = True):
        alpha = self.param("alpha", layers._part(nn.initializers.ones, ()), ())
        table = scaled_position_table(offset, x.shape[1], x.shape[-1])
        x = x + (alpha * table).astype(x.dtype)
        return dropout.Dropout(self.dropout)(x, deterministic=deterministic)
