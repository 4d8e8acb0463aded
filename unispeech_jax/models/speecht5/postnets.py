"""SpeechT5 speech-decoder post-net: frame and stop projections, then the residual conv +
BatchNorm refinement (statistics in the 'batch_stats' collection)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from unispeech_jax.models import dropout, layers
from unispeech_jax.models.speecht5.args import ModelArgs

Dtype = Any


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

    def postnet(self, mel, deterministic: bool = True, frame_valid=None):
        """Residual conv refinement: mel [B,N,M] → mel + convs(mel). frame_valid bool [B,N]
        or None: zero every conv's input past each utterance's frames, so that each row is
        what the post-net gives on that utterance alone (as HF's generate_speech runs it)."""
        y = mel
        for layer in self.layers:
            if frame_valid is not None:
                y = jnp.where(frame_valid[:, :, None], y, 0.0).astype(y.dtype)
            y = layer(y, deterministic)
        return mel + y

    def __call__(self, hidden, deterministic: bool = True):
        mel, stop = self.frames(hidden)
        return mel, self.postnet(mel, deterministic), stop
