"""HiFi-GAN generator (Kong et al. 2020) as used with SpeechT5: log-mel [B,N,M] → waveform.

    mel → (normalise) → conv_pre(k7) → per upsampling stage i:
        leaky_relu → ConvTranspose(rate_i) → mean over the stage's residual blocks
    → leaky_relu(0.01) → conv_post(k7, 1 channel) → tanh → [B, N·∏rates]

A residual block with kernel k and dilations (d_1 … d_n) applies, for every d_j,
x ← x + conv2_j(lrelu(conv1_j(lrelu(x)))) with conv1_j dilated by d_j and conv2_j undilated,
both "same" padded. Parameter names follow Hugging Face `SpeechT5HifiGan` (weights stored
without weight norm, as its checkpoints are). `mean` / `scale` are the mel statistics the
vocoder was trained with (used when `normalize_before`); they are set by conversion, not
learned.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from unispeech_jax.models.family import dataclass_from_mapping
from unispeech_jax.models.layers import _part

_CONV_AXES = ("conv_kernel", "conv_in", "conv_out")


@dataclasses.dataclass(frozen=True)
class VocoderArgs:
    """HiFi-GAN sizes; defaults are the SpeechT5 vocoder (field names as SpeechT5HifiGanConfig)."""

    model_in_dim: int = 80
    upsample_initial_channel: int = 512
    upsample_rates: tuple = (4, 4, 4, 4)
    upsample_kernel_sizes: tuple = (8, 8, 8, 8)
    resblock_kernel_sizes: tuple = (3, 7, 11)
    resblock_dilation_sizes: tuple = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    leaky_relu_slope: float = 0.1
    normalize_before: bool = True

    @classmethod
    def from_config(cls, cfg) -> VocoderArgs:
        """From a mapping / ConfigDict; unknown keys are an error; lists become tuples."""
        if isinstance(cfg, VocoderArgs):
            return cfg
        return dataclass_from_mapping(cls, cfg, "vocoder config keys")


def _conv(features, kernel, dilation, name):
    pad = (kernel * dilation - dilation) // 2
    return nn.Conv(
        features,
        (kernel,),
        padding=[(pad, pad)],
        kernel_dilation=(dilation,),
        kernel_init=_part(nn.initializers.normal(0.01), _CONV_AXES),
        bias_init=_part(nn.initializers.zeros, ("conv_out",)),
        name=name,
    )


class ConvTranspose1d(nn.Module):
    """torch.nn.ConvTranspose1d(stride s, padding p) on [B,T,C_in] → [B,(T−1)s − 2p + K,C_out].

    kernel param [K, C_in, C_out]. Computed as a correlation of the s-dilated input with the
    time-flipped kernel, padded by K−1−p on both sides.
    """

    features: int
    kernel: int
    stride: int
    padding: int

    @nn.compact
    def __call__(self, x):
        w = self.param(
            "kernel",
            _part(nn.initializers.normal(0.01), _CONV_AXES),
            (self.kernel, x.shape[-1], self.features),
        )
        b = self.param("bias", _part(nn.initializers.zeros, ("conv_out",)), (self.features,))
        edge = self.kernel - 1 - self.padding
        y = jax.lax.conv_general_dilated(
            x,
            w[::-1],
            window_strides=(1,),
            padding=[(edge, edge)],
            lhs_dilation=(self.stride,),
            dimension_numbers=("NWC", "WIO", "NWC"),
        )
        return y + b


class ResidualBlock(nn.Module):
    """HiFi-GAN residual block (see module docstring): [B,T,C] → [B,T,C]."""

    kernel: int
    dilations: tuple
    slope: float

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        for j, d in enumerate(self.dilations):
            y = _conv(channels, self.kernel, d, f"convs1_{j}")(jax.nn.leaky_relu(x, self.slope))
            x = x + _conv(channels, self.kernel, 1, f"convs2_{j}")(jax.nn.leaky_relu(y, self.slope))
        return x


class HifiGan(nn.Module):
    """Log-mel [B,N,M] → waveform [B, N·∏upsample_rates] in [−1, 1]."""

    args: VocoderArgs

    @nn.compact
    def __call__(self, mel):
        a = self.args
        if a.normalize_before:
            mean = self.param("mean", _part(nn.initializers.zeros, ("mel",)), (a.model_in_dim,))
            scale = self.param("scale", _part(nn.initializers.ones, ("mel",)), (a.model_in_dim,))
            mel = (mel - mean) / scale
        x = _conv(a.upsample_initial_channel, 7, 1, "conv_pre")(mel)
        num_kernels = len(a.resblock_kernel_sizes)
        for i, (rate, kernel) in enumerate(zip(a.upsample_rates, a.upsample_kernel_sizes)):
            channels = a.upsample_initial_channel // (2 ** (i + 1))
            x = jax.nn.leaky_relu(x, a.leaky_relu_slope)
            x = ConvTranspose1d(
                channels, kernel, rate, (kernel - rate) // 2, name=f"upsampler_{i}"
            )(x)
            blocks = zip(a.resblock_kernel_sizes, a.resblock_dilation_sizes)
            x = (
                sum(
                    ResidualBlock(
                        k,
                        tuple(d),
                        a.leaky_relu_slope,
                        name=f"resblocks_{i * num_kernels + j}",
                    )(x)
                    for j, (k, d) in enumerate(blocks)
                )
                / num_kernels
            )
        x = jax.nn.leaky_relu(x, 0.01)  # torch's default slope here, not leaky_relu_slope
        x = _conv(1, 7, 1, "conv_post")(x)
        return jnp.tanh(x)[..., 0]


def build(cfg) -> HifiGan:
    return HifiGan(VocoderArgs.from_config(cfg))


def init_params(module: HifiGan, rng, unbox: bool = True) -> Any:
    """float32 params (shapes do not depend on the example mel length)."""
    mel = jnp.zeros((1, 4, module.args.model_in_dim), jnp.float32)
    params = jax.jit(module.init)(rng, mel)["params"]
    return nn.meta.unbox(params) if unbox else params


__all__ = [
    "ConvTranspose1d",
    "HifiGan",
    "ResidualBlock",
    "VocoderArgs",
    "build",
    "init_params",
]
