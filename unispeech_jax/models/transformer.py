"""The one Transformer block of both model families, its attention and feed-forward parts, the
layer stack (a Python loop or one `nn.scan`, optionally rematerialised per layer) and the
wav2vec 2.0 / UniSpeech encoder (positional conv + stack).

Parameter names are Hugging Face's (wav2vec 2.0 / UniSpeech encoder layers: attention,
layer_norm, feed_forward, final_layer_norm; SpeechT5 decoder layers: self_attn,
self_attn_layer_norm, encoder_attn, encoder_attn_layer_norm, feed_forward, final_layer_norm),
so that the weight converters are rename tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from unispeech_jax.models import dropout
from unispeech_jax.models.layers import (
    ACT_BTD,
    ACT_BTF,
    ACT_BTH,
    PositionalConvEmbedding,
    _dense,
    _layer_norm,
    gelu,
)

Dtype = Any
_MASK_VALUE = -1e30  # finite, so a fully masked row gives a uniform softmax instead of NaN


class Attention(nn.Module):
    """Multi-head attention with an optional relative-position term and a decoding cache.

    __call__(x [B,Tq,D], kv_input [B,Tk,D], mask bool broadcastable to [B,h,Tq,Tk'],
    position_bias [Tq,Tk,d_h] or None, cache or None, index: where x's first step goes in a
    self-attention cache) → (out [B,Tq,D], updated cache or None).
    Relative positions (SpeechT5, Shaw et al.): logits[i, j] += (q_i / sqrt(d_h)) · bias[i, j].
    Self-attention cache {'k','v': [B,Tmax,D]}: the keys/values of x are written at `index`
    and the queries attend over all Tmax cached steps (mask is [B,1,Tq,Tmax]). `memory`
    (cross-attention) cache: {} projects kv_input and returns its keys/values {'k','v':
    [B,Tk,D]}; passing those back skips the projections, so that incremental decoding projects
    the encoder output once, not at every step.
    Plain einsum attention with the softmax in float32 (exact fp32 parity with torch eager and
    attention-probability dropout, which `jax.nn.dot_product_attention` does not offer); masked
    logits get a big finite negative. `sow_probs`: the softmax probabilities [B,h,Tq,Tk]
    (before dropout) go to 'intermediates'/'probs' when that collection is mutable (the TTS
    guided attention loss reads them).
    """

    hidden_size: int
    num_heads: int
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    memory: bool = False
    sow_probs: bool = False

    @nn.compact
    def __call__(
        self, x, kv_input, mask, position_bias=None, cache=None, index=0, deterministic=True
    ):
        b, tq, d = x.shape
        h = self.num_heads
        hd = d // h
        dense = lambda name: _dense(d, ("embed", "heads"), self.dtype, name)
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
        q, k, v = (nn.with_logical_constraint(y, ACT_BTH).reshape(b, -1, h, hd) for y in (q, k, v))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k)
        if position_bias is not None:
            logits = logits + jnp.einsum("bqhd,qkd->bhqk", q, position_bias.astype(q.dtype))
        logits = jnp.where(mask, logits.astype(jnp.float32), _MASK_VALUE)
        probs = jax.nn.softmax(logits, axis=-1)
        if self.sow_probs:
            self.sow("intermediates", "probs", probs)
        probs = dropout.Dropout(self.dropout)(probs, deterministic=deterministic).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, tq, d)
        out = nn.with_logical_constraint(out, ACT_BTH)
        return _dense(d, ("heads", "embed"), self.dtype, "out_proj")(out), cache


class FeedForward(nn.Module):
    """Dense(F) → GELU → dropout(activation) → Dense(D) → dropout(hidden)."""

    hidden_size: int
    intermediate_size: int
    activation_dropout: float = 0.0
    hidden_dropout: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        y = _dense(self.intermediate_size, ("embed", "mlp"), self.dtype, "intermediate_dense")(x)
        y = nn.with_logical_constraint(gelu(y), ACT_BTF)
        y = dropout.Dropout(self.activation_dropout)(y, deterministic=deterministic)
        y = _dense(self.hidden_size, ("mlp", "embed"), self.dtype, "output_dense")(y)
        return dropout.Dropout(self.hidden_dropout)(y, deterministic=deterministic)


class TransformerLayer(nn.Module):
    """One Transformer block, post-LN (wav2vec2 / SpeechT5) or pre-LN (`layer_norm_first`),
    with cross-attention to a memory as an option (`cross_attention`, the SpeechT5 decoder).

    post-LN: x = LN(x + drop(attn(x))); [x = LN(x + drop(xattn(x, memory)));] x = LN'(x + ffn(x))
    pre-LN:  x = x + drop(attn(LN(x))); [x = x + drop(xattn(LN(x), memory));] x = x + ffn(LN'(x))

    __call__(x [B,T,D], mask bool [B,1,T|1,T'], position_bias [T,T,d_h] or None, memory
    [B,M,D], memory_mask bool [B,1,1,M], cache, index) → (x [B,T,D], cache). cache (decoding
    only): {'self': self-attention cache, 'cross': cross-attention memory cache} (Attention);
    None otherwise. The signature fits nn.scan: x is the carry, cache the per-layer input and
    output, the rest broadcast.

    Layerdrop: in training the whole block is skipped with probability `layerdrop` (one draw
    per layer per step, shared by the batch, from the 'dropout' rng stream). It is implemented
    by selecting the block input instead of its output (`jnp.where`), so shapes, scan and remat
    are untouched; the skipped block is still computed (no FLOP saving, same regularisation).
    """

    hidden_size: int
    num_heads: int
    intermediate_size: int
    layer_norm_first: bool = False
    layer_norm_eps: float = 1e-5
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    layerdrop: float = 0.0
    cross_attention: bool = False
    deterministic: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, x, mask, position_bias=None, memory=None, memory_mask=None, cache=None, index=0
    ):
        det, dt = self.deterministic, self.dtype
        drop = dropout.Dropout(self.hidden_dropout)

        def residual(y, sublayer, norm_name):
            """Post-LN: LN(y + f(y)); pre-LN: y + f(LN(y)). f includes its dropout."""
            norm = _layer_norm(self.layer_norm_eps, dt, norm_name)
            if self.layer_norm_first:
                return y + sublayer(norm(y))
            return norm(y + sublayer(y))

        def attention(name, **kw):
            return Attention(
                self.hidden_size, self.num_heads, self.attention_dropout, dt, **kw, name=name
            )

        self_name = "self_attn" if self.cross_attention else "attention"
        caches = {}

        def self_attention(y):
            out, caches["self"] = attention(self_name)(
                y, y, mask, position_bias, None if cache is None else cache["self"], index, det
            )
            return drop(out, deterministic=det)

        def cross(y):
            out, caches["cross"] = attention("encoder_attn", memory=True, sow_probs=True)(
                y,
                memory,
                memory_mask,
                cache=None if cache is None else cache["cross"],
                deterministic=det,
            )
            return drop(out, deterministic=det)

        ffn = FeedForward(
            self.hidden_size,
            self.intermediate_size,
            self.activation_dropout,
            self.hidden_dropout,
            dt,
            name="feed_forward",
        )
        y = residual(
            x, self_attention, "self_attn_layer_norm" if self.cross_attention else "layer_norm"
        )
        if self.cross_attention:
            y = residual(y, cross, "encoder_attn_layer_norm")
        y = residual(y, lambda z: ffn(z, det), "final_layer_norm")
        if self.layerdrop > 0.0 and not det:
            skip = jax.random.bernoulli(self.make_rng("dropout"), self.layerdrop)
            y = jnp.where(skip, x, y)
        y = nn.with_logical_constraint(y.astype(x.dtype), ACT_BTD)
        return y, (None if cache is None else caches)


# model.remat: what the backward pass of each layer keeps from its forward pass
REMAT = {
    "none": None,  # everything (no rematerialisation)
    "per_layer": None,  # only the layer's input: the whole block is recomputed
    "dots_saveable": jax.checkpoint_policies.dots_saveable,  # the matmul outputs too
}


def check_remat(setting: str) -> None:
    """Config-time check of `model.remat` (both model families)."""
    if setting not in REMAT:
        raise ValueError(f"model.remat must be one of {list(REMAT)}, got {setting!r}")


def run_layers(
    layer: dict,
    num_layers: int,
    x,
    mask,
    position_bias=None,
    memory=None,
    memory_mask=None,
    cache=None,
    index=0,
    scan: bool = False,
    remat: str = "none",
):
    """`num_layers` TransformerLayer(**layer) blocks on x [B,T,D] → (x [B,T,D], cache), called
    inside the enclosing module's compact method (the layers become its submodules).

    scan: one `nn.scan` over identical layers, params (and sown intermediates) gain a leading
    layer axis under `layers`; cache is then one pytree with that leading axis. Otherwise the
    layers are `layers_0` … `layers_{n-1}` and cache is {'layers_i': layer cache}.
    remat: a REMAT setting, applied per layer. Other arguments as TransformerLayer; they are
    the same for every layer.
    """
    check_remat(remat)
    block = TransformerLayer
    if remat != "none":
        block = nn.remat(block, policy=REMAT[remat], prevent_cse=not scan)
    if scan:
        stack = nn.scan(
            block,
            variable_axes={"params": 0, "intermediates": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=(nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast, 0, nn.broadcast),
            length=num_layers,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )(**layer, name="layers")
        return stack(x, mask, position_bias, memory, memory_mask, cache, index)
    new_cache = None if cache is None else {}
    for i in range(num_layers):
        name = f"layers_{i}"
        x, layer_cache = block(**layer, name=name)(
            x,
            mask,
            position_bias,
            memory,
            memory_mask,
            None if cache is None else cache[name],
            index,
        )
        if cache is not None:
            new_cache[name] = layer_cache
    return x, new_cache


def unstack_layers(tree):
    """Nested dict with every scanned stack (a `layers` subtree, leaves [L, ...]) split into
    `layers_0` … `layers_{L-1}` subtrees, the unscanned layout; other entries unchanged.
    Leaves may be arrays or jax.ShapeDtypeStruct."""
    if not isinstance(tree, Mapping):
        return tree
    out = {}
    for key, value in tree.items():
        if key == "layers" and isinstance(value, Mapping):
            count = jax.tree.leaves(value)[0].shape[0]
            for i in range(count):
                out[f"layers_{i}"] = jax.tree.map(lambda x, i=i: _layer_slice(x, i), value)
        else:
            out[key] = unstack_layers(value)
    return out


def _layer_slice(x, i: int):
    if isinstance(x, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(x.shape[1:], x.dtype)
    return x[i]


def _layer_stack(*xs):
    if isinstance(xs[0], jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct((len(xs), *xs[0].shape), xs[0].dtype)
    return np.stack([np.asarray(x) for x in xs])


def stack_layers(tree, like):
    """Inverse of `unstack_layers` where `like` (a tree of the wanted layout) has a scanned
    stack: its `layers_i` siblings there become one `layers` subtree with leaves [L, ...]
    (numpy, or jax.ShapeDtypeStruct). Everything else unchanged."""
    if not isinstance(tree, Mapping) or not isinstance(like, Mapping):
        return tree
    out = {}
    if "layers" in like and "layers" not in tree and "layers_0" in tree:
        count = sum(1 for key in tree if re.fullmatch(r"layers_\d+", key))
        per_layer = [tree[f"layers_{i}"] for i in range(count)]
        out["layers"] = jax.tree.map(_layer_stack, *per_layer)
        tree = {k: v for k, v in tree.items() if not re.fullmatch(r"layers_\d+", k)}
    for key, value in tree.items():
        out[key] = stack_layers(value, like.get(key))
    return out


def relayout_layers(tree, like):
    """`tree` with its layer stacks in the layout of `like` (scanned or not, per stack)."""
    return stack_layers(unstack_layers(tree), like)


class TransformerEncoder(nn.Module):
    """wav2vec 2.0 / UniSpeech encoder: positional conv + Transformer stack, [B,T,D], bool
    [B,T] → [B,T,D].

    post-LN: zero padding frames → x + pos_conv(x) → LN → dropout → layers
    pre-LN:  zero padding frames → x + pos_conv(x) → dropout → layers → LN

    args: `unispeech.ModelArgs` (hidden_size, num_layers, num_heads, intermediate_size,
    layer_norm_first, layer_norm_eps, num_conv_pos_embeddings, num_conv_pos_embedding_groups,
    the dropouts, layerdrop, scan_layers and remat (see `run_layers`), pos_conv_impl
    (PositionalConvEmbedding.impl), compute_dtype).
    """

    args: Any

    @nn.compact
    def __call__(self, x, valid, deterministic: bool = True):
        a, dt = self.args, self.args.compute_dtype
        x = jnp.where(valid[..., None], x, 0).astype(dt)
        x = x + PositionalConvEmbedding(
            a.hidden_size,
            a.num_conv_pos_embeddings,
            a.num_conv_pos_embedding_groups,
            dt,
            a.pos_conv_impl,
            name="pos_conv_embed",
        )(x)
        final_ln = _layer_norm(a.layer_norm_eps, dt, "layer_norm")
        if not a.layer_norm_first:
            x = final_ln(x)
        x = dropout.Dropout(a.hidden_dropout)(x, deterministic=deterministic)
        x = nn.with_logical_constraint(x, ACT_BTD)
        layer = dict(
            hidden_size=a.hidden_size,
            num_heads=a.num_heads,
            intermediate_size=a.intermediate_size,
            layer_norm_first=a.layer_norm_first,
            layer_norm_eps=a.layer_norm_eps,
            hidden_dropout=a.hidden_dropout,
            attention_dropout=a.attention_dropout,
            activation_dropout=a.activation_dropout,
            layerdrop=a.layerdrop,
            deterministic=deterministic,
            dtype=dt,
        )
        mask = valid[:, None, None, :]
        x, _ = run_layers(layer, a.num_layers, x, mask, scan=a.scan_layers, remat=a.remat)
        if a.layer_norm_first:
            x = final_ln(x)
        return x
