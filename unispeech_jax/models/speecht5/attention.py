"""SpeechT5 multi-head attention (HF parameter names), with the optional relative-position
term and the incremental-decoding caches."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from unispeech_jax.models import dropout, layers

Dtype = Any
_MASK_VALUE = -1e30  # finite, so a fully masked row gives a uniform softmax instead of NaN


class Attention(nn.Module):
    """Multi-head attention with an optional relative-position term and a decoding cache.

    __call__(x [B,Tq,D], kv_input [B,Tk,D], mask bool [B,1,Tq,Tk'], position_bias [Tq,Tk,d_h]
    or None, cache or None, index: where x's first step goes in a self-attention cache)
    → (out [B,Tq,D], updated cache or None). Self-attention cache {'k','v': [B,Tmax,D]}: the
    keys/values of x are written at `index` and the queries attend over all Tmax cached steps
    (mask is [B,1,Tq,Tmax]). `memory` (cross-attention) cache: {} projects kv_input and returns
    its keys/values {'k','v': [B,Tk,D]}; passing those back skips the projections, so that
    incremental decoding projects the encoder output once, not at every step.
    Softmax in float32, masked logits get a big finite negative. `sow_probs`: the softmax
    probabilities [B,h,Tq,Tk] (before dropout) go to 'intermediates'/'probs' when that
    collection is mutable (the TTS guided attention loss reads them).
    """

    hidden_size: int
    num_heads: int
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    memory: bool = False
    sow_probs: bool = False

    @nn.compact
    def __call__(
        self,
        x,
        kv_input,
        mask,
        position_bias=None,
        cache=None,
        index=0,
        deterministic=True,
    ):
        b, tq, d = x.shape
        h = self.num_heads
        hd = d // h
        dense = lambda name: layers._dense(d, ("embed", "heads"), self.dtype, name)
        q = dense("q_proj")(x) * (hd**-0.5)
        if self.memory and cache:
            k, v = cache["k"], cache["v"]
        else:
            k = dense("k_proj")(kv_input)
            v = dense("v_proj")(kv_input)
            if self.memory and cache is not None:
                cache = {"k": k, "v": v}
            elif cache is not None:
                k = jax.lax.dynamic_update_slice(
                    cache["k"], k.astype(cache["k"].dtype), (0, index, 0)
                )
                v = jax.lax.dynamic_update_slice(
                    cache["v"], v.astype(cache["v"].dtype), (0, index, 0)
                )
                cache = {"k": k, "v": v}
        q = nn.with_logical_constraint(q, layers.ACT_BTH).reshape(b, tq, h, hd)
        k = k.reshape(b, -1, h, hd)
        v = v.reshape(b, -1, h, hd)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k)
        if position_bias is not None:
            logits = logits + jnp.einsum("bqhd,qkd->bhqk", q, position_bias.astype(q.dtype))
        logits = jnp.where(mask, logits.astype(jnp.float32), _MASK_VALUE)
        probs = jax.nn.softmax(logits, axis=-1)
        if self.sow_probs:
            self.sow("intermediates", "probs", probs)
        probs = dropout.Dropout(self.dropout)(probs, deterministic=deterministic).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, tq, d)
        out = nn.with_logical_constraint(out, layers.ACT_BTH)
        return layers._dense(d, ("heads", "embed"), self.dtype, "out_proj")(out), cache
