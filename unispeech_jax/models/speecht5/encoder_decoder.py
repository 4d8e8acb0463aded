"""The shared SpeechT5 encoder (post-LN blocks with relative positions) and decoder (causal
self-attention, cross-attention, FFN; an explicit cache for incremental decoding), both stacks
of transformer.TransformerLayer."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from unispeech_jax.models import dropout, layers
from unispeech_jax.models.speecht5.args import ModelArgs
from unispeech_jax.models.speecht5.positions import RelativePositionalEncoding
from unispeech_jax.models.transformer import run_layers


def layer_config(a: ModelArgs, decoder: bool, deterministic: bool) -> dict:
    """TransformerLayer attributes of the encoder's or the decoder's blocks (post-LN)."""
    return dict(
        hidden_size=a.hidden_size,
        num_heads=a.decoder_attention_heads if decoder else a.encoder_attention_heads,
        intermediate_size=a.decoder_ffn_dim if decoder else a.encoder_ffn_dim,
        layer_norm_eps=a.layer_norm_eps,
        hidden_dropout=a.hidden_dropout,
        attention_dropout=a.attention_dropout,
        activation_dropout=a.activation_dropout,
        layerdrop=a.decoder_layerdrop if decoder else a.encoder_layerdrop,
        cross_attention=decoder,
        deterministic=deterministic,
        dtype=a.compute_dtype,
    )


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
        layer = layer_config(a, False, deterministic)
        mask = valid[:, None, None, :]
        x, _ = run_layers(layer, a.encoder_layers, x, mask, bias, scan=a.scan_layers, remat=a.remat)
        return x


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
        causal = (key_pos[None, :] <= query_pos[:, None])[None, None]
        self_mask = causal & key_valid[:, None, None, :]
        layer = layer_config(a, True, deterministic)
        x, layer_caches = run_layers(
            layer,
            a.decoder_layers,
            x,
            self_mask,
            memory=enc,
            memory_mask=enc_valid[:, None, None, :],
            cache=None if cache is None else cache["layers"],
            index=index,
            scan=a.scan_layers,
            remat=a.remat,
        )
        if cache is None:
            return x, None
        return x, {"index": index + steps, "valid": key_valid, "layers": layer_caches}


def init_cache(model_cfg, batch: int, max_length: int, dtype=jnp.float32) -> dict:
    """Empty decoder cache for `max_length` steps: {'index': int32 [], 'valid': bool [B,Lmax],
    'layers': per-layer caches}. Scanned layers: one {'self': {'k','v': [N,B,Lmax,D]},
    'cross': {}} for the N layers; unscanned: {'layers_i': {'self': {'k','v': [B,Lmax,D]},
    'cross': {}}}. The first decoding call fills 'cross' with the projected encoder output
    ({'k','v': [(N,)B,T,D]}), which later calls reuse."""
    a = ModelArgs.from_config(model_cfg)
    if a.scan_layers:
        zeros = jnp.zeros((a.decoder_layers, batch, max_length, a.hidden_size), dtype)
        layer_caches = {"self": {"k": zeros, "v": zeros}, "cross": {}}
    else:
        zeros = jnp.zeros((batch, max_length, a.hidden_size), dtype)
        layer_caches = {
            f"layers_{i}": {"self": {"k": zeros, "v": zeros}, "cross": {}}
            for i in range(a.decoder_layers)
        }
    return {
        "index": jnp.zeros((), jnp.int32),
        "valid": jnp.zeros((batch, max_length), bool),
        "layers": layer_caches,
    }
