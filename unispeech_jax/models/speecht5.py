"""SpeechT5 (arXiv 2110.07205): one encoder–decoder Transformer with modality pre/post-nets.

    speech [B,S] ─ speech-encoder pre-net ─┐                      ┌─ text-decoder pre/post-net → logits [B,L,V]
                                           ├─ encoder [B,T,D] ─ (cross-modal VQ) ─ decoder ─┤
    text  [B,L]  ─ text-encoder pre-net ───┘                      └─ speech-decoder pre/post-net → mel, stop

Parameter names and every numerical detail follow Hugging Face `SpeechT5For{SpeechToText,
TextToSpeech,SpeechToSpeech}` so that `convert/hf_speecht5.py` is a rename table:

  * speech-encoder pre-net: the wav2vec 2.0 conv feature encoder and feature projection
    (layers.py), optional time mask embedding, positional conv (added, padding frames are *not*
    zeroed first, as HF), then fixed sinusoidal positions of the fairseq kind (sin | cos halves,
    position ids start at pad_token_id + 1, padding frames get a zero vector).
  * text-encoder pre-net: token embedding + alpha · (interleaved sin/cos table) + dropout.
  * encoder: LN → dropout → post-LN blocks. Every block's attention adds a Shaw-style relative
    position term on keys: logits[i, j] += (q_i / sqrt(d_h)) · E[clip(i − j, −M, M − 1) + M],
    E [2M, d_h] shared by all layers and heads (M = encoder_max_relative_position).
  * decoder: post-LN blocks with causal self-attention, cross-attention, FFN. Incremental
    decoding takes an explicit cache pytree (`init_cache`; the encoder output's cross-attention
    keys/values are projected once, at the first step) and equals full-sequence decoding.
  * text-decoder pre-net: embedding · (sqrt(D) if scale_embedding) + fairseq sinusoidal
    positions; post-net: output projection tied to the same embedding (no bias). One text
    embedding is shared by the text-encoder pre-net, text-decoder pre-net and output projection
    (as the paper's shared text embedding; HF keeps one per model class).
  * speech-decoder pre-net: n × (Dense(units) → ReLU → dropout that is also on at inference
    (Tacotron 2), mask shared by the batch) → Dense(D) → + alpha · table → dropout → concat the
    L2-normalised speaker embedding → Dense(D) → ReLU. The always-on dropout is controlled by
    the explicit `prenet_dropout` flag (rng stream 'prenet') so evaluation can be deterministic.
  * speech-decoder post-net: Dense → r mel frames per step, Dense → r stop logits, then a
    conv post-net (Conv1d no bias → BatchNorm → tanh (not on the last) → dropout) added as a
    residual. BatchNorm statistics live in the 'batch_stats' collection.
  * cross-modal vector quantizer (pre-training only; HF has none): Gumbel VQ (quantizer.py) on
    the encoder output with codewords of width D, and a random `vq_replace_prob` fraction of
    valid positions replaced by their quantized vectors before cross-attention (rng 'vq').
    The perplexity it returns feeds the diversity loss.
  * masked-prediction head (pre-training only; HF has none): HuBERT-style cosine logits
    between `final_proj(encoder output)` and one embedding per k-means cluster, / `logit_temp`.

Objectives (`loss_fn`, chosen by `task`): joint pre-training (SPEC §3), and the fine-tuning
tasks 'asr' and 'tts' with the losses of HF's SpeechT5ForSpeechToText / SpeechT5ForTextToSpeech
(`decoding.speecht5_greedy` transcribes).

Shapes: B batch, S samples, T encoder frames/tokens, L decoder steps, D model dim, M mel bins,
r reduction factor. `train=False` turns off every dropout and layerdrop and makes BatchNorm use
its running statistics. Layers are unscanned (`layers_0` …): there is no scan / remat switch
yet, so compile time grows with depth.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from unispeech_jax import losses
from unispeech_jax.data import batching, sources
from unispeech_jax.data import text as text_lib
from unispeech_jax.models import dropout, layers, masking
from unispeech_jax.models.quantizer import GumbelVectorQuantizer, gumbel_temperature

Dtype = Any
TASKS = ("pretrain", "asr", "tts")
_MASK_VALUE = -1e30  # finite, so a fully masked row gives a uniform softmax instead of NaN


@dataclasses.dataclass(frozen=True)
class ModelArgs:
    """Hashable, typed copy of `config.model`; defaults are the SpeechT5 base model.

    Field names follow `transformers.SpeechT5Config` where both have the field.
    """

    name: str = "speecht5"
    # speech-encoder pre-net
    conv_dim: tuple = (512,) * 7
    conv_kernel: tuple = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    # or 'log_mel' (layers.LogMelFeatureEncoder, with num_mel_bins bins; no HF counterpart)
    feature_encoder: str = "conv"
    feat_extract_norm: str = "group"
    feature_grad_mult: float = 1.0
    feat_proj_dropout: float = 0.0
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    max_speech_positions: int = 4000
    # text pre-nets; the decoder starts from </s> (fairseq / HF), so this must be the text
    # model's </s> id (`vocab_size` checks it). pad_token_id only numbers positions (padding
    # gets position id pad_token_id, real steps count on from it): validity comes from masks.
    pad_token_id: int = 1
    decoder_start_token_id: int = 2
    max_text_positions: int = 450
    scale_embedding: bool = False
    # shared encoder-decoder
    hidden_size: int = 768
    encoder_layers: int = 12
    encoder_attention_heads: int = 12
    encoder_ffn_dim: int = 3072
    encoder_layerdrop: float = 0.1
    encoder_max_relative_position: int = 160
    decoder_layers: int = 6
    decoder_attention_heads: int = 12
    decoder_ffn_dim: int = 3072
    decoder_layerdrop: float = 0.1
    layer_norm_eps: float = 1e-5
    positional_dropout: float = 0.1
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.1
    # speech-decoder pre-/post-net
    num_mel_bins: int = 80
    reduction_factor: int = 2
    speech_decoder_prenet_layers: int = 2
    speech_decoder_prenet_units: int = 256
    speech_decoder_prenet_dropout: float = 0.5
    speaker_embedding_dim: int = 512
    speech_decoder_postnet_layers: int = 5
    speech_decoder_postnet_units: int = 256
    speech_decoder_postnet_kernel: int = 5
    speech_decoder_postnet_dropout: float = 0.5
    # pre-training heads
    num_codevector_groups: int = 2
    num_codevectors_per_group: int = 100
    gumbel_temperature: tuple = (2.0, 0.5, 0.999995)
    vq_replace_prob: float = 0.1
    num_clusters: int = 500
    final_dim: int = 256
    logit_temp: float = 0.1
    # pre-training objective (`loss_fn`): span masking of the speech encoder input (SPEC §3:
    # p 0.8, spans of 10), diversity weight γ, stop-token BCE positive weight
    mask_time_prob: float = 0.8
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    diversity_loss_weight: float = 0.1
    stop_pos_weight: float = 5.0
    # What `loss_fn` trains: 'pretrain' (the joint objective above) or a fine-tuning task with
    # Hugging Face's loss: 'asr' (speech → text, SpeechT5ForSpeechToText) or 'tts' (text → speech,
    # SpeechT5ForTextToSpeech). HF's ASR cross-entropy has no label smoothing.
    task: str = "pretrain"
    label_smoothing: float = 0.0
    # TTS guided attention loss on the decoder's cross-attention (HF names and defaults)
    use_guided_attention_loss: bool = True
    guided_attention_loss_num_heads: int = 2
    guided_attention_loss_sigma: float = 0.4
    guided_attention_loss_scale: float = 10.0
    dtype: str = "float32"

    @classmethod
    def from_config(cls, model_cfg) -> ModelArgs:
        """From a ConfigDict / mapping; unknown keys are an error (typos must not pass)."""
        if isinstance(model_cfg, ModelArgs):
            return model_cfg
        raw = model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else dict(model_cfg)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown config.model keys for speecht5: {unknown}")
        args = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        args.validate()
        return args

    def validate(self):
        layers.check_shared_fields(self)
        d = self.hidden_size
        if d % self.encoder_attention_heads or d % self.decoder_attention_heads:
            raise ValueError("hidden_size must be divisible by the encoder and decoder head counts")
        if d % self.num_conv_pos_embedding_groups or d % self.num_codevector_groups:
            raise ValueError(
                "hidden_size must be divisible by num_conv_pos_embedding_groups and num_codevector_groups"
            )
        if self.task not in TASKS:
            raise ValueError(f"model.task {self.task!r} is not one of {TASKS}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def compute_dtype(self):
        return jnp.dtype(self.dtype)


def default_config():
    """`config.model` with every key at its SpeechT5 base default (a ConfigDict)."""
    import ml_collections

    return ml_collections.ConfigDict(ModelArgs().to_dict())


# --------------------------------------------------------------------------------------------
# Position encodings (fixed tables and the relative-position embedding)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Attention and blocks
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Pre-nets and post-nets
# --------------------------------------------------------------------------------------------


class SpeechEncoderPrenet(nn.Module):
    """Waveform → encoder input: (audio [B,S], audio_mask bool [B,S], mask_time bool [B,T] or
    None) → dict hidden [B,T,D], valid bool [B,T], extract_features [B,T,C] (normed conv
    features, HuBERT-style targets are defined on frames of this rate)."""

    args: ModelArgs

    @nn.compact
    def __call__(self, audio, audio_mask, mask_time=None, deterministic: bool = True):
        a, dt = self.args, self.args.compute_dtype
        valid = layers.frame_validity(audio_mask, a.conv_kernel, a.conv_stride)
        encoder = layers.make_feature_encoder(a, a.feature_grad_mult, dt, "feature_encoder")
        conv = layers.run_feature_encoder(encoder, audio, valid)
        hidden, features = layers.FeatureProjection(
            a.hidden_size,
            a.layer_norm_eps,
            a.feat_proj_dropout,
            dt,
            name="feature_projection",
        )(conv, deterministic)
        mask_embed = self.param(
            "masked_spec_embed",
            layers._part(nn.initializers.uniform(1.0), ("embed",)),
            (a.hidden_size,),
        )
        if mask_time is not None:
            hidden = jnp.where(mask_time[..., None], mask_embed.astype(hidden.dtype), hidden)
        hidden = hidden + layers.PositionalConvEmbedding(
            a.hidden_size,
            a.num_conv_pos_embeddings,
            a.num_conv_pos_embedding_groups,
            dt,
            name="pos_conv_embed",
        )(hidden)
        positions = padded_position_ids(valid, a.pad_token_id)
        hidden = hidden + fairseq_sinusoidal(positions, a.hidden_size, a.pad_token_id).astype(
            hidden.dtype
        )
        return {"hidden": hidden, "valid": valid, "extract_features": features}


class SpeechDecoderPrenet(nn.Module):
    """Log-mel frames → decoder input: (mel [B,L,M], speaker [B,E] or None, offset) → [B,L,D].

    prenet_dropout: apply the Tacotron-2 dropout (rate speech_decoder_prenet_dropout) after each
    ReLU layer, also at inference; one keep-mask per (step, unit) is shared by the batch, as HF
    does. Draws from rng stream 'prenet'. HF keeps a unit with probability p and scales by
    1/(1−p); we keep with 1−p (the usual definition) — identical at the paper's p = 0.5.
    offset: position of the first step (incremental decoding).
    """

    args: ModelArgs

    @nn.compact
    def __call__(
        self,
        mel,
        speaker=None,
        offset=0,
        prenet_dropout: bool = False,
        deterministic: bool = True,
    ):
        a, dt = self.args, self.args.compute_dtype
        x = mel.astype(dt)
        p = a.speech_decoder_prenet_dropout
        for i in range(a.speech_decoder_prenet_layers):
            x = jax.nn.relu(
                layers._dense(a.speech_decoder_prenet_units, (None, "prenet"), dt, f"layers_{i}")(x)
            )
            if prenet_dropout and p > 0:
                keep = jax.random.bernoulli(self.make_rng("prenet"), 1.0 - p, x.shape[1:])
                x = jnp.where(keep[None], x / (1.0 - p), 0.0).astype(dt)
        x = layers._dense(a.hidden_size, ("prenet", "embed"), dt, "final_layer")(x)
        x = ScaledPositionalEncoding(a.positional_dropout, name="encode_positions")(
            x, offset, deterministic
        )
        if speaker is not None:
            speaker = speaker.astype(jnp.float32)
            speaker = speaker / jnp.maximum(jnp.linalg.norm(speaker, axis=-1, keepdims=True), 1e-12)
            speaker = jnp.broadcast_to(
                speaker[:, None, :].astype(dt), x.shape[:2] + speaker.shape[-1:]
            )
            x = jnp.concatenate([x, speaker], axis=-1)
            x = jax.nn.relu(
                layers._dense(a.hidden_size, ("speaker", "embed"), dt, "speaker_embeds_layer")(x)
            )
        return nn.with_logical_constraint(x, layers.ACT_BTD)


class PostnetConv(nn.Module):
    """Conv1d (SAME, no bias) → BatchNorm → tanh (unless last) → dropout on [B,T,C]."""

    features: int
    kernel: int
    last: bool
    dropout: float
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        pad = (self.kernel - 1) // 2
        x = nn.Conv(
            self.features,
            (self.kernel,),
            padding=[(pad, pad)],
            use_bias=False,
            dtype=self.dtype,
            kernel_init=layers._part(
                nn.initializers.he_normal(), ("conv_kernel", "conv_in", "conv_out")
            ),
            name="conv",
        )(x)
        # torch momentum 0.1 = flax momentum 0.9; normalises over batch and time (padding too).
        x = nn.BatchNorm(
            use_running_average=deterministic,
            momentum=0.9,
            epsilon=1e-5,
            dtype=self.dtype,
            scale_init=layers._part(nn.initializers.ones, ("conv_out",)),
            bias_init=layers._part(nn.initializers.zeros, ("conv_out",)),
            name="batch_norm",
        )(x)
        if not self.last:
            x = jnp.tanh(x)
        return dropout.Dropout(self.dropout)(x, deterministic=deterministic)


class SpeechDecoderPostnet(nn.Module):
    """Decoder output [B,L,D] → mel_before [B,L·r,M], mel_after [B,L·r,M], stop_logits [B,L·r]."""

    args: ModelArgs

    def setup(self):
        a, dt = self.args, self.args.compute_dtype
        self.feat_out = layers._dense(
            a.num_mel_bins * a.reduction_factor, ("embed", "mel"), dt, "feat_out"
        )
        self.prob_out = layers._dense(a.reduction_factor, ("embed", None), dt, "prob_out")
        n = a.speech_decoder_postnet_layers
        self.layers = [
            PostnetConv(
                a.num_mel_bins if i == n - 1 else a.speech_decoder_postnet_units,
                a.speech_decoder_postnet_kernel,
                i == n - 1,
                a.speech_decoder_postnet_dropout,
                dt,
            )
            for i in range(n)
        ]

    def frames(self, hidden):
        """Decoder output [B,L,D] → (mel_before [B,L·r,M], stop_logits [B,L·r])."""
        b, steps, _ = hidden.shape
        mel = self.feat_out(hidden).reshape(
            b, steps * self.args.reduction_factor, self.args.num_mel_bins
        )
        return mel, self.prob_out(hidden).reshape(b, -1)

    def postnet(self, mel, deterministic: bool = True):
        """Residual conv refinement: mel [B,N,M] → mel + convs(mel)."""
        y = mel
        for layer in self.layers:
            y = layer(y, deterministic)
        return mel + y

    def __call__(self, hidden, deterministic: bool = True):
        mel, stop = self.frames(hidden)
        return mel, self.postnet(mel, deterministic), stop


def shift_spectrograms_right(mel, reduction_factor: int):
    """Teacher-forcing decoder input for mel targets [B,N,M] → [B,N//r,M]: every r-th frame
    (the last of each group of r), shifted one step right with an all-zero first frame."""
    frames = mel[:, reduction_factor - 1 :: reduction_factor]
    return jnp.pad(frames, ((0, 0), (1, 0), (0, 0)))[:, :-1]


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class SpeechT5(nn.Module):
    """All SpeechT5 pre/post-nets around one encoder–decoder.

    Param tree: embed_tokens (shared text embedding), speech_encoder_prenet,
    text_encoder_prenet, encoder, decoder, speech_decoder_prenet, speech_decoder_postnet,
    quantizer, final_proj, label_embeddings. 'batch_stats': speech_decoder_postnet.
    """

    args: ModelArgs
    vocab_size: int

    def setup(self):
        a, dt = self.args, self.args.compute_dtype
        self.embed_tokens = nn.Embed(
            self.vocab_size,
            a.hidden_size,
            dtype=dt,
            embedding_init=layers._part(nn.initializers.normal(0.02), ("vocab", "embed")),
        )
        self.speech_encoder_prenet = SpeechEncoderPrenet(a)
        self.text_encoder_prenet = ScaledPositionalEncoding(a.positional_dropout)
        self.encoder = Encoder(a)
        self.decoder = Decoder(a)
        self.text_decoder_dropout = dropout.Dropout(a.positional_dropout)
        self.speech_decoder_prenet = SpeechDecoderPrenet(a)
        self.speech_decoder_postnet = SpeechDecoderPostnet(a)
        self.quantizer = GumbelVectorQuantizer(
            a.num_codevector_groups, a.num_codevectors_per_group, a.hidden_size, dt
        )
        self.final_proj = layers._dense(a.final_dim, ("embed", None), dt, "final_proj")
        self.label_embeddings = self.param(
            "label_embeddings",
            layers._part(nn.initializers.uniform(1.0), ("vocab", None)),
            (a.num_clusters, a.final_dim),
        )

    # -- encoders ------------------------------------------------------------------------------

    def encode_speech(self, audio, audio_mask, mask_time=None, train: bool = False):
        """audio [B,S], audio_mask bool [B,S], mask_time bool [B,T] or None → dict
        hidden [B,T,D], valid bool [B,T], extract_features [B,T,C]."""
        out = self.speech_encoder_prenet(audio, audio_mask, mask_time, deterministic=not train)
        out["hidden"] = self.encoder(out["hidden"], out["valid"], deterministic=not train)
        return out

    def encode_text(self, tokens, token_mask, train: bool = False):
        """tokens int [B,T], token_mask bool [B,T] → dict hidden [B,T,D], valid bool [B,T]."""
        x = self.text_encoder_prenet(self.embed_tokens(tokens), deterministic=not train)
        return {
            "hidden": self.encoder(x, token_mask, deterministic=not train),
            "valid": token_mask,
        }

    # -- pre-training heads --------------------------------------------------------------------

    def cross_modal_quantize(self, hidden, valid, temperature=2.0, train: bool = False):
        """Encoder output [B,T,D] → dict hidden [B,T,D] (training: ~vq_replace_prob of the valid
        positions replaced by their codewords, rng 'vq'; eval: unchanged), perplexity (scalar,
        over valid positions), code_ids int [B,T,G], replaced bool [B,T]."""
        q, perplexity, code_ids = self.quantizer(hidden, valid, temperature, train)
        if train and self.args.vq_replace_prob > 0:
            replaced = (
                jax.random.bernoulli(self.make_rng("vq"), self.args.vq_replace_prob, valid.shape)
                & valid
            )
        else:
            replaced = jnp.zeros_like(valid)
        hidden = jnp.where(replaced[..., None], q.astype(hidden.dtype), hidden)
        return {
            "hidden": hidden,
            "perplexity": perplexity,
            "code_ids": code_ids,
            "replaced": replaced,
        }

    def cluster_logits(self, hidden):
        """HuBERT-style masked-prediction logits: cosine(final_proj(h), e_c) / logit_temp,
        hidden [B,T,D] → float32 [B,T,num_clusters]."""
        proj = self.final_proj(hidden).astype(jnp.float32)
        proj = proj / jnp.maximum(jnp.linalg.norm(proj, axis=-1, keepdims=True), 1e-8)
        emb = self.label_embeddings / jnp.maximum(
            jnp.linalg.norm(self.label_embeddings, axis=-1, keepdims=True), 1e-8
        )
        return jnp.einsum("btf,cf->btc", proj, emb) / self.args.logit_temp

    # -- decoders ------------------------------------------------------------------------------

    def decode_text(self, tokens, enc, enc_valid, dec_valid=None, cache=None, train: bool = False):
        """Text decoder: tokens int [B,L] (teacher forcing, or the next L steps with a cache),
        enc [B,T,D], enc_valid bool [B,T], dec_valid bool [B,L] (default: tokens != pad)
        → (logits float [B,L,V], cache)."""
        a = self.args
        if dec_valid is None:
            dec_valid = tokens != a.pad_token_id
        offset = 0 if cache is None else cache["index"]
        scale = math.sqrt(a.hidden_size) if a.scale_embedding else 1.0
        x = self.embed_tokens(tokens) * scale
        positions = padded_position_ids(dec_valid, a.pad_token_id, offset)
        x = x + fairseq_sinusoidal(positions, a.hidden_size, a.pad_token_id).astype(x.dtype)
        x = self.text_decoder_dropout(x, deterministic=not train)
        hidden, cache = self.decoder(x, dec_valid, enc, enc_valid, cache, deterministic=not train)
        return self.embed_tokens.attend(hidden), cache

    def decode_speech(
        self,
        mel,
        speaker,
        enc,
        enc_valid,
        dec_valid=None,
        cache=None,
        train: bool = False,
        prenet_dropout: bool = False,
    ):
        """Speech decoder up to the frame projections: mel inputs [B,L,M] (shifted targets, or
        the next L inputs with a cache), speaker [B,E] or None, enc [B,T,D], enc_valid bool
        [B,T], dec_valid bool [B,L] (default all) → (dict mel_before [B,L·r,M], stop_logits
        [B,L·r], hidden [B,L,D]; cache). Apply `postnet` to the whole mel_before afterwards."""
        if dec_valid is None:
            dec_valid = jnp.ones(mel.shape[:2], bool)
        offset = 0 if cache is None else cache["index"]
        x = self.speech_decoder_prenet(
            mel, speaker, offset, prenet_dropout, deterministic=not train
        )
        hidden, cache = self.decoder(x, dec_valid, enc, enc_valid, cache, deterministic=not train)
        mel_before, stop = self.speech_decoder_postnet.frames(hidden)
        return {"mel_before": mel_before, "stop_logits": stop, "hidden": hidden}, cache

    def postnet(self, mel_before, train: bool = False):
        """Conv post-net residual: [B,N,M] → [B,N,M] (train needs mutable 'batch_stats')."""
        return self.speech_decoder_postnet.postnet(mel_before, deterministic=not train)

    def decode_mel(self, mel, speaker, enc, enc_valid, dec_valid, train: bool = False):
        """Teacher-forced speech decoder and post-net, as trained (the pre-net's Tacotron dropout
        is on exactly when training): mel [B,L,M] shifted targets, speaker [B,E] or None, enc
        [B,T,D], enc_valid bool [B,T], dec_valid bool [B,L] → dict mel_before, mel_after
        [B,L·r,M], stop_logits [B,L·r], hidden [B,L,D]."""
        out, _ = self.decode_speech(
            mel, speaker, enc, enc_valid, dec_valid, train=train, prenet_dropout=train
        )
        return {**out, "mel_after": self.postnet(out["mel_before"], train=train)}

    def __call__(self, audio, audio_mask, tokens, mel, speaker):
        """Eval-mode forward touching every parameter (used by `init`)."""
        speech = self.encode_speech(audio, audio_mask)
        text = self.encode_text(tokens, jnp.ones(tokens.shape, bool))
        vq = self.cross_modal_quantize(text["hidden"], text["valid"])
        logits, _ = self.decode_text(tokens, speech["hidden"], speech["valid"])
        out, _ = self.decode_speech(mel, speaker, vq["hidden"], text["valid"])
        return {
            "logits": logits,
            "mel_after": self.postnet(out["mel_before"]),
            "cluster_logits": self.cluster_logits(speech["hidden"]),
            **out,
        }


# --------------------------------------------------------------------------------------------
# Family interface
# --------------------------------------------------------------------------------------------


def build(model_cfg, vocab_size: int) -> SpeechT5:
    """The SpeechT5 module for `config.model` and a text vocabulary of `vocab_size` ids."""
    return SpeechT5(ModelArgs.from_config(model_cfg), int(vocab_size))


def init_variables(
    module: SpeechT5, rng, batch: Mapping[str, Any] | None = None, unbox: bool = False
) -> dict:
    """{'params', 'batch_stats'} of `module` (float32), logically partitioned unless `unbox`.

    Variable shapes do not depend on the example input, so the forward pass runs on abstract
    inputs (`lazy_init`: only the initialisers are computed, which compiles far faster than
    jitting the whole `init`). `batch` is accepted for the family interface; only its audio
    length, if it has audio, is used. Works under jit / eval_shape.
    """
    a = module.args
    samples = int(batch["audio"].shape[1]) if batch and "audio" in batch else 16000
    spec = jax.ShapeDtypeStruct
    variables = module.lazy_init(
        rng,
        spec((1, samples), jnp.float32),
        spec((1, samples), jnp.bool_),
        spec((1, 4), jnp.int32),
        spec((1, 3, a.num_mel_bins), jnp.float32),
        spec((1, a.speaker_embedding_dim), jnp.float32),
    )
    variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
    return nn.meta.unbox(variables) if unbox else variables


def check_config(config) -> None:
    """Config-time checks of a run config with this family: its `config.model` keys
    (`ModelArgs.validate`) and how they combine with `config.data`. ValueError naming the key."""
    ModelArgs.from_config(config.model)
    if int(config.data.km_clusters) > int(config.model.num_clusters):
        raise ValueError(
            f"data.km_clusters={config.data.km_clusters} k-means ids do not fit "
            f"model.num_clusters={config.model.num_clusters} masked-prediction classes"
        )


def vocab_size(config) -> int:
    """Text ids of `config.data`'s SentencePiece model, with the mask and pad ids past its
    vocabulary (data/text.py). Raises ConfigError unless model.decoder_start_token_id is the
    model's </s>, the token the text decoder starts from."""
    from unispeech_jax.config import ConfigError  # config imports the families' defaults

    sp = text_lib.load_sp(sources.sentencepiece_model(config.data))
    if sp.eos_id() != config.model.decoder_start_token_id:
        raise ConfigError(
            f"model.decoder_start_token_id={config.model.decoder_start_token_id} is not the "
            f"</s> id ({sp.eos_id()}) of {sources.sentencepiece_model(config.data)}"
        )
    return text_lib.text_vocab_size(sp)


def dummy_batch(data_cfg) -> dict:
    """Zero audio of the largest speech bucket (init only reads the audio length)."""
    samples = int(tuple(data_cfg.bucket_boundaries)[-1])
    batch = batching.batch_size_for(data_cfg, samples)
    return {
        "audio": np.zeros((batch, samples), np.float32),
        "audio_mask": np.ones((batch, samples), bool),
    }


# --------------------------------------------------------------------------------------------
# Objectives: joint pre-training (SPEC §3: speech and text batches are separate steps) and the
# fine-tuning tasks (`ModelArgs.task`)
# --------------------------------------------------------------------------------------------


def _split_rngs(rng, train: bool) -> tuple[dict, jax.Array]:
    """One step key → (flax rng streams, span-mask key). Eval needs only the mask key."""
    dropout, gumbel, vq, prenet, mask = jax.random.split(rng, 5)
    rngs = {"dropout": dropout, "gumbel": gumbel, "vq": vq, "prenet": prenet}
    return (rngs if train else {}), mask


def _apply(module, params, model_state, forward, rngs, train: bool):
    """`module.apply` of the method `forward` → (its outputs, the sown 'intermediates',
    model_state with the BatchNorm statistics that a training forward updated)."""
    mutable = ["intermediates", "batch_stats"] if train else ["intermediates"]
    out, state = module.apply(
        {"params": params, **model_state}, method=forward, rngs=rngs, mutable=mutable
    )
    if train and "batch_stats" in state:
        model_state = {**model_state, "batch_stats": state["batch_stats"]}
    return out, state["intermediates"], model_state


def _quantizer_metrics(sown, prefix: str) -> dict:
    """The hard (argmax) and soft code perplexities the quantizer sowed this step."""
    return {
        f"{prefix}/code_perplexity": sown["quantizer"]["code_perplexity"][0],
        f"{prefix}/prob_perplexity": sown["quantizer"]["prob_perplexity"][0],
    }


def speech_targets(args: ModelArgs, batch):
    """Teacher-forced speech decoder inputs and targets from a batch with `mel`.

    mel [B,F,M] is cut to N = F − F mod r frames: target [B,N,M], frame_valid bool [B,N] (real
    frames of weight > 0 rows), decoder input [B,N/r,M] (every r-th frame shifted right) and
    step validity bool [B,N/r] (a step is real when its first frame is; HF's decoder mask uses
    the last one, the same whenever each utterance has whole groups of r frames).
    """
    r = args.reduction_factor
    n = batch["mel"].shape[1] // r * r
    target = batch["mel"][:, :n].astype(jnp.float32)
    frame_valid = batch["mel_mask"][:, :n].astype(bool) & (batch["weight"] > 0)[:, None]
    return target, frame_valid, shift_spectrograms_right(target, r), frame_valid[:, ::r]


def text_targets(args: ModelArgs, batch):
    """Teacher-forced text decoder input and targets from a batch with `text`: step l reads
    target l − 1 (step 0 the start token </s>) and predicts target l.

    → (decoder input int [B,L], target int [B,L], step validity bool [B,L], counted bool [B,L]:
    the real targets of weight > 0 rows)."""
    target = batch["text"]
    valid = batch["text_mask"].astype(bool)
    dec_in = jnp.pad(target, ((0, 0), (1, 0)), constant_values=args.decoder_start_token_id)
    return dec_in[:, :-1], target, valid, valid & (batch["weight"] > 0)[:, None]


def _token_terms(logits, target, counted, label_smoothing: float = 0.0):
    """(cross-entropy, accuracy) of logits [B,L,V] for int target [B,L], averaged over the
    counted bool [B,L] tokens of the whole batch (as torch's CrossEntropyLoss with -100)."""
    nll = losses.text_nll_loss(logits, target, counted, label_smoothing)
    correct = (jnp.argmax(logits, -1) == target) & counted
    return nll, jnp.sum(correct) / jnp.maximum(jnp.sum(counted), 1)


def _speech_loss(module, params, model_state, batch, rng, step, train):
    """L_mlm + L_1 + L_bce + γ·L_d on a speech batch (audio, km, mel); see `loss_fn`."""
    a = module.args
    rngs, mask_rng = _split_rngs(rng, train)
    audio, audio_mask = batch["audio"], batch["audio_mask"].astype(bool)
    frames = layers.frame_validity(audio_mask, a.conv_kernel, a.conv_stride)
    if frames.shape != batch["km"].shape:
        raise ValueError(
            f"km labels {batch['km'].shape} do not match the model's frames {frames.shape}: "
            "k-means labels assume the standard conv stack (total stride 320, window 400)"
        )
    labelled = frames & batch["km_mask"].astype(bool) & (batch["weight"] > 0)[:, None]
    mask_time = masking.span_mask(
        mask_rng, labelled, a.mask_time_prob, a.mask_time_length, a.mask_time_min_masks
    )
    target, frame_valid, dec_in, dec_valid = speech_targets(a, batch)
    temperature = gumbel_temperature(step, *a.gumbel_temperature)

    def forward(self):
        enc = self.encode_speech(audio, audio_mask, mask_time, train=train)
        vq = self.cross_modal_quantize(enc["hidden"], enc["valid"], temperature, train)
        out = self.decode_mel(dec_in, None, vq["hidden"], enc["valid"], dec_valid, train)
        return self.cluster_logits(enc["hidden"]), vq["perplexity"], out

    (logits, perplexity, out), sown, model_state = _apply(
        module, params, model_state, forward, rngs, train
    )
    mlm, accuracy = losses.masked_prediction_loss(logits, batch["km"], mask_time)
    l1, bce = losses.spectrogram_loss(
        out["mel_before"],
        out["mel_after"],
        out["stop_logits"],
        target,
        frame_valid,
        a.stop_pos_weight,
    )
    diversity = losses.diversity_loss(
        perplexity, a.num_codevector_groups * a.num_codevectors_per_group
    )
    loss = mlm + l1 + bce + a.diversity_loss_weight * diversity
    metrics = {
        "loss": loss,
        "speech/loss": loss,
        "speech/mlm": mlm,
        "speech/mlm_accuracy": accuracy,
        "speech/l1": l1,
        "speech/bce": bce,
        "speech/diversity": diversity,
        "speech/masked_fraction": jnp.sum(mask_time) / jnp.maximum(jnp.sum(labelled), 1),
        "temperature": jnp.asarray(temperature, jnp.float32),
        **_quantizer_metrics(sown, "speech"),
    }
    return loss, (metrics, model_state)


def _text_loss(module, params, model_state, batch, rng, step, train):
    """L_mle + γ·L_d on a text-infilling batch (text_source → text); see `loss_fn`."""
    a = module.args
    rngs, _ = _split_rngs(rng, train)
    source, source_mask = batch["text_source"], batch["text_source_mask"].astype(bool)
    dec_in, target, dec_valid, counted = text_targets(a, batch)
    temperature = gumbel_temperature(step, *a.gumbel_temperature)

    def forward(self):
        enc = self.encode_text(source, source_mask, train=train)
        vq = self.cross_modal_quantize(enc["hidden"], source_mask, temperature, train)
        logits, _ = self.decode_text(dec_in, vq["hidden"], source_mask, dec_valid, train=train)
        return logits, vq["perplexity"]

    (logits, perplexity), sown, model_state = _apply(
        module, params, model_state, forward, rngs, train
    )
    mle, accuracy = _token_terms(logits, target, counted)
    diversity = losses.diversity_loss(
        perplexity, a.num_codevector_groups * a.num_codevectors_per_group
    )
    loss = mle + a.diversity_loss_weight * diversity
    metrics = {
        "loss": loss,
        "text/loss": loss,
        "text/mle": mle,
        "text/accuracy": accuracy,
        "text/diversity": diversity,
        "temperature": jnp.asarray(temperature, jnp.float32),
        **_quantizer_metrics(sown, "text"),
    }
    return loss, (metrics, model_state)


def _asr_loss(module, params, model_state, batch, rng, step, train):
    """Speech → text cross-entropy on a batch with audio and its `text` tokens; see `loss_fn`."""
    a = module.args
    rngs, mask_rng = _split_rngs(rng, train)
    audio, audio_mask = batch["audio"], batch["audio_mask"].astype(bool)
    mask_time = None
    if train and a.mask_time_prob > 0:  # HF's SpecAugment-style time masking, training only
        frames = layers.frame_validity(audio_mask, a.conv_kernel, a.conv_stride)
        mask_time = masking.span_mask(
            mask_rng, frames, a.mask_time_prob, a.mask_time_length, a.mask_time_min_masks
        )
    dec_in, target, dec_valid, counted = text_targets(a, batch)

    def forward(self):
        enc = self.encode_speech(audio, audio_mask, mask_time, train=train)
        return self.decode_text(dec_in, enc["hidden"], enc["valid"], dec_valid, train=train)[0]

    logits, _, model_state = _apply(module, params, model_state, forward, rngs, train)
    ce, accuracy = _token_terms(logits, target, counted, a.label_smoothing)
    return ce, ({"loss": ce, "asr/ce": ce, "asr/accuracy": accuracy}, model_state)


def cross_attention_probs(args: ModelArgs, sown):
    """The guided heads' cross-attention probabilities from the sown 'intermediates' →
    [B, layers·h, L, T]: heads [:guided_attention_loss_num_heads] of every decoder layer (a
    Python slice, as HF: −1 keeps all heads but the last)."""
    n = args.guided_attention_loss_num_heads
    return jnp.concatenate(
        [
            sown["decoder"][f"layers_{i}"]["encoder_attn"]["probs"][0][:, :n]
            for i in range(args.decoder_layers)
        ],
        axis=1,
    )


def _tts_loss(module, params, model_state, batch, rng, step, train):
    """Text → speech L1 + stop BCE (+ guided attention) on a batch with `text` tokens and their
    `mel`, optionally `speaker_embedding` [B,E]; see `loss_fn`."""
    a = module.args
    rngs, _ = _split_rngs(rng, train)
    tokens, token_mask = batch["text"], batch["text_mask"].astype(bool)
    target, frame_valid, dec_in, dec_valid = speech_targets(a, batch)
    speaker = batch.get("speaker_embedding")

    def forward(self):
        enc = self.encode_text(tokens, token_mask, train=train)
        return self.decode_mel(dec_in, speaker, enc["hidden"], token_mask, dec_valid, train)

    out, sown, model_state = _apply(module, params, model_state, forward, rngs, train)
    l1, bce = losses.spectrogram_loss(
        out["mel_before"],
        out["mel_after"],
        out["stop_logits"],
        target,
        frame_valid,
        a.stop_pos_weight,
    )
    loss = l1 + bce
    metrics = {"tts/l1": l1, "tts/bce": bce}
    if a.use_guided_attention_loss:
        attention = a.guided_attention_loss_scale * losses.guided_attention_loss(
            cross_attention_probs(a, sown), token_mask, dec_valid, a.guided_attention_loss_sigma
        )
        loss = loss + attention
        metrics["tts/attention"] = attention
    return loss, ({"loss": loss, **metrics}, model_state)


_TASK_LOSSES = {"asr": _asr_loss, "tts": _tts_loss}


def loss_fn(module: SpeechT5, params, batch, rng, step, train: bool, model_state):
    """SpeechT5 objective of `module.args.task` on one batch → (loss, (metrics, model_state)).

    'pretrain', the joint objective; each batch is speech or text (by its keys):
      speech (audio, km, mel): L_mlm (HuBERT cross-entropy over k-means ids at masked frames) +
        L_1 (mel before + after the post-net) + L_bce (stop token) + γ·L_d;
      text (text_source, text): L_mle (decoder reconstructs the text from its infilled
        version) + γ·L_d;
      L_d = the cross-modal quantizer's diversity loss (γ = diversity_loss_weight), on the
      encoder output of either modality. Metric names carry the modality ('speech/…',
      'text/…') and both report their code perplexity.
    'asr' (audio, text): speech-encoder pre-net + encoder + text decoder, teacher-forced
      cross-entropy over the real target tokens of the batch (label_smoothing, 0 as HF) —
      SpeechT5ForSpeechToText's `loss`; training masks time spans (mask_time_*, HF's 0.05).
    'tts' (text, mel, optional speaker_embedding): text-encoder pre-net + encoder + speech
      decoder + post-net, L1 (before + after the post-net) + stop BCE (pos_weight 5) + the
      guided attention loss (scale · mean over guided heads and valid (step, token) pairs) —
      SpeechT5ForTextToSpeech's `loss`.
    Fine-tuning does not use the cross-modal quantizer nor the masked-prediction head (as HF,
    which has neither): the encoder output goes straight to cross-attention. Their parameters
    stay in the tree with zero gradients (AdamW's decoupled weight decay still shrinks their
    kernels), as do the other modality's pre/post-nets.

    `rng` (one key per step) is split into the module's streams and the span mask (pre-training
    eval still masks, deterministically); `step` sets the Gumbel temperature. model_state:
    {'batch_stats'} of the post-net's BatchNorm, updated by training steps that run it.
    """
    task = module.args.task
    if task in _TASK_LOSSES:
        part = _TASK_LOSSES[task]
    else:
        part = _text_loss if "text_source" in batch else _speech_loss
    return part(module, params, model_state, batch, rng, step, train)


# --------------------------------------------------------------------------------------------
# FLOPs (matmuls and convolutions, 2 per multiply-add)
# --------------------------------------------------------------------------------------------


def _encoder_flops(a: ModelArgs, batch: int, length: int) -> float:
    """Encoder matmul FLOPs: projections, attention with the relative term, FFN."""
    d, bt = a.hidden_size, batch * length
    attention = 3 * 2.0 * batch * length * length * d  # logits, relative logits, weighted sum
    per_layer = 2.0 * bt * d * d * 4 + attention + 2.0 * bt * d * a.encoder_ffn_dim * 2
    return a.encoder_layers * per_layer


def _decoder_flops(a: ModelArgs, batch: int, steps: int, memory: int) -> float:
    """Decoder matmul FLOPs: self-attention over all `steps` keys (teacher forcing, or a cache of
    `steps` slots), cross-attention over `memory` with its keys/values projected once, FFN."""
    d, bl = a.hidden_size, batch * steps
    self_attn = 2.0 * bl * d * d * 4 + 2 * 2.0 * batch * steps * steps * d
    cross = 2.0 * bl * d * d * 2 + 2.0 * batch * memory * d * d * 2
    cross += 2 * 2.0 * batch * steps * memory * d
    return a.decoder_layers * (self_attn + cross + 2.0 * bl * d * a.decoder_ffn_dim * 2)


def _speech_prenet_flops(a: ModelArgs, batch: int, samples: int) -> tuple[float, int]:
    """(FLOPs, frames T) of the speech-encoder pre-net: conv stack, projection, positional conv."""
    t = int(layers.conv_output_lengths(samples, a.conv_kernel, a.conv_stride))
    d, bt = a.hidden_size, batch * t
    flops = layers.feature_encoder_flops(a, batch, samples)
    flops += 2.0 * bt * a.conv_dim[-1] * d  # feature projection
    flops += 2.0 * bt * d * (d / a.num_conv_pos_embedding_groups) * a.num_conv_pos_embeddings
    return flops, t


def _speech_decoder_nets_flops(a: ModelArgs, batch: int, steps: int, speaker: bool) -> float:
    """Speech-decoder pre-net (+ the speaker projection), frame/stop projections, post-net."""
    d, m, c, r = a.hidden_size, a.num_mel_bins, a.speech_decoder_postnet_units, a.reduction_factor
    units = a.speech_decoder_prenet_units
    prenet = m * units + units * units * (a.speech_decoder_prenet_layers - 1) + units * d
    prenet += (d + a.speaker_embedding_dim) * d if speaker else 0
    convs = m * c + c * c * (a.speech_decoder_postnet_layers - 2) + c * m
    postnet = steps * r * a.speech_decoder_postnet_kernel * convs
    return 2.0 * batch * (steps * (prenet + d * (m + 1) * r) + postnet)


def forward_flops(model_cfg, batch_shapes) -> float:
    """Analytic FLOPs of one forward pass of `task` on a batch of shapes {key: shape}.

    pretrain: a speech batch ('audio' (B,S), 'mel' (B,F,M)) or a text batch ('text' (B,L),
    'text_source'); asr: 'audio', 'text'; tts: 'text', 'mel'. Not counted: norms,
    activations, softmax, and the text output projection (the vocabulary size is not in the
    shapes; tiny next to D²). A TTS batch with 'speaker_embedding' adds its projection.
    """
    a = ModelArgs.from_config(model_cfg)
    d, codes = a.hidden_size, a.num_codevector_groups * a.num_codevectors_per_group
    quantizer = lambda b, t: 2.0 * b * t * d * codes * 2  # logits and codeword lookup
    if a.task == "tts":
        b, length = batch_shapes["text"][:2]
        steps = batch_shapes["mel"][1] // a.reduction_factor
        return (
            _encoder_flops(a, b, length)
            + _decoder_flops(a, b, steps, length)
            + _speech_decoder_nets_flops(a, b, steps, "speaker_embedding" in batch_shapes)
        )
    if a.task == "pretrain" and "text_source" in batch_shapes:
        b, steps = batch_shapes["text"][:2]
        length = batch_shapes["text_source"][1]
        return (
            _encoder_flops(a, b, length)
            + quantizer(b, length)
            + _decoder_flops(a, b, steps, length)
        )
    b, samples = batch_shapes["audio"][:2]
    flops, t = _speech_prenet_flops(a, b, samples)
    flops += _encoder_flops(a, b, t)
    if a.task == "asr":
        return flops + _decoder_flops(a, b, batch_shapes["text"][1], t)
    steps = batch_shapes["mel"][1] // a.reduction_factor
    flops += 2.0 * b * t * (d * a.final_dim + a.final_dim * a.num_clusters)  # cluster logits
    flops += quantizer(b, t)
    return flops + _decoder_flops(a, b, steps, t) + _speech_decoder_nets_flops(a, b, steps, False)


def flops_per_batch(model_cfg, batch_shapes) -> float:
    """Analytic FLOPs of one training step: 3 × `forward_flops` (forward + backward)."""
    return 3.0 * forward_flops(model_cfg, batch_shapes)


__all__ = [
    "TASKS",
    "ModelArgs",
    "SpeechT5",
    "build",
    "cross_attention_probs",
    "default_config",
    "dummy_batch",
    "flops_per_batch",
    "forward_flops",
    "loss_fn",
    "speech_targets",
    "text_targets",
    "vocab_size",
    "fairseq_sinusoidal",
    "init_cache",
    "init_variables",
    "padded_position_ids",
    "relative_position_ids",
    "scaled_position_table",
    "shift_spectrograms_right",
]
