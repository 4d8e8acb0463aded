"""Shared speech building blocks: conv feature encoder, positional conv, dense and LayerNorm
with logical axes (the Transformer block and encoder are in transformer.py).

These modules are generic (UniSpeech and SpeechT5 both use them) and take plain attributes,
never a whole config. Parameter names follow the Hugging Face wav2vec2 layout
(`feature_extractor/conv_layers_i/conv`, `encoder/layers/attention/q_proj`, ...) so that
`convert/hf.py` is a rename table, not a re-implementation.

Shapes: `B` batch, `S` samples, `T` frames, `C` conv channels, `D` model dim, `F` FFN dim.

Conventions:
  * params are float32; `dtype` is the compute dtype of matmuls/convs. Layer norms compute
    their statistics in float32 whatever `dtype` is (flax promotes them).
  * every param carries logical axis names (`nn.with_logical_partitioning`) and the main
    activations are constrained with `nn.with_logical_constraint` (ARCHITECTURE.md).
  * `deterministic=True` turns off dropout and layerdrop (eval mode).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from unispeech_jax.data import features
from unispeech_jax.models import dropout

Dtype = Any

ACT_BTD = ("act_batch", "act_length", "act_embed")
ACT_BTF = ("act_batch", "act_length", "act_mlp")
ACT_BTH = ("act_batch", "act_length", "act_heads")
ACTIVATION_AXES = ("act_batch", "act_length", "act_embed", "act_mlp", "act_heads")


def gelu(x):
    """Exact (erf) GELU, as torch.nn.GELU() and fairseq use."""
    return jax.nn.gelu(x, approximate=False)


def _part(init, axes):
    return nn.with_logical_partitioning(init, axes)


def _symmetric_uniform(bound: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def conv_output_lengths(lengths, conv_kernel: Sequence[int], conv_stride: Sequence[int]):
    """Frames produced by VALID strided convs from `lengths` samples (works on ints and arrays).

    Per layer: `floor((n - k) / s) + 1`, the torch.nn.Conv1d formula; a frame only counts if
    its whole receptive field lies inside the real samples.
    """
    for k, s in zip(conv_kernel, conv_stride):
        lengths = (lengths - k) // s + 1
    return lengths


def frame_validity(audio_mask, conv_kernel, conv_stride):
    """bool [B, T] frame validity from the bool [B, S] sample mask (right padding assumed)."""
    num_frames = int(conv_output_lengths(audio_mask.shape[1], conv_kernel, conv_stride))
    lengths = conv_output_lengths(audio_mask.sum(-1).astype(jnp.int32), conv_kernel, conv_stride)
    return jnp.arange(num_frames)[None, :] < lengths[:, None]


def scale_gradient(x, mult: float):
    """Identity forward, gradient times `mult` backward (fairseq GradMultiply)."""
    if mult == 1.0:
        return x
    if mult == 0.0:
        return jax.lax.stop_gradient(x)
    return x * mult + jax.lax.stop_gradient(x) * (1.0 - mult)


# --------------------------------------------------------------------------------------------
# Conv feature encoder
# --------------------------------------------------------------------------------------------


class ConvLayer(nn.Module):
    """Conv1d (VALID, strided) → optional norm → GELU on [B, T_in, C_in] → [B, T_out, C_out].

    norm: 'none', 'group' (GroupNorm with one group per channel: normalises every channel over
    time, padding frames included exactly as in HF/fairseq), or 'layer' (LayerNorm over
    channels per frame).
    """

    features: int
    kernel: int
    stride: int
    use_bias: bool
    norm: str = "none"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(
            self.features,
            kernel_size=(self.kernel,),
            strides=(self.stride,),
            padding="VALID",
            use_bias=self.use_bias,
            dtype=self.dtype,
            kernel_init=_part(nn.initializers.he_normal(), ("conv_kernel", "conv_in", "conv_out")),
            bias_init=_part(nn.initializers.zeros, ("conv_out",)),
            name="conv",
        )(x)
        scale_init = _part(nn.initializers.ones, ("conv_out",))
        bias_init = _part(nn.initializers.zeros, ("conv_out",))
        if self.norm == "group":
            x = nn.GroupNorm(
                num_groups=self.features,
                epsilon=1e-5,
                dtype=self.dtype,
                scale_init=scale_init,
                bias_init=bias_init,
                name="layer_norm",
            )(x)
        elif self.norm == "layer":
            x = nn.LayerNorm(
                epsilon=1e-5,
                dtype=self.dtype,
                scale_init=scale_init,
                bias_init=bias_init,
                name="layer_norm",
            )(x)
        elif self.norm != "none":
            raise ValueError(f"unknown conv norm {self.norm!r}")
        return gelu(x)


class ConvFeatureEncoder(nn.Module):
    """wav2vec 2.0 waveform encoder: float [B, S] → float [B, T, conv_dim[-1]].

    feat_extract_norm: 'group' (GroupNorm on the first conv only — base models) or 'layer'
    (LayerNorm after every conv — large models). `grad_mult` scales the gradient flowing into
    the conv stack (0 freezes it).
    """

    conv_dim: Sequence[int]
    conv_kernel: Sequence[int]
    conv_stride: Sequence[int]
    conv_bias: bool = False
    feat_extract_norm: str = "group"
    grad_mult: float = 1.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, audio):
        if self.feat_extract_norm not in ("group", "layer"):
            raise ValueError(
                f"feat_extract_norm must be 'group' or 'layer', got {self.feat_extract_norm!r}"
            )
        x = audio[..., None].astype(self.dtype)
        for i, (dim, k, s) in enumerate(zip(self.conv_dim, self.conv_kernel, self.conv_stride)):
            if self.feat_extract_norm == "layer":
                norm = "layer"
            else:
                norm = "group" if i == 0 else "none"
            x = ConvLayer(dim, k, s, self.conv_bias, norm, self.dtype, name=f"conv_layers_{i}")(x)
        return scale_gradient(x, self.grad_mult)


def receptive_field(conv_kernel: Sequence[int], conv_stride: Sequence[int]) -> tuple[int, int]:
    """(window, hop) in samples of one output frame of a stack of VALID strided convs."""
    window, hop = 1, 1
    for k, s in zip(conv_kernel, conv_stride):
        window += (k - 1) * hop
        hop *= s
    return window, hop


def frame_signal(audio, window: int, hop: int):
    """float [B, S] → [B, T, window], frame t = audio[t·hop : t·hop + window], T the frame
    count of `conv_output_lengths` (whole frames only). Needs hop ≤ window ≤ 2·hop: a frame is
    one hop-long chunk plus the head of the next, so no gather is needed."""
    if not hop <= window <= 2 * hop:
        raise ValueError(f"framing needs hop <= window <= 2*hop, got window {window}, hop {hop}")
    n = audio.shape[1]
    frames = (n - window) // hop + 1
    chunks = audio[:, : (frames + 1) * hop]
    chunks = jnp.pad(chunks, ((0, 0), (0, (frames + 1) * hop - chunks.shape[1])))
    chunks = chunks.reshape(audio.shape[0], frames + 1, hop)
    return jnp.concatenate([chunks[:, :-1], chunks[:, 1:, : window - hop]], axis=-1)


def log_mel_frames(audio, window: int, hop: int, num_mel_bins: int, sample_rate: int):
    """float [B, S] → natural-log mel power [B, T, num_mel_bins] of the `frame_signal` frames:
    periodic Hann window, FFT of the next power of two ≥ window (zero-padded at the end),
    Slaney mel filters over 0 … sample_rate/2 (librosa.filters.mel), floor 1e-10."""
    n_fft = 1 << (window - 1).bit_length()
    hann = 0.5 - 0.5 * jnp.cos(2.0 * jnp.pi * jnp.arange(window) / window)
    frames = frame_signal(audio.astype(jnp.float32), window, hop) * hann
    power = jnp.abs(jnp.fft.rfft(frames, n=n_fft)) ** 2
    fb = features.mel_filterbank(sample_rate, n_fft, num_mel_bins, 0.0, sample_rate / 2)
    return jnp.log(power @ jnp.asarray(fb.T, jnp.float32) + 1e-10)


def normalize_utterance(x, valid):
    """Per utterance and channel, zero mean and unit variance over the valid frames:
    x float [B, T, C], valid bool [B, T] → [B, T, C], padded frames 0."""
    valid = valid[..., None]
    count = jnp.maximum(jnp.sum(valid, axis=1, keepdims=True), 1)
    mean = jnp.sum(jnp.where(valid, x, 0.0), axis=1, keepdims=True) / count
    var = jnp.sum(jnp.where(valid, (x - mean) ** 2, 0.0), axis=1, keepdims=True) / count
    return jnp.where(valid, (x - mean) * jax.lax.rsqrt(var + 1e-5), 0.0)


class LogMelFeatureEncoder(nn.Module):
    """Log-mel front end in place of the conv stack: float [B, S] audio, bool [B, T] frame
    validity → float [B, T, channels].

    Frame t reads the same samples as the conv stack's frame t (`window`, `hop` from
    `receptive_field`), so masks, frame counts and frame labels do not change: `log_mel_frames`,
    then `normalize_utterance` per mel bin (removes the channel and most of a voice's
    spectral tilt), and a learned 3-wide conv to `channels` with GELU (local context across
    frames). Only the conv has parameters: its gradient is all the front end costs;
    `grad_mult` scales it as the conv stack's.
    """

    channels: int
    window: int
    hop: int
    num_mel_bins: int = 80
    sample_rate: int = 16000
    grad_mult: float = 1.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, audio, frame_valid):
        mel = log_mel_frames(audio, self.window, self.hop, self.num_mel_bins, self.sample_rate)
        x = normalize_utterance(mel, frame_valid)
        x = nn.Conv(
            self.channels,
            kernel_size=(3,),
            padding="SAME",
            dtype=self.dtype,
            kernel_init=_part(nn.initializers.he_normal(), ("conv_kernel", "conv_in", "conv_out")),
            bias_init=_part(nn.initializers.zeros, ("conv_out",)),
            name="conv",
        )(x.astype(self.dtype))
        return scale_gradient(gelu(x), self.grad_mult)


FEATURE_ENCODERS = ("conv", "log_mel")


COMPUTE_DTYPES = ("float32", "bfloat16")


def check_feature_encoder(kind: str) -> None:
    """Config-time check of `model.feature_encoder` (both model families)."""
    if kind not in FEATURE_ENCODERS:
        raise ValueError(f"model.feature_encoder must be one of {FEATURE_ENCODERS}, got {kind!r}")


def check_shared_fields(args) -> None:
    """Config-time checks of the `ModelArgs` fields both families share: the front end
    (`feature_encoder`; conv_dim, conv_kernel and conv_stride, one entry per conv layer)
    and the compute `dtype`. Raises ValueError naming the key and what it may be."""
    check_feature_encoder(args.feature_encoder)
    lengths = {k: len(getattr(args, k)) for k in ("conv_dim", "conv_kernel", "conv_stride")}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            "model.conv_dim, conv_kernel and conv_stride need one entry per conv layer each, "
            f"got lengths {lengths}"
        )
    if args.dtype not in COMPUTE_DTYPES:
        raise ValueError(f"model.dtype must be one of {COMPUTE_DTYPES}, got {args.dtype!r}")


def make_feature_encoder(args, grad_mult: float, dtype, name: str) -> nn.Module:
    """The front end `args.feature_encoder` names ('conv' or 'log_mel'), built from the fields
    both model families share (conv_dim, conv_kernel, conv_stride, conv_bias,
    feat_extract_norm, num_mel_bins). Call it through `run_feature_encoder`."""
    check_feature_encoder(args.feature_encoder)
    if args.feature_encoder == "log_mel":
        window, hop = receptive_field(args.conv_kernel, args.conv_stride)
        return LogMelFeatureEncoder(
            args.conv_dim[-1],
            window,
            hop,
            args.num_mel_bins,
            grad_mult=grad_mult,
            dtype=dtype,
            name=name,
        )
    return ConvFeatureEncoder(
        args.conv_dim,
        args.conv_kernel,
        args.conv_stride,
        args.conv_bias,
        args.feat_extract_norm,
        grad_mult,
        dtype,
        name=name,
    )


def run_feature_encoder(encoder: nn.Module, audio, frame_valid):
    """float [B, S] → [B, T, C]; only the log-mel front end reads the frame validity."""
    if isinstance(encoder, LogMelFeatureEncoder):
        return encoder(audio, frame_valid)
    return encoder(audio)


def feature_encoder_flops(args, batch: int, samples: int) -> float:
    """Forward FLOPs of `make_feature_encoder(args, ...)` on [batch, samples] audio."""
    if args.feature_encoder == "log_mel":
        window, hop = receptive_field(args.conv_kernel, args.conv_stride)
        return log_mel_encoder_flops(
            batch, samples, window, hop, args.num_mel_bins, args.conv_dim[-1]
        )
    return conv_encoder_flops(batch, samples, args.conv_dim, args.conv_kernel, args.conv_stride)


def log_mel_encoder_flops(
    batch: int, samples: int, window: int, hop: int, num_mel_bins: int, channels: int
) -> float:
    """FLOPs of `LogMelFeatureEncoder`: FFT (~5·N·log2 N per frame), mel matmul, 3-wide conv."""
    frames = (samples - window) // hop + 1
    n_fft = 1 << (window - 1).bit_length()
    per_frame = 5.0 * n_fft * math.log2(n_fft) + 2.0 * (n_fft // 2 + 1) * num_mel_bins
    return batch * frames * (per_frame + 2.0 * 3 * num_mel_bins * channels)


class FeatureProjection(nn.Module):
    """LayerNorm(C) → Dense(D) → dropout. Returns (projected [B,T,D], normed features [B,T,C]).

    The normed features are what the quantizer sees (HF `extract_features`).
    """

    hidden_size: int
    layer_norm_eps: float = 1e-5
    dropout: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        normed = nn.LayerNorm(
            epsilon=self.layer_norm_eps,
            dtype=self.dtype,
            scale_init=_part(nn.initializers.ones, ("conv_out",)),
            bias_init=_part(nn.initializers.zeros, ("conv_out",)),
            name="layer_norm",
        )(x)
        fan_in = x.shape[-1]
        bound = 1.0 / math.sqrt(fan_in)
        h = nn.Dense(
            self.hidden_size,
            dtype=self.dtype,
            kernel_init=_part(_symmetric_uniform(bound), ("conv_out", "embed")),
            bias_init=_part(nn.initializers.zeros, ("embed",)),
            name="projection",
        )(normed)
        h = dropout.Dropout(self.dropout)(h, deterministic=deterministic)
        return nn.with_logical_constraint(h, ACT_BTD), normed


# --------------------------------------------------------------------------------------------
# Positional conv embedding
# --------------------------------------------------------------------------------------------


class PositionalConvEmbedding(nn.Module):
    """Grouped Conv1d with weight norm over the time kernel, "same" padding, GELU: [B,T,D] → [B,T,D].

    Weight norm (torch `weight_norm(conv, dim=2)`): for every kernel tap k,
    `w[k] = g[k] · v[k] / ‖v[k]‖` with the norm over (in/groups, out). Params:
      weight_g [K], weight_v [K, D/groups, D] (flax conv layout), bias [D].
    Padding as HF (`_same_grouped_conv`). impl (all the same values to float32 rounding):
    'conv' (XLA's convolution and its gradients), 'fft' (`_same_grouped_conv_fft`), 'taps'
    (`_same_grouped_conv_taps`: XLA's convolution, the kernel gradient as matmuls) or 'auto':
    elsewhere 'conv'; on CPU, where XLA's kernel gradient of this conv is slow, 'taps' for
    groups of ≥ 32 channels (base: 0.12 s forward + backward, FFT 0.23 s, torch 0.13 s) and
    'fft' for narrower ones (D 256 in 16 groups: FFT 0.015 s, taps 0.034 s).
    """

    hidden_size: int
    kernel: int = 128
    groups: int = 16
    dtype: Dtype = jnp.float32
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        d, k, g = self.hidden_size, self.kernel, self.groups
        std = 2.0 * math.sqrt(1.0 / (k * d))
        v = self.param(
            "weight_v",
            _part(nn.initializers.normal(std), ("conv_kernel", None, "embed")),
            (k, d // g, d),
        )
        gain = self.param(
            "weight_g",
            _part(
                lambda key, shape: jnp.full(shape, std * math.sqrt(d * d / g), jnp.float32),
                ("conv_kernel",),
            ),
            (k,),
        )
        bias = self.param("bias", _part(nn.initializers.zeros, ("embed",)), (d,))
        v_norm = jnp.sqrt(jnp.sum(jnp.square(v), axis=(1, 2), keepdims=True))
        w = (gain[:, None, None] * v / v_norm).astype(self.dtype)
        impls = {
            "conv": functools.partial(_same_grouped_conv, groups=g),
            "fft": functools.partial(_same_grouped_conv_fft, groups=g),
            "taps": functools.partial(_same_grouped_conv_taps, groups=g),
        }
        x = x.astype(self.dtype)
        if self.impl == "auto":
            cpu = impls["taps" if d // g >= 32 else "fft"]
            y = jax.lax.platform_dependent(x, w, cpu=cpu, default=impls["conv"])
        elif self.impl in impls:
            y = impls[self.impl](x, w)
        else:
            raise ValueError(
                f"pos conv impl must be 'auto', 'conv', 'fft' or 'taps', got {self.impl!r}"
            )
        return gelu(y + bias.astype(self.dtype))


def _same_grouped_conv(x, w, groups):
    """Grouped "same" conv as HF pads it: x [B,T,D], w [K, D/groups, D] → [B,T,D].

    Padding K//2 on both sides; with an even K the conv yields T+1 frames and the last is
    dropped (HF SamePad). Computed as one plain conv per group, not with
    `feature_group_count`: XLA's SPMD partitioner returns a wrong kernel gradient for the
    grouped form (relative error ~1 with jax 0.10) when the batch is sharded over one mesh
    axis and replicated over another, e.g. data=4 × tensor=2; the per-group convs are the
    same FLOPs and partition correctly (tests/test_multidevice.py checks that mesh).
    """
    k, c = w.shape[0], x.shape[-1] // groups
    y = jnp.concatenate(
        [
            jax.lax.conv_general_dilated(
                x[..., g * c : (g + 1) * c],
                w[..., g * c : (g + 1) * c],
                window_strides=(1,),
                padding=[(k // 2, k // 2)],
                dimension_numbers=("NWC", "WIO", "NWC"),
            )
            for g in range(groups)
        ],
        axis=-1,
    )
    return y[:, : x.shape[1]]


def _same_grouped_conv_fft(x, w, groups):
    """`_same_grouped_conv` by FFT: the same values (to float32 rounding), for CPUs.

    Why: XLA:CPU runs grouped convolutions and their gradients through a generic loop; at
    base size (T 199, D 768, K 128, 16 groups) forward + backward took 7.5 s against 0.94 s
    this way (same process, alternating, loaded machine). In the frequency domain each
    frequency is a small [D/groups × D/groups] matmul per group, and the FFTs are cheap.

    Cross-correlation y[t] = Σ_k xpad[t + k] w[k] = (xpad ∗ reversed w)[t + K − 1]; an FFT
    length of at least len(xpad) + K − 1 makes the circular convolution linear.
    """
    b, t, d = x.shape
    k, c, _ = w.shape
    pad = k // 2
    n = 1 << (t + 2 * pad + k - 2).bit_length()  # power of two ≥ t + 2·pad + k − 1
    xp = jnp.pad(x.astype(jnp.float32), ((0, 0), (pad, pad), (0, 0))).reshape(
        b, t + 2 * pad, groups, c
    )
    w_rev = w[::-1].astype(jnp.float32).reshape(k, c, groups, d // groups).transpose(0, 2, 1, 3)
    spectrum = jnp.einsum(
        "bfgc,fgco->bfgo", jnp.fft.rfft(xp, n=n, axis=1), jnp.fft.rfft(w_rev, n=n, axis=0)
    )
    y = jnp.fft.irfft(spectrum, n=n, axis=1)[:, k - 1 : k - 1 + t]
    return y.reshape(b, t, d).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _same_grouped_conv_taps(x, w, groups):
    """`_same_grouped_conv` whose kernel gradient is computed as matmuls, for CPUs.

    XLA:CPU runs this conv and its input gradient fast (both are forward convolutions) but
    its kernel gradient, a correlation over batch and time with a 128-wide window, slowly
    (base: 0.92 s of the 0.95 s forward + backward). Here dw[k] = Σ_{b,t} xpad[b,t+k]ᵀ dy[b,t]
    per group, computed for 8 taps at a time from their stacked windows: 8 keeps the stack
    [8, B, T, D] in cache (1, 2, 4, 8, 16, 32, 128 taps: 0.15, 0.14, 0.13, 0.12, 0.14, 0.15,
    0.24 s at base).
    """
    return _same_grouped_conv(x, w, groups)


def _same_grouped_conv_taps_fwd(x, w, groups):
    return _same_grouped_conv(x, w, groups), (x, w)


def _same_grouped_conv_taps_bwd(groups, residuals, dy):
    x, w = residuals
    _, input_vjp = jax.vjp(lambda x: _same_grouped_conv(x, w, groups), x)
    b, t, d = x.shape
    k, c = w.shape[0], d // groups
    pad = k // 2
    xp = jnp.pad(x, ((0, 0), (pad, pad), (0, 0))).reshape(b, t + 2 * pad, groups, c)
    dy_g = dy.reshape(b, t, groups, c)
    chunks = []
    for first in range(0, k, 8):
        windows = jnp.stack([xp[:, j : j + t] for j in range(first, min(k, first + 8))])
        chunks.append(jnp.einsum("jbtgc,btgo->jcgo", windows, dy_g))
    dw = jnp.concatenate(chunks).reshape(k, c, d).astype(w.dtype)
    return input_vjp(dy)[0], dw


_same_grouped_conv_taps.defvjp(_same_grouped_conv_taps_fwd, _same_grouped_conv_taps_bwd)


# --------------------------------------------------------------------------------------------
# Dense and LayerNorm with logical axis names (the Transformer blocks of transformer.py)
# --------------------------------------------------------------------------------------------


def _dense(features, axes, dtype, name, use_bias=True):
    return nn.Dense(
        features,
        dtype=dtype,
        use_bias=use_bias,
        kernel_init=_part(nn.initializers.normal(0.02), axes),
        bias_init=_part(nn.initializers.zeros, (axes[-1],)),
        name=name,
    )


def _layer_norm(eps, dtype, name):
    return nn.LayerNorm(
        epsilon=eps,
        dtype=dtype,
        scale_init=_part(nn.initializers.ones, ("embed",)),
        bias_init=_part(nn.initializers.zeros, ("embed",)),
        name=name,
    )


# --------------------------------------------------------------------------------------------
# FLOP counting helpers (forward pass, multiply-add = 2 FLOPs)
# --------------------------------------------------------------------------------------------


def conv_encoder_flops(batch: int, samples: int, conv_dim, conv_kernel, conv_stride) -> float:
    flops, length, c_in = 0.0, samples, 1
    for c_out, k, s in zip(conv_dim, conv_kernel, conv_stride):
        length = (length - k) // s + 1
        flops += 2.0 * batch * length * c_out * c_in * k
        c_in = c_out
    return flops


def transformer_encoder_flops(batch, frames, hidden, ffn, layers, pos_kernel, pos_groups) -> float:
    bt = batch * frames
    pos = 2.0 * bt * hidden * (hidden / pos_groups) * pos_kernel
    projections = 2.0 * bt * hidden * hidden * 4  # q, k, v, out
    attention = 2.0 * 2.0 * batch * frames * frames * hidden  # logits and weighted sum
    feed_forward = 2.0 * bt * hidden * ffn * 2
    per_layer = projections + attention + feed_forward
    return pos + layers * per_layer


__all__ = [
    "ConvFeatureEncoder",
    "ConvLayer",
    "FeatureProjection",
    "PositionalConvEmbedding",
    "conv_output_lengths",
    "frame_validity",
    "scale_gradient",
    "gelu",
    "conv_encoder_flops",
    "transformer_encoder_flops",
    "LogMelFeatureEncoder",
    "log_mel_frames",
    "normalize_utterance",
    "frame_signal",
    "receptive_field",
    "make_feature_encoder",
    "run_feature_encoder",
    "feature_encoder_flops",
    "log_mel_encoder_flops",
]
