"""SpeechT5 speech pre-nets: waveform → encoder input, log-mel frames (+ speaker) → decoder
input. The text pre-nets are the shared embedding plus positions.py (model.py)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from unispeech_jax.models import layers
from unispeech_jax.models.speecht5.args import ModelArgs
from unispeech_jax.models.speecht5.positions import (
    ScaledPositionalEncoding,
    fairseq_sinusoidal,
    padded_position_ids,
)


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
        # HF numbers the frames whose padding flag (1 = padding) is not pad_token_id: the real
        # frames for its default 1, the padding frames only for 0 (real frames then get the
        # zero row), every frame for ids >= 2. Reproduced, so converted models agree.
        positions = padded_position_ids(
            (~valid).astype(jnp.int32) != a.pad_token_id, a.pad_token_id
        )
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
