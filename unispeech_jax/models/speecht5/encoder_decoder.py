"""The shared SpeechT5 encoder (post-LN blocks with relative positions) and decoder (causal
self-attention, cross-attention, FFN; an explicit cache for incremental decoding)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from unispeech_jax.models import dropout, layers
from unispeech_jax.models.speecht5.args import ModelArgs
from unispeech_jax.models.speecht5.attention import Attention
from unispeech_jax.models.speecht5.positions import RelativePositionalEncoding


class EncoderLayer(nn.Module):
    """Post-LN block with relative positions: x = LN(x + drop(attn(x))); x = LN'(x + ffn(x)).

    (x [B,T,D], mask bool [B,1,1,T], position_bias [T,T,d_h]) → [B,T,D]. Layerdrop selects the
    block input (one draw per layer per step, 'dropout' rng), as layers.EncoderLayer.
    """

    args: ModelArgs
    deterministic: bool = True

    @nn.compact
    def __call__(self, x, mask, position_bias):
        a, det, dt = self.args, self.deterministic, self.args.compute_dtype
        attn = Attention(
            a.hidden_size,
            a.encoder_attention_heads,
            a.attention_dropout,
            dt,
            name="attention",
        )
        h, _ = attn(x, x, mask, position_bias, deterministic=det)
        drop = dropout.Dropout(a.hidden_dropout)
        y = layers._layer_norm(a.layer_norm_eps, dt, "layer_norm")(x + drop(h, deterministic=det))
        ffn = layers.FeedForward(
            a.hidden_size,
            a.encoder_ffn_dim,
            a.activation_dropout,
            a.hidden_dropout,
            dt,
            name="feed_forward",
        )
        y = layers._layer_norm(a.layer_norm_eps, dt, "final_layer_norm")(y + ffn(y, det))
        if a.encoder_layerdrop > 0.0 and not det:
            y = jnp.where(
                jax.random.bernoulli(self.make_rng("dropout"), a.encoder_layerdrop),
                x,
                y,
            )
        return nn.with_logical_constraint(y.astype(x.dtype), layers.ACT_BTD)


class Encoder(nn.Module):
    """Shared encoder on pre-net output: [B,T,D], bool [B,T] → [B,T,D].

    LN → dropout → layers; the relative-position embedding (`embed_positions`) is computed
    once and shared by every layer and head.
    """

    args: ModelArgs

    @nn.compact
    def __call__(self, x, valid, deterministic: bool = True):
        a, dt = self.args, self.args.compute_dtype
        x = layers._layer_norm(a.layer_norm_eps, dt, "layer_norm")(x.astype(dt))
        x = dropout.Dropout(a.hidden_dropout)(x, deterministic=deterministic)
        head_dim = a.hidden_size // a.encoder_attention_heads
        bias = RelativePositionalEncoding(
            head_dim, a.encoder_max_relative_position, name="embed_positions"
        )(x.shape[1])
        mask = valid[:, None, None, :]
        for i in range(a.encoder_layers):
            x = EncoderLayer(a, deterministic, name=f"layers_{i}")(x, mask, bias)
        return x


class DecoderLayer(nn.Module):
    """Post-LN decoder block: causal self-attention, cross-attention, FFN, each + residual + LN.

    (x [B,L,D], self_mask [B,1,L,L'], enc [B,T,D], cross_mask [B,1,1,T], cache, index)
    → (x [B,L,D], cache). L' = L without a cache, Tmax with one. cache: {'self': the
    self-attention cache, 'cross': the cross-attention memory cache} (see Attention).
    """

    args: ModelArgs
    deterministic: bool = True

    @nn.compact
    def __call__(self, x, self_mask, enc, cross_mask, cache=None, index=0):
        a, det, dt = self.args, self.deterministic, self.args.compute_dtype
        heads = a.decoder_attention_heads
        drop = dropout.Dropout(a.hidden_dropout)
        h, self_cache = Attention(a.hidden_size, heads, a.attention_dropout, dt, name="self_attn")(
            x,
            x,
            self_mask,
            cache=None if cache is None else cache["self"],
            index=index,
            deterministic=det,
        )
        x = layers._layer_norm(a.layer_norm_eps, dt, "self_attn_layer_norm")(
            x + drop(h, deterministic=det)
        )
        h, cross_cache = Attention(
            a.hidden_size,
            heads,
            a.attention_dropout,
            dt,
            memory=True,
            sow_probs=True,
            name="encoder_attn",
        )(x, enc, cross_mask, cache=None if cache is None else cache["cross"], deterministic=det)
        x = layers._layer_norm(a.layer_norm_eps, dt, "encoder_attn_layer_norm")(
            x + drop(h, deterministic=det)
        )
        ffn = layers.FeedForward(
            a.hidden_size,
            a.decoder_ffn_dim,
            a.activation_dropout,
            a.hidden_dropout,
            dt,
            name="feed_forward",
        )
        x = layers._layer_norm(a.layer_norm_eps, dt, "final_layer_norm")(x + ffn(x, det))
        if cache is not None:
            cache = {"self": self_cache, "cross": cross_cache}
        return nn.with_logical_constraint(x, layers.ACT_BTD), cache


class Decoder(nn.Module):
    """Decoder stack on pre-net output.

    __call__(x [B,L,D], dec_valid bool [B,L], enc [B,T,D], enc_valid bool [B,T], cache=None)
    → (hidden [B,L,D], cache). Without a cache, step i attends to valid steps j ≤ i. With a
    cache (`init_cache`), x holds the steps index … index+L−1; they are appended and attend to
    every valid cached step at or before them; the returned cache has index += L.
    Layerdrop as in the encoder (training only).
    """

    args: ModelArgs

    @nn.compact
    def __call__(self, x, dec_valid, enc, enc_valid, cache=None, deterministic: bool = True):
        a = self.args
        steps = x.shape[1]
        if cache is None:
            index, key_valid = 0, dec_valid
            key_pos = jnp.arange(steps)
        else:
            index = cache["index"]
            key_valid = jax.lax.dynamic_update_slice(cache["valid"], dec_valid, (0, index))
            key_pos = jnp.arange(key_valid.shape[1])
        query_pos = index + jnp.arange(steps)
        self_mask = (key_pos[None, :] <= query_pos[:, None])[None, None] & key_valid[
            :, None, None, :
        ]
        cross_mask = enc_valid[:, None, None, :]
        new_cache = None if cache is None else {"index": index + steps, "valid": key_valid}
        for i in range(a.decoder_layers):
            name = f"layers_{i}"
            layer = DecoderLayer(a, deterministic, name=name)
            y, layer_cache = layer(
                x,
                self_mask,
                enc,
                cross_mask,
                None if cache is None else cache[name],
                index,
            )
            if a.decoder_layerdrop > 0.0 and not deterministic:
                y = jnp.where(
                    jax.random.bernoulli(self.make_rng("dropout"), a.decoder_layerdrop),
                    x,
                    y,
                )
            x = y
            if cache is not None:
                new_cache[name] = layer_cache
        return x, new_cache


def init_cache(model_cfg, batch: int, max_length: int, dtype=jnp.float32) -> dict:
    """Empty decoder cache for `max_length` steps: {'index': int32 [], 'valid': bool [B,Lmax],
    'layers_i': {'self': {'k','v': [B,Lmax,D]}, 'cross': {}}}. The first decoding call fills
    'cross' with the projected encoder output ({'k','v': [B,T,D]}), which later calls reuse."""
    a = ModelArgs.from_config(model_cfg)
    zeros = jnp.zeros((batch, max_length, a.hidden_size), dtype)
    cache = {
        "index": jnp.zeros((), jnp.int32),
        "valid": jnp.zeros((batch, max_length), bool),
    }
    for i in range(a.decoder_layers):
        cache[f"layers_{i}"] = {"self": {"k": zeros, "v": zeros}, "cross": {}}
    return cache
